"""A participant's app killed with SIGKILL loses nothing committed: neither the message nor the text that arrived
mid-reply, nor a turn committed after another studyapp command opened and closed the same database."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from studyapp.store.conversations import ConversationStore
from studyapp.store.db import open_database
from tests.server.live import LiveServer, live, sqlite_server_db  # noqa: F401
from tests.support.scripted_llm import ScriptedLLM

ROOT = Path(__file__).resolve().parents[2]


def test_kill_9_mid_stream_keeps_the_message_and_the_partial_reply(tmp_path: Path,
                                                                    scripted_llm: ScriptedLLM) -> None:
    reply = scripted_llm.add_text("alpha beta gamma delta epsilon", hold_after=3)
    db_path = tmp_path / "studyapp.db"
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.chat.turn_child", str(db_path), scripted_llm.base_url],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert child.stdout is not None
        for line in child.stdout:
            if line.strip() == "received alpha beta gamma":
                break
        else:
            raise AssertionError(f"the child never received the reply: {child.stderr.read() if child.stderr else ''}")
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        reply.release()
        if child.poll() is None:
            child.kill()
    assert child.returncode == -signal.SIGKILL

    conn = sqlite3.connect(db_path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    rows = conn.execute("SELECT role, content, status FROM messages ORDER BY n").fetchall()
    conn.close()
    assert rows == [
        ("user", "please write a long answer", "complete"),
        ("assistant", "alpha beta gamma", "streaming"),
    ]
    # The next start marks the cut reply interrupted and keeps its text.
    store = ConversationStore(open_database(db_path))
    assert store.mark_streaming_interrupted() == 1
    assert [(m.content, m.status) for m in store.messages(store.list()[0].id)][-1] == ("alpha beta gamma",
                                                                                      "interrupted")


def test_kill_9_after_another_studyapp_command_keeps_the_next_turn(tmp_path: Path, scripted_llm: ScriptedLLM,
                                                                   live: LiveServer) -> None:
    """The participant's app is open and enrolled; a studyapp command runs in another shell and exits; the next
    turn is committed; the app is killed. Nothing committed may be lost (the command must not have been able
    to delete the write-ahead log the app still writes to)."""
    scripted_llm.set_default("Noted.")
    data_dir = tmp_path / "data"
    stderr_path = tmp_path / "app_child.stderr"
    with stderr_path.open("w") as stderr:
        child = subprocess.Popen(
            [sys.executable, "-m", "tests.chat.app_child", str(data_dir), scripted_llm.base_url, live.base_url,
             live.code()],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True,
        )

    def expect(line: str) -> None:
        assert child.stdout is not None
        got = child.stdout.readline().strip()
        if got != line:
            raise AssertionError(f"expected {line!r} from the app, got {got!r}: {stderr_path.read_text()[-3000:]}")

    try:
        assert child.stdin is not None
        expect("turn 1")
        # `studyapp study status` in another shell: it opens the same database, reads and exits.
        status = subprocess.run(
            [sys.executable, "-m", "studyapp", "study", "status", "--data-dir", str(data_dir)],
            cwd=ROOT, capture_output=True, text=True, timeout=120,
        )
        assert status.returncode == 0 and "enrolled: yes" in status.stdout, status.stdout + status.stderr
        child.stdin.write("go\n")
        child.stdin.flush()
        expect("turn 2")
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL

    conn = sqlite3.connect(data_dir / "studyapp.db")
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = conn.execute("SELECT role, content, status FROM messages ORDER BY n").fetchall()
    finally:
        conn.close()
    assert rows == [
        ("user", "my first message", "complete"),
        ("assistant", "Noted.", "complete"),
        ("user", "my second message", "complete"),
        ("assistant", "Noted.", "complete"),
    ]
