"""What happens when a participant sends a message: the one place that runs a turn (Textual-free).

    async with aclosing(turns.run(conversation_id, text, memory_enabled=True)) as events:
        async for event in events:
            UserSaved          the message is committed (before any model call); show it
            Preparing          stage 2 (selection) is running; say so
            ComparisonOffered  the study's schedule made this a comparison turn: the screen shows both answers
                               (``offer.runner.run``), then hands the participant's answer to
                               ``turns.finish_comparison(offer, result)``; nothing more comes from ``run``
            ReplyStarted / ReplyDelta / ReplyFinished   an ordinary reply streaming (chat.ChatService)

Order of a turn: commit the message; ask the study's schedule whether this turn may be a comparison; if memory
is on and holds something, run selection *once* (its decisions are recorded per attribute); in a study (or a
condition) with ``personalization.memory = "off"``, selection runs only for a turn the draw made a comparison, and
an ordinary reply is written without attributes, as in a memory-off conversation; record the schedule's
decision with how the turn ends (schedule_decisions; ``cancelled`` if the participant stops the turn while
selection runs); a comparison needs a selected attribute (else both arms would be the same generic answer),
otherwise the reply streams with the selected attributes. Every committed study record is announced with
``records_written`` (the database has already noted it for the privacy gate, see store/collect_queue.py).
Cancelling the consumer (Esc) closes the generator, and the reply in flight is kept, marked interrupted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Protocol

from studyapp.chat import ChatService, ReplyDelta, ReplyFinished, ReplyStarted, UserSaved
from studyapp.domain import Conversation, Message
from studyapp.llm.base import LLMError
from studyapp.personalize.select import SelectionResult
from studyapp.study.comparison import AttributeChoice, ComparisonRunner, RatingResult
from studyapp.study.schedule import ScheduleDecision
from studyapp.study.service import StudyService

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Preparing:
    """Selection (a model call) runs before the answer: the screen can say so."""


@dataclass
class ComparisonOffered:
    saved: UserSaved
    choices: list[AttributeChoice]
    runner: ComparisonRunner = field(repr=False)


TurnEvent = UserSaved | Preparing | ComparisonOffered | ReplyStarted | ReplyDelta | ReplyFinished


class TurnContext(Protocol):
    """What a turn needs from the app (``tui.services.Services`` provides it; tests may build their own)."""

    chat: ChatService
    study: StudyService

    def has_memory(self) -> bool: ...

    async def select_for(self, conversation: Conversation, request: Message) -> SelectionResult: ...

    def comparison_runner(self) -> ComparisonRunner: ...

    def records_written(self) -> None: ...


class TurnController:
    def __init__(self, context: TurnContext) -> None:
        self.context = context

    async def run(self, conversation_id: str | None, text: str, *,
                  memory_enabled: bool = True) -> AsyncIterator[TurnEvent]:
        """One turn; ``memory_enabled`` applies when the turn starts a new conversation."""
        ctx = self.context
        saved = ctx.chat.save_user_message(conversation_id, text, memory_enabled=memory_enabled)
        ctx.records_written()
        yield saved
        attributes: list[str] = []
        # Every turn's schedule decision is recorded, so which turns became comparisons is a measured selection.
        decision = ctx.study.decide(saved.conversation, saved.message)
        outcome, selected_count = decision.outcome, None
        selection: SelectionResult | None = None
        # Memory off in the study's personalization (a condition's "memory off" arm): ordinary replies use no
        # attributes, while extraction goes on and a comparison still needs the selector's choice.
        memory_in_replies = ctx.study.protocol.personalization.memory_in_replies
        can_select = saved.conversation.memory_enabled and ctx.has_memory()
        if can_select and (memory_in_replies or decision.compare):
            try:
                yield Preparing()
                selection = await self._select(saved)
            except (asyncio.CancelledError, GeneratorExit):
                # Stopped while selection ran (Esc cancels the task or closes the generator): the schedule
                # looked at this turn, so it stays in the record of every turn (the comparisons' denominator).
                self._record(saved, decision, outcome="cancelled", selected_count=None)
                raise
            if selection is not None and selection.error is None:
                selected_count = len(selection.selected)
            attributes = selection.selected if selection is not None else []
        if not memory_in_replies:
            attributes = []
        if decision.compare:  # the draw was won: selection decides whether a comparison happens
            if not can_select:
                outcome = "nothing_selected"  # memory holds nothing to select from
            elif selection is None or selection.error is not None:
                outcome = "selection_failed"
            else:
                outcome = "comparison" if selection.selected else "nothing_selected"
        self._record(saved, decision, outcome=outcome, selected_count=selected_count)
        if outcome == "comparison" and selection is not None:
            choices = [AttributeChoice(**d.to_dict()) for d in selection.decisions]
            yield ComparisonOffered(saved, choices, ctx.comparison_runner())
            return
        async with aclosing(ctx.chat.reply(saved.conversation, saved.message, attributes=attributes)) as events:
            async for event in events:
                if isinstance(event, ReplyFinished):
                    ctx.records_written()
                yield event

    def _record(self, saved: UserSaved, decision: ScheduleDecision, *, outcome: str,
                selected_count: int | None) -> None:
        """The schedule's decision on this turn and how the turn ended (a study record: the gate is woken)."""
        self.context.study.record_decision(saved.message, decision, outcome=outcome, selected_count=selected_count)
        self.context.records_written()

    async def _select(self, saved: UserSaved) -> SelectionResult | None:
        try:
            return await self.context.select_for(saved.conversation, saved.message)
        except LLMError as exc:
            # Selection failing must not cost the participant an answer: this reply goes out unpersonalized.
            log.warning("attribute selection failed: %s", exc)
            return None

    def finish_comparison(self, offer: ComparisonOffered, result: RatingResult) -> int | None:
        """Record what the participant did with a comparison; returns the rating (personalized arm's view).

        Every result announces a record: a rating or skip is written here, a failed or cancelled comparison
        was ended by the runner (its end state is a study record too)."""
        rating = offer.runner.record_result(result)
        self.context.records_written()
        return rating
