"""A participant's app killed with SIGKILL mid-reply loses neither the message nor the text that arrived."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from studyapp.store.conversations import ConversationStore
from studyapp.store.db import open_database
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
