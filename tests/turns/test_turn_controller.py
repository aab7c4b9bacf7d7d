"""TurnController without Textual: a real SQLite file, the scripted OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import pytest
from sqlite_utils import Database

from studyapp.chat import ChatService, ReplyDelta, ReplyFinished, ReplyStarted, UserSaved
from studyapp.domain import Conversation, Message
from studyapp.llm.base import ChatMessage, ChatParams, JSONResult
from studyapp.llm.openai_compat import OpenAICompatModel
from studyapp.personalize.pipeline import Personalization
from studyapp.personalize.select import SelectionResult
from studyapp.store.comparisons import ComparisonStore
from studyapp.store.conversations import ConversationStore
from studyapp.store.schedule import ScheduleStore
from studyapp.study.comparison import ComparisonRunner, RatingResult
from studyapp.study.current import save_enrollment
from studyapp.study.protocol import parse_protocol
from studyapp.study.schedule import ComparisonScheduler
from studyapp.study.service import StudyService
from studyapp.turns import ComparisonOffered, Preparing, TurnController
from tests.support.protocols import ratings_study
from tests.support.scripted_llm import ScriptedLLM


class Context:
    """The collaborators a turn needs, wired from the library's own parts (what tui.services does for the app)."""

    def __init__(self, db: Database, llm: ScriptedLLM, *, compare: bool) -> None:
        model = OpenAICompatModel(llm.base_url, llm.model)
        self.chat = ChatService(ConversationStore(db), lambda: model, params=ChatParams(max_tokens=32))
        self.study = StudyService(db)
        schedule = dataclasses.replace(self.study.protocol.comparisons, probability=1.0 if compare else 0.0,
                                       min_turns_between=0)
        self.study.scheduler = ComparisonScheduler(schedule)
        self.personalization = Personalization(db, extractor_model=model)
        self.written = 0
        self.selections = 0

    def has_memory(self) -> bool:
        return self.personalization.store.count_active() > 0

    async def select_for(self, conversation: Conversation, request: Message) -> SelectionResult:
        self.selections += 1
        return await self.personalization.select_for(conversation, request)

    def comparison_runner(self) -> ComparisonRunner:
        return self.study.runner(self.chat.model, self.chat.params)

    def records_written(self) -> None:
        self.written += 1


def answer(use: bool) -> Any:
    def rule(body: dict[str, Any]) -> object:
        schema = json.dumps(body.get("response_format") or {})
        if '"use"' in schema:
            return {"decisions": [{"id": 1, "use": use, "rationale": "food" if use else "unrelated"}]}
        system = body["messages"][0]["content"]
        return "personal answer" if "vegetarian" in system else "generic answer"
    return rule


async def run(controller: TurnController, conversation_id: str | None, text: str, **kw: Any) -> list[Any]:
    return [event async for event in controller.run(conversation_id, text, **kw)]


def selection_requests(llm: ScriptedLLM) -> int:
    return sum(1 for body in llm.requests if '"use"' in json.dumps(body.get("response_format") or {}))


async def test_without_memory_a_turn_is_saved_then_answered_with_no_selection(
        db: Database, scripted_llm: ScriptedLLM) -> None:
    scripted_llm.set_default(answer(True))
    ctx = Context(db, scripted_llm, compare=True)
    events = await run(TurnController(ctx), None, "dinner ideas?")
    assert isinstance(events[0], UserSaved) and isinstance(events[1], ReplyStarted)
    assert isinstance(events[-1], ReplyFinished) and events[-1].message.content == "generic answer"
    assert not any(isinstance(e, Preparing | ComparisonOffered) for e in events)
    assert ctx.selections == 0 and selection_requests(scripted_llm) == 0
    assert ctx.written == 3  # the participant's message, the schedule's decision, the finished reply
    [decision] = ScheduleStore(db).list()
    # The built-in study needs no attribute to be eligible; with nothing to select from, no comparison happens.
    assert (decision.outcome, decision.eligible, decision.selected_count) == ("nothing_selected", True, None)
    assert decision.message_id == events[0].message.id and decision.memory_size == 0


async def test_selection_runs_once_and_shapes_the_reply(db: Database, scripted_llm: ScriptedLLM) -> None:
    scripted_llm.set_default(answer(True))
    ctx = Context(db, scripted_llm, compare=False)
    ctx.personalization.memory.add("The user is vegetarian")
    events = await run(TurnController(ctx), None, "dinner ideas?")
    assert [type(e) for e in events[:3]] == [UserSaved, Preparing, ReplyStarted]
    assert events[2].attributes == ["The user is vegetarian"]
    assert events[-1].message.content == "personal answer"
    assert ctx.selections == 1 and selection_requests(scripted_llm) == 1
    [decision] = ScheduleStore(db).list()
    assert (decision.outcome, decision.selected_count, decision.memory_size) == ("no_comparisons", 1, 1)
    # The decision is recorded for the request, as the chat's "Shaped by your memory" line reads it.
    assert [a.text for a in ctx.personalization.store.selected_attributes(events[0].message.id)] == [
        "The user is vegetarian"]


async def test_memory_off_uses_nothing_from_memory(db: Database, scripted_llm: ScriptedLLM) -> None:
    scripted_llm.set_default(answer(True))
    ctx = Context(db, scripted_llm, compare=True)
    ctx.personalization.memory.add("The user is vegetarian")
    events = await run(TurnController(ctx), None, "dinner ideas?", memory_enabled=False)
    assert events[-1].message.content == "generic answer" and ctx.selections == 0
    assert [d.outcome for d in ScheduleStore(db).list()] == ["memory_off"]


async def test_a_due_comparison_is_offered_and_its_rating_recorded(db: Database, scripted_llm: ScriptedLLM) -> None:
    scripted_llm.set_default(answer(True))
    ctx = Context(db, scripted_llm, compare=True)
    ctx.personalization.memory.add("The user is vegetarian")
    controller = TurnController(ctx)
    events = await run(controller, None, "dinner ideas?")
    offer = events[-1]
    assert isinstance(offer, ComparisonOffered) and not any(isinstance(e, ReplyStarted) for e in events)
    assert [c.text for c in offer.choices if c.selected] == ["The user is vegetarian"]
    [decision] = ScheduleStore(db).list()
    assert decision.outcome == "comparison" and decision.eligible and decision.probability == 1.0
    assert decision.draw is not None and 0 <= decision.draw < 1
    outcome = await offer.runner.run(offer.saved.conversation.id, offer.saved.message, offer.choices)
    written = ctx.written
    rating = controller.finish_comparison(offer, RatingResult(
        "rated", outcome.comparison_id, outcome.personalized_side, shown_choice=5, chosen_side="right"))
    # 5 on the shown scale favours Response 2 (right): the personalized arm's view depends on its side.
    assert rating == (5 if outcome.personalized_side == "right" else 1)
    assert ComparisonStore(db).get(outcome.comparison_id).rating == rating
    assert ctx.written == written + 1


async def test_a_due_comparison_with_nothing_selected_is_an_ordinary_reply(
        db: Database, scripted_llm: ScriptedLLM) -> None:
    scripted_llm.set_default(answer(False))
    ctx = Context(db, scripted_llm, compare=True)
    ctx.personalization.memory.add("The user is vegetarian")
    events = await run(TurnController(ctx), None, "how tall is Everest?")
    assert not any(isinstance(e, ComparisonOffered) for e in events)
    assert events[-1].message.content == "generic answer" and ctx.selections == 1
    [decision] = ScheduleStore(db).list()
    assert (decision.outcome, decision.eligible, decision.selected_count) == ("nothing_selected", True, 0)


async def test_closing_the_turn_mid_reply_keeps_the_text_marked_interrupted(
        db: Database, scripted_llm: ScriptedLLM) -> None:
    scripted_llm.add_text("one two three four", chunks=["one ", "two ", "three ", "four"], tokens_per_s=20)
    ctx = Context(db, scripted_llm, compare=False)
    async with aclosing(TurnController(ctx).run(None, "count please")) as events:
        async for event in events:
            if isinstance(event, ReplyDelta):
                reply_id = event.message_id
                break
    stored = ctx.chat.store.get_message(reply_id)
    assert stored is not None and stored.status == "interrupted" and stored.content.startswith("one")


@pytest.mark.parametrize("status", ["failed", "cancelled"])
async def test_a_comparison_that_did_not_finish_announces_its_record(db: Database, scripted_llm: ScriptedLLM,
                                                                     status: str) -> None:
    scripted_llm.set_default(answer(True))
    ctx = Context(db, scripted_llm, compare=True)
    ctx.personalization.memory.add("The user is vegetarian")
    controller = TurnController(ctx)
    offer = (await run(controller, None, "dinner ideas?"))[-1]
    written = ctx.written
    # No rating to store, but the runner ended the comparison: its end state is a study record for the gate.
    assert controller.finish_comparison(offer, RatingResult(status)) is None
    assert ctx.written == written + 1


class BlockingSelector:
    """A selector model that answers only when cancelled: the turn is stopped while selection runs."""

    name = "blocking-selector"

    def __init__(self) -> None:
        self.asked = asyncio.Event()

    def stream(self, messages: list[ChatMessage], params: ChatParams | None = None) -> AsyncIterator[str]:
        raise AssertionError("the selector is only asked for JSON")

    async def complete_json(self, messages: list[ChatMessage], schema: dict[str, Any],
                            params: ChatParams | None = None) -> JSONResult:
        self.asked.set()
        await asyncio.Event().wait()  # never set: only cancellation ends this call
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        pass


def blocking_selection(db: Database, scripted_llm: ScriptedLLM) -> tuple[Context, BlockingSelector]:
    """A due comparison turn whose selection never answers."""
    ctx = Context(db, scripted_llm, compare=True)
    selector = BlockingSelector()
    ctx.personalization = Personalization(db, extractor_model=OpenAICompatModel(scripted_llm.base_url,
                                                                                scripted_llm.model),
                                          selector_model=selector)
    ctx.personalization.memory.add("The user is vegetarian")
    return ctx, selector


async def test_a_turn_cancelled_while_selecting_records_its_decision_as_cancelled(
        db: Database, scripted_llm: ScriptedLLM) -> None:
    ctx, selector = blocking_selection(db, scripted_llm)
    task = asyncio.create_task(run(TurnController(ctx), None, "dinner ideas?"))
    await selector.asked.wait()
    assert ScheduleStore(db).list() == []  # nothing decided yet: selection decides how a won draw ends
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    [decision] = ScheduleStore(db).list()
    assert (decision.outcome, decision.eligible, decision.selected_count) == ("cancelled", True, None)
    assert decision.draw is not None and decision.memory_size == 1
    assert ctx.written == 2  # the participant's message, the schedule's decision
    assert scripted_llm.requests == []  # no answer was asked for


async def test_a_turn_closed_at_preparing_records_its_decision_as_cancelled(
        db: Database, scripted_llm: ScriptedLLM) -> None:
    ctx, selector = blocking_selection(db, scripted_llm)
    async with aclosing(TurnController(ctx).run(None, "dinner ideas?")) as events:
        async for event in events:
            if isinstance(event, Preparing):
                break  # the consumer stops here: closing the generator ends the turn
    assert not selector.asked.is_set()
    [decision] = ScheduleStore(db).list()
    assert (decision.outcome, decision.selected_count) == ("cancelled", None)
    assert ctx.written == 2


MEMORY_CONDITIONS = ratings_study("conditions-2026", "Memory on or off", '''
[conditions]
[conditions.memory_on]
[conditions.memory_off]
personalization.memory = "off"
''')


def enrolled_in(db: Database, condition: str) -> None:
    """Enrolled with the protocol the server sends a participant in ``condition`` (stored as enrollment stores it)."""
    save_enrollment(db, parse_protocol(MEMORY_CONDITIONS).for_condition(condition), participant_id="p1")


async def test_in_the_memory_off_condition_an_ordinary_turn_uses_no_attributes(
        db: Database, scripted_llm: ScriptedLLM) -> None:
    scripted_llm.set_default(answer(True))
    enrolled_in(db, "memory_off")
    ctx = Context(db, scripted_llm, compare=False)
    assert not ctx.study.protocol.personalization.memory_in_replies
    ctx.personalization.memory.add("The user is vegetarian")
    events = await run(TurnController(ctx), None, "dinner ideas?")
    started = next(e for e in events if isinstance(e, ReplyStarted))
    assert started.attributes == [] and events[-1].message.content == "generic answer"
    assert not any(isinstance(e, Preparing) for e in events)
    assert ctx.selections == 0 and selection_requests(scripted_llm) == 0
    # The conversation keeps memory on: what the participant says is still learned from (extraction claims it).
    assert events[0].conversation.memory_enabled
    [decision] = ScheduleStore(db).list()
    assert decision.outcome == "no_comparisons" and decision.memory_size == 1


async def test_in_the_memory_off_condition_comparisons_still_run(db: Database, scripted_llm: ScriptedLLM) -> None:
    scripted_llm.set_default(answer(True))
    enrolled_in(db, "memory_off")
    ctx = Context(db, scripted_llm, compare=True)
    ctx.personalization.memory.add("The user is vegetarian")
    offer = (await run(TurnController(ctx), None, "dinner ideas?"))[-1]
    assert isinstance(offer, ComparisonOffered)
    assert [c.text for c in offer.choices if c.selected] == ["The user is vegetarian"]
    assert [d.outcome for d in ScheduleStore(db).list()] == ["comparison"]


async def test_in_the_memory_on_condition_the_reply_is_shaped_as_always(
        db: Database, scripted_llm: ScriptedLLM) -> None:
    scripted_llm.set_default(answer(True))
    enrolled_in(db, "memory_on")
    ctx = Context(db, scripted_llm, compare=False)
    ctx.personalization.memory.add("The user is vegetarian")
    events = await run(TurnController(ctx), None, "dinner ideas?")
    assert next(e for e in events if isinstance(e, ReplyStarted)).attributes == ["The user is vegetarian"]
    assert events[-1].message.content == "personal answer"
