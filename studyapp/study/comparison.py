"""A comparison turn: both arms generated concurrently, a recorded fair coin for the sides, the rating recorded.

``ComparisonRunner.run`` takes the participant's (already stored) message and the attributes the selector
considered, and

1. draws the side of the personalized arm with a fair coin (``secrets.randbits(1)`` unless a seeded rng is
   injected for tests) and records the draw;
2. generates the generic arm (no profile) and the personalized arm (selected attributes) with the same
   model and ``ChatParams``, concurrently (``asyncio.gather``), each stored as a message with its arm,
   ``in_thread = 0`` and its text flushed at least every second, so a crash loses at most a second;
3. reports progress (characters per side) while generating, but returns the texts only when both arms
   are complete, so timing never reveals which arm is which;
4. records the conversation both arms were given (the ids of the history messages before the request and the
   sha256 of their transcript, studyapp.study.transcript), so the judge can be shown the same; a comparison
   whose arm failed, or that the participant cancelled, ends as ``failed`` or ``cancelled`` (a study record).

``record_rating`` converts the participant's choice on the shown scale (1 = Response 1 much better) to the
personalized arm's point of view (the export contract: 1 generic much better .. 5 personalized much
better), stores it with the relevance labels and puts the chosen answer into the conversation.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from studyapp.domain import Message
from studyapp.events import ASKED_WHEN, RELEVANCE_STATUSES
from studyapp.llm.base import ChatModel, ChatParams, LLMError
from studyapp.personalize.generate import build_messages, prompt_turns
from studyapp.store.comparisons import ComparisonRecord, ComparisonStore
from studyapp.store.conversations import ConversationStore
from studyapp.study.transcript import context_transcript, transcript_sha256

FLUSH_INTERVAL_S = 1.0
SIDES = ("left", "right")


@dataclass(frozen=True)
class AttributeChoice:
    """One attribute the selector considered for this request, with its verdict."""

    text: str
    attribute_id: str | None = None
    selected: bool = True
    rationale: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"attribute_id": self.attribute_id, "text": self.text, "selected": self.selected,
                "rationale": self.rationale}


@dataclass(frozen=True)
class Progress:
    """Characters received so far, by side as it will be shown (never by arm)."""

    left_chars: int
    right_chars: int
    left_done: bool
    right_done: bool

    @property
    def done(self) -> int:
        return int(self.left_done) + int(self.right_done)


@dataclass(frozen=True)
class ComparisonOutcome:
    """Both arms, complete, ready to show as Response 1 (left) and Response 2 (right)."""

    comparison_id: str
    personalized_side: str
    left_text: str
    right_text: str
    left_message_id: str
    right_message_id: str
    attributes: tuple[AttributeChoice, ...]


@dataclass(frozen=True)
class RelevanceQuestion:
    """An attribute sampled for "should this have shaped the answer?" and the chance it was sampled.

    Which attributes the selector chose is left out: the screen asks without knowing."""

    attribute_id: str
    text: str
    # 1 for a selected attribute; min(k, m) / m for one of the m unselected ones (k asked about).
    ask_probability: float


@dataclass(frozen=True)
class RelevanceAnswer:
    """What became of one sampled relevance question (studyapp.events.RELEVANCE_STATUSES)."""

    attribute_id: str
    # yes / no / not_sure (answered), or not_asked (never shown, or left with Esc).
    status: str
    ask_probability: float
    # When it was asked, relative to the rating (studyapp.events.ASKED_WHEN); None when not asked.
    asked_when: str | None = None

    def __post_init__(self) -> None:
        if self.status not in RELEVANCE_STATUSES:
            raise ValueError(f"status must be one of {', '.join(RELEVANCE_STATUSES)}, not {self.status!r}")
        if (self.status == "not_asked") != (self.asked_when is None):
            raise ValueError("asked_when is set for an answered question, and only for one")
        if self.asked_when is not None and self.asked_when not in ASKED_WHEN:
            raise ValueError(f"asked_when must be one of {', '.join(ASKED_WHEN)}, not {self.asked_when!r}")


@dataclass(frozen=True)
class RatingResult:
    """What the comparison screen hands back; ``ComparisonRunner.record_result`` stores it.

    status: ``rated``, ``skipped`` (rating skipped, a continuing answer may still be picked), ``failed``
    (an arm could not be generated; already recorded) or ``cancelled`` (the participant stopped generation).
    """

    status: str
    comparison_id: str | None = None
    personalized_side: str | None = None
    # On the shown scale: 1 = Response 1 much better .. 5 = Response 2 much better.
    shown_choice: int | None = None
    # "left" (Response 1) or "right" (Response 2): the answer that continues the conversation.
    chosen_side: str | None = None
    comment: str | None = None
    # One per sampled relevance question, whatever became of it (none when the study does not ask).
    relevance: tuple[RelevanceAnswer, ...] = ()
    time_to_rate_ms: float | None = None
    error: str | None = None
    # For a failed comparison: the arm put into the conversation instead, if one finished.
    reply_message_id: str | None = None


class ComparisonFailed(LLMError):
    """An arm could not be generated. ``reply_message_id`` is the arm put into the conversation instead, if any."""

    def __init__(self, message: str, *, comparison_id: str, reply_message_id: str | None,
                 detail: str | None = None) -> None:
        super().__init__(message, detail=detail)
        self.comparison_id = comparison_id
        self.reply_message_id = reply_message_id


def to_personalized_scale(shown_choice: int, personalized_side: str) -> int:
    """The export contract's rating (5 = personalized much better) from the choice on the shown scale.

    The shown scale runs 1 = Response 1 (left) much better .. 5 = Response 2 (right) much better.
    """
    if not isinstance(shown_choice, int) or isinstance(shown_choice, bool) or not 1 <= shown_choice <= 5:
        raise ValueError(f"shown_choice must be an integer 1..5, not {shown_choice!r}")
    if personalized_side == "left":
        return 6 - shown_choice
    if personalized_side == "right":
        return shown_choice
    raise ValueError(f"personalized_side must be 'left' or 'right', not {personalized_side!r}")


def draw_side(rng: random.Random | None = None) -> tuple[str, dict[str, Any]]:
    """The fair coin: (personalized side, the recorded draw). 1 puts the personalized arm on the left."""
    if rng is None:
        bit, source = secrets.randbits(1), "secrets.randbits(1)"
    else:
        bit, source = rng.getrandbits(1), "random.Random.getrandbits(1)"
    side = "left" if bit == 1 else "right"
    return side, {"source": source, "bit": bit, "personalized_side": side}


@dataclass
class _Arm:
    arm: str
    side: str
    message_id: str
    messages: list[dict[str, str]]
    text: str = ""
    done: bool = False
    error: BaseException | None = field(default=None, repr=False)


class ComparisonRunner:
    """Runs comparison turns and records their outcome. One runner per model and parameters."""

    def __init__(
        self,
        model: ChatModel,
        conversations: ConversationStore,
        comparisons: ComparisonStore,
        *,
        params: ChatParams | None = None,
        rng: random.Random | None = None,
        context_messages: int = 20,
        flush_interval_s: float = FLUSH_INTERVAL_S,
    ) -> None:
        self.model = model
        self.conversations = conversations
        self.comparisons = comparisons
        self.params = params or ChatParams()
        self.rng = rng
        self.context_messages = context_messages
        self.flush_interval_s = flush_interval_s

    async def run(
        self,
        conversation_id: str,
        prompt: Message,
        attributes: Sequence[AttributeChoice | str],
        *,
        progress: Callable[[Progress], None] | None = None,
    ) -> ComparisonOutcome:
        choices = tuple(a if isinstance(a, AttributeChoice) else AttributeChoice(text=a) for a in attributes)
        selected = [a.text for a in choices if a.selected]
        if not selected:
            raise ValueError("a comparison needs at least one selected attribute: without one both arms are generic")
        # Enough recent turns for build_messages to keep its last ``context_messages`` (some may be skipped).
        history = self.conversations.messages(conversation_id, before_n=prompt.n + 1,
                                              limit=self.context_messages * 3)
        generic_messages, generic_ref = build_messages(history, None, context_messages=self.context_messages)
        personal_messages, personal_ref = build_messages(history, selected, context_messages=self.context_messages)
        # The conversation before the request that both arms were given, recorded so the judge sees the same.
        context = [m for m in prompt_turns(history, self.context_messages) if m.id != prompt.id]

        personalized_side, coin = draw_side(self.rng)
        generic_side = "right" if personalized_side == "left" else "left"
        comparison_id = self.comparisons.create(
            conversation_id=conversation_id,
            prompt_message_id=prompt.id,
            personalized_side=personalized_side,
            coin=coin,
            attributes=[a.to_dict() for a in choices],
            model=self.model.name,
            parameters=self.params.to_dict(),
            templates={"generic": generic_ref, "personalized": personal_ref},
            context_message_ids=[m.id for m in context],
            context_sha256=transcript_sha256(context_transcript(context)),
        )
        generic_msg = self.conversations.add_message(
            conversation_id, "assistant", "", status="streaming", model=self.model.name, arm="generic",
            comparison_id=comparison_id, template=generic_ref, in_thread=False)
        personal_msg = self.conversations.add_message(
            conversation_id, "assistant", "", status="streaming", model=self.model.name, arm="personalized",
            comparison_id=comparison_id, template=personal_ref, in_thread=False)
        self.comparisons.set_arm_messages(comparison_id, generic_message_id=generic_msg.id,
                                          personalized_message_id=personal_msg.id)
        arms = {
            "generic": _Arm("generic", generic_side, generic_msg.id, generic_messages),
            "personalized": _Arm("personalized", personalized_side, personal_msg.id, personal_messages),
        }
        by_side = {arm.side: arm for arm in arms.values()}

        def report() -> None:
            if progress is not None:
                left, right = by_side["left"], by_side["right"]
                progress(Progress(len(left.text), len(right.text), left.done, right.done))

        try:
            await asyncio.gather(*(self._generate(arm, report) for arm in arms.values()))
        except asyncio.CancelledError:
            self._end(comparison_id, "cancelled")  # the participant stopped it (Esc while generating)
            raise
        failed = [arm for arm in arms.values() if arm.error is not None]
        if failed:
            self._end(comparison_id, "failed")
            # The participant's message still gets an answer: a finished arm joins the thread
            # (personalized first, as in an ordinary turn with memory on).
            fallback = next((a for a in (arms["personalized"], arms["generic"]) if a.done), None)
            if fallback is not None:
                self.conversations.set_in_thread(fallback.message_id, True)
            error = failed[0].error
            raise ComparisonFailed(
                str(error), comparison_id=comparison_id,
                reply_message_id=fallback.message_id if fallback else None,
                detail=getattr(error, "detail", None),
            )
        left, right = by_side["left"], by_side["right"]
        return ComparisonOutcome(
            comparison_id=comparison_id,
            personalized_side=personalized_side,
            left_text=left.text,
            right_text=right.text,
            left_message_id=left.message_id,
            right_message_id=right.message_id,
            attributes=choices,
        )

    def _end(self, comparison_id: str, state: str) -> None:
        """A comparison that will never be rated: a study record with its end state. Its status becomes 'error'
        as before, so the schedule does not count it (daily cap, turns between comparisons)."""
        self.comparisons.end(comparison_id, state)  # first: a crash before the status still leaves the record
        self.comparisons.set_status(comparison_id, "error")

    async def _generate(self, arm: _Arm, report: Callable[[], None]) -> None:
        started = time.monotonic()
        last_flush = started
        first_token_ms: float | None = None
        try:
            async for delta in self.model.stream(arm.messages, self.params):
                if not delta:
                    continue
                if first_token_ms is None:
                    first_token_ms = (time.monotonic() - started) * 1000
                arm.text += delta
                report()
                if time.monotonic() - last_flush >= self.flush_interval_s:
                    self.conversations.update_message(arm.message_id, content=arm.text)
                    last_flush = time.monotonic()
        except asyncio.CancelledError:
            self.conversations.update_message(arm.message_id, content=arm.text, status="interrupted",
                                              duration_ms=(time.monotonic() - started) * 1000)
            raise
        except Exception as exc:
            # Recorded, not raised here: the other arm keeps going and run() decides what the participant sees.
            arm.error = exc if isinstance(exc, LLMError) else LLMError(f"The model failed: {exc}")
            self.conversations.update_message(arm.message_id, content=arm.text, status="error", error=str(arm.error),
                                              duration_ms=(time.monotonic() - started) * 1000)
            report()
            return
        arm.done = True
        self.conversations.update_message(arm.message_id, content=arm.text, status="complete",
                                          first_token_ms=first_token_ms,
                                          duration_ms=(time.monotonic() - started) * 1000)
        report()

    # Recording ----------------------------------------------------------------------------------

    def mark_shown(self, comparison_id: str) -> None:
        self.comparisons.mark_shown(comparison_id)

    def record_rating(
        self,
        comparison_id: str,
        shown_choice: int,
        personalized_side: str,
        chosen_side: str,
        *,
        comment: str | None = None,
        relevance: Sequence[RelevanceAnswer] = (),
        time_to_rate_ms: float | None = None,
    ) -> int:
        """Store the participant's rating; returns it on the personalized arm's scale (1..5)."""
        record = self._check(comparison_id, personalized_side)
        rating = to_personalized_scale(shown_choice, personalized_side)
        chosen_arm, chosen_message = self._chosen(record, chosen_side)
        self.comparisons.record_rating(
            comparison_id, rating=rating, shown_choice=shown_choice, chosen_arm=chosen_arm,
            chosen_message_id=chosen_message, skipped=False, comment=_clean(comment),
            time_to_rate_ms=time_to_rate_ms, relevance=self._relevance_rows(record, relevance),
        )
        return rating

    def record_skip(
        self,
        comparison_id: str,
        personalized_side: str,
        chosen_side: str | None = None,
        *,
        comment: str | None = None,
        relevance: Sequence[RelevanceAnswer] = (),
        time_to_rate_ms: float | None = None,
    ) -> None:
        """The participant skipped rating. The answer they picked continues the conversation; if they
        picked none, the personalized one does (as in an ordinary turn) and ``chosen`` stays empty."""
        record = self._check(comparison_id, personalized_side)
        if chosen_side is None:
            chosen_arm, chosen_message = None, record.personalized_message_id
        else:
            chosen_arm, chosen_message = self._chosen(record, chosen_side)
        self.comparisons.record_rating(
            comparison_id, rating=None, shown_choice=None, chosen_arm=chosen_arm, chosen_message_id=chosen_message,
            skipped=True, comment=_clean(comment), time_to_rate_ms=time_to_rate_ms,
            relevance=self._relevance_rows(record, relevance),
        )

    def record_result(self, result: RatingResult) -> int | None:
        """Store what the screen returned; returns the rating on the personalized scale (None if not rated)."""
        if result.status not in ("rated", "skipped"):
            return None  # failed / cancelled comparisons were recorded by run()
        if result.comparison_id is None or result.personalized_side is None:
            raise ValueError("a rated or skipped result needs its comparison_id and personalized_side")
        if result.status == "rated":
            if result.shown_choice is None or result.chosen_side is None:
                raise ValueError("a rated result needs shown_choice and chosen_side")
            return self.record_rating(result.comparison_id, result.shown_choice, result.personalized_side,
                                      result.chosen_side, comment=result.comment, relevance=result.relevance,
                                      time_to_rate_ms=result.time_to_rate_ms)
        self.record_skip(result.comparison_id, result.personalized_side, result.chosen_side,
                         comment=result.comment, relevance=result.relevance, time_to_rate_ms=result.time_to_rate_ms)
        return None

    def _check(self, comparison_id: str, personalized_side: str) -> ComparisonRecord:
        record = self.comparisons.get(comparison_id)
        if personalized_side != record.personalized_side:
            # The screen must report the side it was given; anything else would flip the rating.
            raise ValueError(f"comparison {comparison_id} put the personalized arm on the "
                             f"{record.personalized_side}, not the {personalized_side}")
        return record

    @staticmethod
    def _chosen(record: ComparisonRecord, chosen_side: str) -> tuple[str, str | None]:
        if chosen_side not in SIDES:
            raise ValueError(f"chosen_side must be 'left' or 'right', not {chosen_side!r}")
        if chosen_side == record.personalized_side:
            return "personalized", record.personalized_message_id
        return "generic", record.generic_message_id

    @staticmethod
    def _relevance_rows(record: ComparisonRecord, answers: Sequence[RelevanceAnswer]) -> list[dict[str, Any]]:
        known = {a["attribute_id"]: a for a in record.attributes if a.get("attribute_id")}
        rows = []
        for answer in answers:
            attribute = known.get(answer.attribute_id)
            if attribute is None:
                raise ValueError(f"attribute {answer.attribute_id} was not part of comparison {record.id}")
            rows.append({
                "attribute_id": answer.attribute_id,
                "selected_by_model": bool(attribute.get("selected")),
                # The selector's yes/no is what made it selected; kept separate for selectors that rank.
                "model_relevant": bool(attribute.get("model_relevant", attribute.get("selected"))),
                "status": answer.status,
                "asked_when": answer.asked_when,
                "ask_probability": answer.ask_probability,
            })
        return rows


def _clean(comment: str | None) -> str | None:
    if comment is None:
        return None
    return comment.strip() or None


def relevance_sample(attributes: Sequence[AttributeChoice], *, unselected: int = 2,
                     rng: random.Random | None = None) -> list[RelevanceQuestion]:
    """What to ask "should this have shaped the answer?" about, with the chance each was asked: every selected
    attribute with an id (1) and ``min(unselected, m)`` of the m unselected ones with an id (each
    ``min(unselected, m) / m``), shuffled so the order does not tell which were selected. Analyses weight the
    unselected answers by that chance to estimate what the selector missed."""
    rng = rng or random.SystemRandom()
    with_id = [a for a in attributes if a.attribute_id]
    chosen = [a for a in with_id if a.selected]
    others = [a for a in with_id if not a.selected]
    asked = min(max(unselected, 0), len(others))
    questions = [RelevanceQuestion(a.attribute_id or "", a.text, 1.0) for a in chosen]
    questions += [RelevanceQuestion(a.attribute_id or "", a.text, asked / len(others))
                  for a in rng.sample(others, asked)]
    rng.shuffle(questions)
    return questions
