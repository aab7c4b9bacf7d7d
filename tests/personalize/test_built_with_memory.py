"""Which replies were built with the participant's attributes (and so may say "Shaped by your memory"), decided
from the stored message alone: no screen, no selection records."""

from __future__ import annotations

from sqlite_utils import Database

from studyapp.chat import ChatService, ReplyStarted
from studyapp.domain import Message
from studyapp.llm.openai_compat import OpenAICompatModel
from studyapp.personalize.generate import build_messages, built_with_memory
from studyapp.store.comparisons import ComparisonStore
from studyapp.store.conversations import ConversationStore
from studyapp.study.comparison import ComparisonRunner
from tests.support.scripted_llm import ScriptedLLM


def reply(*, template: str | None, arm: str | None = None, role: str = "assistant") -> Message:
    return Message(n=2, id="r", conversation_id="c", role=role, content="...", status="complete",
                   created_at="2026-01-01T00:00:00+00:00", arm=arm, template=template)


def test_the_decision_follows_the_arm_then_the_template() -> None:
    _, personal = build_messages([], ["The user is vegetarian"])
    _, generic = build_messages([], [])
    assert personal.startswith("assistant_personalized@") and generic.startswith("assistant@")
    # Ordinary replies: only the personalized template put attributes into the prompt.
    assert built_with_memory(reply(template=personal))
    assert not built_with_memory(reply(template=generic))
    assert not built_with_memory(reply(template=None))
    # Comparison arms: the arm decides (the generic arm never saw the attributes, even when it is kept).
    assert built_with_memory(reply(template=personal, arm="personalized"))
    assert not built_with_memory(reply(template=generic, arm="generic"))
    assert not built_with_memory(reply(template=personal, role="user"))


async def test_stored_replies_and_arms_say_whether_they_were_built_with_memory(
    db: Database, conversations: ConversationStore, model: OpenAICompatModel, scripted_llm: ScriptedLLM
) -> None:
    scripted_llm.set_default("An answer.")
    chat = ChatService(conversations, lambda: model)
    saved = chat.save_user_message(None, "dinner ideas?")

    async def ordinary(attributes: list[str]) -> Message:
        events = [e async for e in chat.reply(saved.conversation, saved.message, attributes=attributes)]
        started = next(e for e in events if isinstance(e, ReplyStarted))
        stored = conversations.get_message(started.message.id)
        assert stored is not None
        # The live event and the stored row agree.
        assert built_with_memory(started.message) == built_with_memory(stored)
        return stored

    assert built_with_memory(await ordinary(["The user is vegetarian"]))
    assert not built_with_memory(await ordinary([]))

    runner = ComparisonRunner(model, conversations, ComparisonStore(db))
    outcome = await runner.run(saved.conversation.id, saved.message, ["The user is vegetarian"])
    record = ComparisonStore(db).get(outcome.comparison_id)
    generic_arm = conversations.get_message(record.generic_message_id or "")
    personal_arm = conversations.get_message(record.personalized_message_id or "")
    assert generic_arm is not None and personal_arm is not None
    assert not built_with_memory(generic_arm)
    assert built_with_memory(personal_arm)
