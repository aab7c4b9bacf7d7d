"""``studyapp ask``: one turn from the command line, stored like a chat-screen turn."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from studyapp.cli import cli
from studyapp.store.conversations import ConversationStore
from studyapp.store.db import open_database
from tests.support.net import free_port
from tests.support.scripted_llm import ScriptedLLM


def stored(data_dir: Path) -> list[tuple[str, bool, list[tuple[str, str, str]]]]:
    db = open_database(data_dir / "studyapp.db")
    try:
        store = ConversationStore(db)
        return [(c.title, c.memory_enabled, [(m.role, m.content, m.status) for m in store.messages(c.id)])
                for c in store.list()]
    finally:
        db.close()


def test_ask_streams_the_reply_and_keeps_the_turn_in_a_memory_off_conversation(
        tmp_path: Path, scripted_llm: ScriptedLLM) -> None:
    scripted_llm.add_text("Eat a banana an hour before.")
    result = CliRunner().invoke(cli, ["--model", scripted_llm.model, "--base-url", scripted_llm.base_url,
                                      "ask", "--data-dir", str(tmp_path), "What should I eat before a run?"])
    assert result.exit_code == 0, result.output
    assert result.stdout == "Eat a banana an hour before.\n"
    assert stored(tmp_path) == [("What should I eat before a run?", False, [
        ("user", "What should I eat before a run?", "complete"),
        ("assistant", "Eat a banana an hour before.", "complete")])]
    assert scripted_llm.requests[-1]["messages"][-1]["content"] == "What should I eat before a run?"


def test_ask_reads_standard_input_and_refuses_empty_text(tmp_path: Path, scripted_llm: ScriptedLLM) -> None:
    args = ["--model", scripted_llm.model, "--base-url", scripted_llm.base_url, "ask", "--data-dir", str(tmp_path)]
    result = CliRunner().invoke(cli, [*args, "-"], input="Hello from a pipe\n")
    assert result.exit_code == 0, result.output
    assert result.stdout == "You said: Hello from a pipe\n"
    result = CliRunner().invoke(cli, [*args, "   "])
    assert result.exit_code == 2
    assert "TEXT is empty" in result.output
    assert len(stored(tmp_path)) == 1


def test_ask_says_when_the_model_does_not_answer_and_keeps_the_message(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    result = CliRunner().invoke(cli, ["--model", "m", "--base-url", url, "ask", "--data-dir", str(tmp_path), "Hi"])
    assert result.exit_code == 1
    assert "The model did not answer: Could not reach" in result.output
    assert "Traceback" not in result.output
    [(_, _, messages)] = stored(tmp_path)
    assert messages[0] == ("user", "Hi", "complete")
    assert messages[1][0] == "assistant" and messages[1][2] == "error"


def test_ask_leaves_a_running_apps_streaming_reply_alone(tmp_path: Path, scripted_llm: ScriptedLLM) -> None:
    # A chat app beside the command is streaming a reply: `ask` must not end it as if a crash had left it.
    db = open_database(tmp_path / "studyapp.db")
    store = ConversationStore(db)
    conversation = store.create("Open in the app")
    store.add_message(conversation.id, "user", "Tell me more")
    streaming = store.add_message(conversation.id, "assistant", "So far", status="streaming")
    db.close()
    result = CliRunner().invoke(cli, ["--model", scripted_llm.model, "--base-url", scripted_llm.base_url,
                                      "ask", "--data-dir", str(tmp_path), "Quick question"])
    assert result.exit_code == 0, result.output
    db = open_database(tmp_path / "studyapp.db")
    assert ConversationStore(db).get_message(streaming.id).status == "streaming"
    db.close()
