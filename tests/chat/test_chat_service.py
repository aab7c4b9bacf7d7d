"""A conversation turn over real HTTP: durability, streaming, cancellation and errors."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from studyapp.chat import ChatService, ReplyDelta, ReplyFinished, ReplyStarted, UserSaved
from studyapp.llm.base import ChatParams, ModelUnavailable
from studyapp.llm.openai_compat import OpenAICompatModel
from studyapp.store.conversations import ConversationStore
from studyapp.store.db import open_database
from tests.support.net import free_port
from tests.support.scripted_llm import ScriptedLLM


def make_service(tmp_path: Path, base_url: str, model: str = "scripted-model", **kwargs: Any) -> ChatService:
    store = ConversationStore(open_database(tmp_path / "studyapp.db"))
    return ChatService(store, lambda: OpenAICompatModel(base_url, model), params=ChatParams(max_tokens=32),
                       **kwargs)


def read_messages(path: Path) -> list[tuple[str, str, str]]:
    """What another process would see in the database file right now."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT role, content, status FROM messages ORDER BY n").fetchall()
    finally:
        conn.close()


async def collect(service: ChatService, conversation_id: str | None, text: str) -> list[Any]:
    return [event async for event in service.send(conversation_id, text)]


async def test_user_message_is_committed_before_the_request_goes_out(tmp_path: Path,
                                                                     scripted_llm: ScriptedLLM) -> None:
    seen: list[list[tuple[str, str, str]]] = []

    def rule(body: dict[str, Any]) -> str:
        seen.append(read_messages(tmp_path / "studyapp.db"))
        return "Noted."

    scripted_llm.add_rule(rule)
    service = make_service(tmp_path, scripted_llm.base_url)
    events = await collect(service, None, "I start night shifts next week")
    assert seen == [[("user", "I start night shifts next week", "complete"), ("assistant", "", "streaming")]]
    assert isinstance(events[0], UserSaved) and events[0].conversation.title == "I start night shifts next week"
    finished = events[-1]
    assert isinstance(finished, ReplyFinished) and finished.message.status == "complete"
    assert read_messages(tmp_path / "studyapp.db")[-1] == ("assistant", "Noted.", "complete")


async def test_reply_streams_in_order_and_records_model_template_and_timing(tmp_path: Path,
                                                                             scripted_llm: ScriptedLLM) -> None:
    scripted_llm.add_text("One two three four five.")
    service = make_service(tmp_path, scripted_llm.base_url)
    events = await collect(service, None, "count")
    deltas = [e.text for e in events if isinstance(e, ReplyDelta)]
    assert len(deltas) > 1 and "".join(deltas) == "One two three four five."
    stored = service.store.get_message(events[-1].message.id)
    assert stored is not None
    assert (stored.content, stored.status, stored.model) == ("One two three four five.", "complete", "scripted-model")
    assert stored.template == "assistant@1"
    assert stored.first_token_ms is not None and stored.duration_ms is not None
    # The request carried the conversation: system prompt, then the participant's message.
    sent = scripted_llm.requests[-1]["messages"]
    assert sent[0]["role"] == "system" and sent[-1] == {"role": "user", "content": "count"}


async def test_second_turn_sends_the_history(tmp_path: Path, scripted_llm: ScriptedLLM) -> None:
    scripted_llm.add_text("Hi Ana.")
    scripted_llm.add_text("You said Ana.")
    service = make_service(tmp_path, scripted_llm.base_url)
    first = await collect(service, None, "I'm Ana")
    conversation_id = first[0].conversation.id
    await collect(service, conversation_id, "What's my name?")
    sent = [(m["role"], m["content"]) for m in scripted_llm.requests[-1]["messages"][1:]]
    assert sent == [("user", "I'm Ana"), ("assistant", "Hi Ana."), ("user", "What's my name?")]


async def test_partial_reply_is_in_the_database_while_streaming(tmp_path: Path, scripted_llm: ScriptedLLM) -> None:
    reply = scripted_llm.add_text("alpha beta gamma delta", hold_after=2)
    service = make_service(tmp_path, scripted_llm.base_url, flush_interval=0.0)
    stream = service.send(None, "go")
    received = ""
    async for event in stream:
        if isinstance(event, ReplyDelta):
            received += event.text
            if received == "alpha beta":
                break
    assert read_messages(tmp_path / "studyapp.db")[-1] == ("assistant", "alpha beta", "streaming")
    reply.release()
    await stream.aclose()
    # Closing the stream early (the TUI's cancel) keeps what arrived, marked interrupted.
    assert read_messages(tmp_path / "studyapp.db")[-1] == ("assistant", "alpha beta", "interrupted")


async def test_cancelling_a_reply_keeps_the_text_and_marks_it_interrupted(tmp_path: Path,
                                                                           scripted_llm: ScriptedLLM) -> None:
    reply = scripted_llm.add_text("first second third fourth", hold_after=2)
    service = make_service(tmp_path, scripted_llm.base_url)
    got_two = asyncio.Event()
    texts: list[str] = []

    async def consume() -> None:
        async for event in service.send(None, "tell me"):
            if isinstance(event, ReplyDelta):
                texts.append(event.text)
                if len(texts) == 2:
                    got_two.set()

    task = asyncio.create_task(consume())
    await got_two.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    reply.release()
    assert read_messages(tmp_path / "studyapp.db") == [
        ("user", "tell me", "complete"),
        ("assistant", "".join(texts), "interrupted"),
    ]
    # The next turn works and does not resend the cut reply as if complete... it is kept in context.
    scripted_llm.add_text("ok")
    events = await collect(service, service.store.list()[0].id, "again")
    assert events[-1].message.status == "complete"


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (500, {"error": {"message": "boom"}}, "server"),
        (401, {"error": {"message": "bad key"}}, "API key"),
        (429, {"error": {"message": "slow down"}}, "limiting requests"),
    ],
)
async def test_server_errors_become_an_error_message_and_keep_the_conversation(
    tmp_path: Path, scripted_llm: ScriptedLLM, status: int, body: dict[str, Any], expected: str
) -> None:
    scripted_llm.add_error(status, body)
    service = make_service(tmp_path, scripted_llm.base_url)
    events = await collect(service, None, "hello?")
    finished = events[-1]
    assert isinstance(finished, ReplyFinished)
    assert finished.message.status == "error"
    assert expected.lower() in (finished.message.error or "").lower()
    rows = read_messages(tmp_path / "studyapp.db")
    assert rows[0] == ("user", "hello?", "complete")
    assert rows[1][2] == "error"


async def test_disconnect_mid_stream_keeps_the_partial_text(tmp_path: Path, scripted_llm: ScriptedLLM) -> None:
    scripted_llm.add_disconnect(["Half ", "an ", "ans"])
    service = make_service(tmp_path, scripted_llm.base_url)
    events = await collect(service, None, "q")
    message = events[-1].message
    assert message.status == "error"
    assert message.content == "Half an ans"
    assert read_messages(tmp_path / "studyapp.db")[-1] == ("assistant", "Half an ans", "error")


async def test_unreachable_server_is_a_clear_error(tmp_path: Path) -> None:
    service = make_service(tmp_path, f"http://127.0.0.1:{free_port()}/v1")
    events = await collect(service, None, "anyone there?")
    message = events[-1].message
    assert message.status == "error"
    assert "reach" in (message.error or "").lower()
    assert read_messages(tmp_path / "studyapp.db")[0] == ("user", "anyone there?", "complete")


async def test_model_that_cannot_start_is_reported_in_the_thread(tmp_path: Path) -> None:
    def broken() -> OpenAICompatModel:
        raise ModelUnavailable("The embedded model is not installed: pip install 'studyapp[local]'.")

    store = ConversationStore(open_database(tmp_path / "studyapp.db"))
    service = ChatService(store, broken)
    events = await collect(service, None, "hi")
    assert isinstance(events[1], ReplyStarted)
    assert events[-1].message.status == "error"
    assert "studyapp[local]" in (events[-1].message.error or "")
    assert read_messages(tmp_path / "studyapp.db")[0] == ("user", "hi", "complete")


async def test_attributes_shape_the_system_prompt(tmp_path: Path, scripted_llm: ScriptedLLM) -> None:
    service = make_service(tmp_path, scripted_llm.base_url)
    saved = service.save_user_message(None, "dinner ideas?")
    events = [e async for e in service.reply(saved.conversation, saved.message, attributes=["The user is vegetarian"])]
    assert "The user is vegetarian" in scripted_llm.requests[-1]["messages"][0]["content"]
    assert events[-1].message.template == "assistant_personalized@1"
    events = [e async for e in service.reply(saved.conversation, saved.message)]
    assert "vegetarian" not in scripted_llm.requests[-1]["messages"][0]["content"]
    assert events[-1].message.template == "assistant@1"
