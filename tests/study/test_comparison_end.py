"""What becomes of a comparison that is never rated: failed, cancelled or abandoned, each a study record.

Real database files, the scripted OpenAI-compatible server; the records are built as the privacy gate builds
them from what the database noted in its intake (studyapp.privacy.intake).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from sqlite_utils import Database

from studyapp.context import AppContext
from studyapp.domain import Message
from studyapp.llm.openai_compat import OpenAICompatModel
from studyapp.privacy.intake import build
from studyapp.privacy.records import comparison_records
from studyapp.store.collect_queue import CollectQueue
from studyapp.store.comparisons import ComparisonStore
from studyapp.store.conversations import ConversationStore
from studyapp.store.studies import StudyStore
from studyapp.study.comparison import ComparisonFailed, ComparisonOutcome
from studyapp.tui.services import Services
from tests.study.test_comparison import ATTRIBUTES, arm_of, prompt, reply_by_arm, runner_for  # noqa: F401
from tests.support.scripted_llm import ScriptedLLM, ScriptedReply


def enroll(db: Database) -> None:
    """While enrolled, the database notes every study record for the privacy gate (migrations m005, m008)."""
    StudyStore(db).enroll("s1", {"study": {"id": "s1"}}, participant_id="p1")


def queued_comparisons(db: Database) -> list[dict[str, Any]]:
    """The comparison records the intake holds, built from the database as it is now."""
    return [payload for row in CollectQueue(db).take(1000) if row.kind == "comparison"
            for kind, payload in build(db, row) if kind == "comparison"]


def failing_generic_arm(body: dict[str, Any]) -> ScriptedReply:
    if arm_of(body) == "generic":
        return ScriptedReply(status=500, error_body={"error": {"message": "boom"}})
    return ScriptedReply(content="A vegetarian one-pan dinner.")


async def test_a_comparison_cancelled_while_generating_ends_cancelled(
    scripted_llm: ScriptedLLM, conversations: ConversationStore, comparisons: ComparisonStore, db: Database,
    prompt: Message,
) -> None:
    enroll(db)
    replies = reply_by_arm(scripted_llm, hold_after=2)
    runner = runner_for(scripted_llm, conversations, comparisons)
    task = asyncio.create_task(runner.run(prompt.conversation_id, prompt, ATTRIBUTES))
    try:
        await replies["generic"].wait_held_async()
        await replies["personalized"].wait_held_async()
        task.cancel()  # what Esc does while the comparison screen waits for both answers
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        for reply in replies.values():
            reply.release()
    [record] = comparisons.list()
    assert (record.end_state, record.state, record.status) == ("cancelled", "cancelled", "error")
    assert record.ended_at is not None and record.rated_at is None
    # Status 'error' as before: the schedule does not count it against the daily cap.
    assert comparisons.count_since(record.created_at) == 0
    [payload] = queued_comparisons(db)
    assert (payload["comparison_id"], payload["state"], payload["ended_at"]) == (record.id, "cancelled",
                                                                                 record.ended_at)
    assert payload["rating"] is None and payload["skipped"] is False


async def test_a_comparison_whose_arm_failed_ends_failed(
    scripted_llm: ScriptedLLM, conversations: ConversationStore, comparisons: ComparisonStore, db: Database,
    prompt: Message,
) -> None:
    enroll(db)
    scripted_llm.set_default(failing_generic_arm)
    runner = runner_for(scripted_llm, conversations, comparisons)
    with pytest.raises(ComparisonFailed) as info:
        await runner.run(prompt.conversation_id, prompt, ATTRIBUTES)
    record = comparisons.get(info.value.comparison_id)
    assert (record.end_state, record.state, record.status) == ("failed", "failed", "error")
    assert [(p["comparison_id"], p["state"]) for p in queued_comparisons(db)] == [(record.id, "failed")]
    # What became of it is decided once: a later end does not overwrite it.
    assert comparisons.end(record.id, "abandoned") is False
    assert comparisons.get(record.id).end_state == "failed"


async def shown_comparison(llm: ScriptedLLM, db: Database, prompt: Message) -> ComparisonOutcome:
    """A comparison both of whose answers are on screen, not rated yet."""
    conversations, comparisons = ConversationStore(db), ComparisonStore(db)
    runner = runner_for(llm, conversations, comparisons)
    outcome = await runner.run(prompt.conversation_id, prompt, ATTRIBUTES)
    runner.mark_shown(outcome.comparison_id)
    return outcome


def chat_model() -> OpenAICompatModel:
    return OpenAICompatModel("http://127.0.0.1:9/v1", "participant-model")


async def test_a_comparison_left_on_screen_is_abandoned_at_the_next_start(
    scripted_llm: ScriptedLLM, tmp_path: Path,
) -> None:
    app_ctx = AppContext.create(tmp_path)
    db = app_ctx.db
    enroll(db)
    conversations = ConversationStore(db)
    conversation = conversations.create()
    reply_by_arm(scripted_llm)
    left = await shown_comparison(scripted_llm, db, conversations.add_message(conversation.id, "user", "Dinner?"))
    rated = await shown_comparison(scripted_llm, db, conversations.add_message(conversation.id, "user", "Lunch?"))
    runner_for(scripted_llm, conversations, ComparisonStore(db)).record_rating(
        rated.comparison_id, 3, rated.personalized_side, "left")
    scripted_llm.set_default(failing_generic_arm)
    with pytest.raises(ComparisonFailed) as failed:
        await runner_for(scripted_llm, conversations, ComparisonStore(db)).run(
            conversation.id, conversations.add_message(conversation.id, "user", "Breakfast?"), ATTRIBUTES)
    # A comparison that failed or was cancelled before migration m008 recorded no end state: not abandoned.
    tea = conversations.add_message(conversation.id, "user", "Tea?")
    before_m008 = ComparisonStore(db).create(
        conversation_id=conversation.id, prompt_message_id=tea.id, personalized_side="left", coin={},
        attributes=[], model="m", parameters={}, templates={})
    ComparisonStore(db).set_status(before_m008, "error")
    app_ctx.close()  # the app closed with the first comparison on screen

    app_ctx = AppContext.create(tmp_path)
    services = Services(app_ctx, model_factory=chat_model)
    assert services.abandoned == 1
    comparisons = ComparisonStore(app_ctx.db)
    states = {c.id: (c.state, c.status) for c in comparisons.list()}
    # Only the one left on screen: it keeps its status, so the schedule still counts it as a comparison.
    assert states == {left.comparison_id: ("abandoned", "shown"), rated.comparison_id: ("rated", "rated"),
                      failed.value.comparison_id: ("failed", "error"), before_m008: (None, "error")}
    abandoned = [p for p in queued_comparisons(app_ctx.db) if p["state"] == "abandoned"]
    assert [p["comparison_id"] for p in abandoned] == [left.comparison_id] and abandoned[0]["ended_at"]
    await services.aclose()
    app_ctx.close()

    app_ctx = AppContext.create(tmp_path)
    again = Services(app_ctx, model_factory=chat_model)
    assert again.abandoned == 0  # already ended: the next start finds nothing left over
    await again.aclose()
    app_ctx.close()


async def test_a_rating_recorded_after_abandonment_wins(
    scripted_llm: ScriptedLLM, conversations: ConversationStore, comparisons: ComparisonStore, db: Database,
    prompt: Message,
) -> None:
    enroll(db)
    reply_by_arm(scripted_llm)
    outcome = await shown_comparison(scripted_llm, db, prompt)
    assert comparisons.mark_abandoned() == 1
    [before] = comparison_records(comparisons.get(outcome.comparison_id), [])
    assert before[1]["state"] == "abandoned" and before[1]["ended_at"] is not None

    runner_for(scripted_llm, conversations, comparisons).record_rating(
        outcome.comparison_id, 4, outcome.personalized_side, "right")
    record = comparisons.get(outcome.comparison_id)
    assert record.end_state == "abandoned" and record.state == "rated"
    # The rating queued the comparison again; built now, every record of it says rated, without an end time.
    payloads = queued_comparisons(db)
    assert [p["state"] for p in payloads] == ["rated", "rated"]
    assert all(p["ended_at"] is None and p["rating"] == record.rating for p in payloads)
    assert comparisons.mark_abandoned() == 0 and comparisons.end(record.id, "cancelled") is False
