"""Child process for the "database opened twice in one process" crash tests (tests/store, tests/server).

    python -m tests.support.second_open_child client|server PATH

It opens the database the way the app (or the server) does and commits a first row, opens the same
file a second time in this process and closes that (what workers, sync and the record pump do), then
prints ``ready`` and waits for a line on stdin: meanwhile the test opens and closes the database in a
third process. Then it commits a second row, prints ``committed`` and kills itself with SIGKILL, so
nothing but what SQLite made durable survives.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# What another studyapp process (doctor, study status, sync; a second server command) does to the file.
OPEN_AND_CLOSE = {
    "client": "import sys; from studyapp.store.db import open_database; open_database(sys.argv[1]).close()",
    "server": "import sys; from studyapp.server.storage import Storage; Storage(sys.argv[1]).close()",
}


def _client(path: str) -> tuple[Callable[[str], None], Callable[[], None]]:
    from studyapp.store.conversations import ConversationStore
    from studyapp.store.db import open_database

    store = ConversationStore(open_database(path))
    conversation = store.create("crash test")

    def write(text: str) -> None:
        store.add_message(conversation.id, "user", text)  # commits

    return write, lambda: open_database(path).close()


def _server(path: str) -> tuple[Callable[[str], None], Callable[[], None]]:
    from studyapp.server.storage import Storage

    storage = Storage(path)

    def write(text: str) -> None:
        # One committed write transaction; the row's destination carries the text.
        storage.log_export(researcher="crash-test", via="cli", fmt="jsonl", record_types=[], rows=0,
                           destination=text)

    return write, lambda: Storage(path).close()


def main(kind: str, path: str) -> None:
    write, open_and_close_again = {"client": _client, "server": _server}[kind](path)
    write("first")
    open_and_close_again()
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        sys.exit("the test did not say go")
    write("second")
    print("committed", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


def crash_after_a_second_open(kind: str, path: Path) -> bool:
    """Drive the child above (the parent's side): returns whether the -wal file was still there after the
    other process closed the database (it must be: the child's connection is still using it)."""
    child = subprocess.Popen([sys.executable, "-m", "tests.support.second_open_child", kind, str(path)], cwd=ROOT,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert child.stdin is not None and child.stdout is not None and child.stderr is not None
    try:
        if child.stdout.readline().strip() != "ready":
            raise AssertionError(f"the child failed before the crash: {child.stderr.read()[-3000:]}")
        # The child holds the database open, with a second open behind it: now another process comes and goes.
        other = subprocess.run([sys.executable, "-c", OPEN_AND_CLOSE[kind], str(path)], cwd=ROOT,
                               capture_output=True, text=True, timeout=120)
        assert other.returncode == 0, other.stderr[-3000:]
        wal_kept = Path(f"{path}-wal").exists()
        child.stdin.write("go\n")
        child.stdin.flush()
        if child.stdout.readline().strip() != "committed":
            raise AssertionError(f"the child failed after the other process: {child.stderr.read()[-3000:]}")
        child.wait(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL
    return wal_kept


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
