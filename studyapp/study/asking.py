"""Asking the study's own questions (protocol ``[[questions]]``): when each is due, and what became of it.

    asking = Asking(db, current_study, on_change=wake_the_gate)
    asks = asking.after_turn(reply_id)          # experience sampling: at most one question after a reply
    asks = asking.after_comparison(comparison)  # after a rated comparison
    asks = asking.surveys_due()                 # daily, weekly and at_end questions due now
    asking.record(Answer(ask, "answered", number=4))   # or "skipped"
    asking.postpone(asks)                       # a survey put off: due again in an hour, within its period

Every call that returns asks has recorded them as asked (table question_asks), so a crash leaves them open and the
next start closes them as ``unanswered`` (``QuestionStore.mark_unanswered``, like abandoned comparisons). Closing an
ask (answered, skipped, unanswered) notes a ``question_answer`` record for the privacy gate in that transaction.

The rules are pure functions of ``now``, the protocol's questions and the history of asks (``turn_candidates``,
``pick``, ``survey_period``, ``surveys_due_at``), so tests pass explicit times. Days and times are the participant's
local ones (``tz``, default this machine's zone): a daily question at "19:00" is due from 19:00 until local
midnight, once a day; a weekly one from its weekday at that time until the next one, once that week; at_end once
the study day passes the protocol's duration_days. Nothing is asked when not enrolled in a usable study with
questions, or when the consent in force does not grant ``question_answers``.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo

from sqlite_utils import Database

from studyapp.privacy.consent import ConsentService
from studyapp.store.comparisons import ComparisonNotFound, ComparisonStore
from studyapp.store.questions import QuestionAsk, QuestionStore, utc_text
from studyapp.store.util import atomic, new_id
from studyapp.study.current import CurrentStudy
from studyapp.study.questions import WEEKDAYS, Question
from studyapp.study.schedule import study_day

log = logging.getLogger(__name__)

# The consent category the answers travel in (studyapp.events).
CATEGORY = "question_answers"
# Questions that come as a survey of their own (the participant may put it off), not after a reply or rating.
SURVEY_WHEN = ("daily", "weekly", "at_end")
# A survey put off is due again this much later (if its period has not ended by then).
POSTPONE_DELAY = timedelta(hours=1)
# The period key of the exit survey: asked once per study.
AT_END_PERIOD = "end"
ANSWER_STATUSES = ("answered", "skipped")


class AnswerError(ValueError):
    """An answer that does not fit its question; the message names the question and what is allowed."""


@dataclass(frozen=True)
class Ask:
    """One question put to the participant now."""

    ask_id: str  # the record's answer_id
    question: Question
    asked_at: datetime  # aware, in the participant's local offset
    comparison_id: str | None = None
    message_id: str | None = None
    ask_probability: float | None = None


@dataclass(frozen=True)
class Answer:
    ask: Ask
    status: str  # "answered" | "skipped"
    answered_at: datetime | None = None  # when answered or skipped (default: now)
    number: int | None = None  # likert point 1..N; yes_no 1 yes, 0 no
    option: str | None = None  # choice: the option's text as the protocol gives it
    text: str | None = None  # free text (anonymized later, on its way to the outbox)


# The rules: pure functions of the time, the questions and the history ----------------------------------------


def offset_minutes(moment: datetime) -> int:
    offset = moment.utcoffset()
    return round(offset.total_seconds() / 60) if offset is not None else 0


def _aware(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def turn_candidates(now: datetime, questions: Sequence[Question], history: Sequence[QuestionAsk], *,
                    tz: tzinfo | None = None) -> list[tuple[Question, float]]:
    """The after_turn questions that may come after a reply now, each with its chance.

    A question whose daily cap is reached today (the participant's local day) drops out. The chances are the
    questions' probabilities, scaled down to sum to 1 when they would add up to more: one draw picks at most one
    question (never two after one reply), and each question's chance is exactly the recorded ask_probability.
    """
    today = now.astimezone(tz).date().isoformat()
    asked_today = Counter(a.question_id for a in history if a.question_when == "after_turn" and a.local_day == today)
    eligible = [q for q in questions
                if q.when == "after_turn" and asked_today[q.id] < (q.daily_cap or 0) and (q.probability or 0) > 0]
    scale = max(1.0, sum(q.probability or 0.0 for q in eligible))
    return [(q, (q.probability or 0.0) / scale) for q in eligible]


def pick(candidates: Sequence[tuple[Question, float]], draw: float) -> tuple[Question, float] | None:
    """The question ``draw`` (uniform in [0, 1)) falls on, the candidates' chances laid end to end; or None."""
    edge = 0.0
    for question, chance in candidates:
        if edge <= draw < edge + chance:
            return question, chance
        edge += chance
    return None


@dataclass(frozen=True)
class SurveyPeriod:
    """The stretch of time a daily, weekly or at_end question is asked once in."""

    key: str  # the local date it started on ("2026-11-29"), or "end"
    starts_at: datetime
    ends_at: datetime | None  # None: at_end's never ends


def at_local(day: date, clock: time, tz: tzinfo | None) -> datetime:
    """``clock`` on ``day`` in the participant's zone, aware. None: this machine's zone, daylight saving included
    (a naive time goes through the system's local time rules, where a fixed offset taken from now would be an
    hour off on the days the clocks change)."""
    if tz is None:
        return datetime.combine(day, clock).astimezone()
    return datetime.combine(day, clock, tzinfo=tz)


def survey_period(question: Question, now: datetime, *, enrolled_at: datetime, duration_days: int,
                  tz: tzinfo | None = None) -> SurveyPeriod | None:
    """The period of ``question`` that has begun by ``now`` (None: none is under way).

    daily: from ``at`` until local midnight; weekly: from ``at`` on its weekday until the same time a week later;
    both only on the study's days (1..duration_days) and never from a time before the enrollment. at_end: from the
    local midnight that ends the last study day, without end.
    """
    today = now.astimezone(tz).date()
    day, _ = study_day(enrolled_at, now, duration_days, tz=tz)
    if question.when == "at_end":
        if day <= duration_days:
            return None
        last_day_over = enrolled_at.astimezone(tz).date() + timedelta(days=duration_days)
        return SurveyPeriod(AT_END_PERIOD, at_local(last_day_over, time(0), tz), None)
    if question.when not in ("daily", "weekly") or question.at is None or day > duration_days:
        return None
    hour, minute = (int(part) for part in question.at.split(":"))
    at = time(hour, minute)
    if question.when == "daily":
        start_day, ends = today, at_local(today + timedelta(days=1), time(0), tz)
    else:
        start_day = today - timedelta(days=(today.weekday() - WEEKDAYS.index(question.weekday or "")) % 7)
        if at_local(start_day, at, tz) > now:
            start_day -= timedelta(days=7)  # today is its weekday, but before its time: last week's is under way
        ends = at_local(start_day + timedelta(days=7), at, tz)
    starts = at_local(start_day, at, tz)
    if starts > now or starts < enrolled_at:
        return None
    return SurveyPeriod(start_day.isoformat(), starts, ends)


@dataclass(frozen=True)
class DueSurvey:
    question: Question
    period: SurveyPeriod | None = None  # a new asking for this period
    again: QuestionAsk | None = None  # or a postponed asking, due again


def surveys_due_at(now: datetime, questions: Sequence[Question], history: Sequence[QuestionAsk], *,
                   enrolled_at: datetime, duration_days: int,
                   tz: tzinfo | None = None) -> tuple[list[DueSurvey], list[QuestionAsk]]:
    """(due, expired): the surveys to put to the participant now, in the protocol's order, and the open asks
    (postponed, or put to the participant and still unanswered) that can no longer be answered (their period is
    over, or the protocol no longer has the question as it was asked) and so end unanswered."""
    surveys = {q.id: q for q in questions if q.when in SURVEY_WHEN}
    asked = {(a.question_id, a.period) for a in history if a.question_when in SURVEY_WHEN}
    again: dict[str, QuestionAsk] = {}
    waiting: set[str] = set()
    expired: list[QuestionAsk] = []
    for ask in history:
        if ask.status not in ("postponed", "asked"):
            continue
        question = surveys.get(ask.question_id)
        ends = _aware(ask.period_ends_at) if ask.period_ends_at else None
        if question is None or question.version != ask.question_version or (ends is not None and now >= ends):
            # Yesterday's survey left on screen (or announced and never opened) is not today's answer.
            expired.append(ask)
            continue
        if ask.status == "asked":
            continue  # on screen or announced now; the period's key keeps it from being asked twice
        waiting.add(ask.question_id)  # one asking of a question at a time
        if ask.due_at is None or _aware(ask.due_at) <= now:
            again[ask.question_id] = ask
    due: list[DueSurvey] = []
    for question in surveys.values():
        if question.id in again:
            due.append(DueSurvey(question, again=again[question.id]))
            continue
        if question.id in waiting:
            continue
        period = survey_period(question, now, enrolled_at=enrolled_at, duration_days=duration_days, tz=tz)
        if period is not None and (question.id, period.key) not in asked:
            due.append(DueSurvey(question, period=period))
    return due, expired


def check_answer(question: Question, answer: Answer) -> tuple[int | None, str | None, str | None]:
    """(number, option, text) of an answer that fits ``question``; AnswerError says what does not."""
    if answer.status not in ANSWER_STATUSES:
        raise AnswerError(f"an answer to {question.id!r} is {' or '.join(ANSWER_STATUSES)}, not {answer.status!r}")
    if answer.status == "skipped":
        return None, None, None
    where = f"the answer to {question.id!r} ({question.type})"
    number, option, text = answer.number, answer.option, answer.text
    if question.type in ("likert", "yes_no"):
        low, high = (1, question.points or 0) if question.type == "likert" else (0, 1)
        if isinstance(number, bool) or not isinstance(number, int) or not low <= number <= high:
            raise AnswerError(f"{where} must be a whole number from {low} to {high}, got {number!r}")
        return number, None, None
    if question.type == "choice":
        if option not in question.options:
            raise AnswerError(f"{where} must be one of the question's options ({', '.join(question.options)}), "
                              f"got {option!r}")
        return None, option, None
    if not isinstance(text, str) or not text.strip():
        raise AnswerError(f"{where} is empty: write an answer, or skip the question")
    if question.max_length is not None and len(text) > question.max_length:
        raise AnswerError(f"{where} has {len(text)} characters; at most {question.max_length} are allowed")
    return None, None, text


# The app's side: the rules over the participant's database ---------------------------------------------------


class Asking:
    """The study's questions for the app (``Services.asking``); every method is safe to call when nothing can be
    asked: it returns [] (or does nothing)."""

    def __init__(self, db: Database, study: CurrentStudy, *, tz: tzinfo | None = None,
                 rng: random.Random | None = None, clock: Callable[[], datetime] | None = None,
                 on_change: Callable[[], None] | None = None, postpone_delay: timedelta = POSTPONE_DELAY) -> None:
        """``tz``: the participant's time zone (None: this machine's); ``rng``: the experience-sampling draw;
        ``clock``: now, aware; ``on_change``: study records were written (wake the privacy gate)."""
        self.db = db
        self.study = study
        self.store = QuestionStore(db)
        self.tz = tz
        self.rng = rng if rng is not None else random.SystemRandom()
        self.clock = clock or (lambda: datetime.now(UTC))
        self.on_change = on_change
        self.postpone_delay = postpone_delay
        # Replies that had their draw in this run: a lost draw leaves no row, and a second draw for the same reply
        # would make its real chance larger than the recorded one.
        self._drawn: set[str] = set()

    # What may be asked ---------------------------------------------------------------------------

    def questions(self) -> tuple[Question, ...]:
        """The study's questions, or none: not enrolled in a usable study, or its consent in force (for the
        current consent document) does not grant question_answers."""
        study = self.study
        if study.record is None or not study.usable or not study.protocol.questions:
            return ()
        consent = ConsentService(self.db)
        current = consent.current(study.record.id)
        if current is None or not current.allows(CATEGORY) or consent.needs_reconsent(study.protocol):
            return ()
        return study.protocol.questions

    @property
    def _study_id(self) -> str:
        assert self.study.record is not None  # questions() is empty otherwise
        return self.study.record.id

    # Asking --------------------------------------------------------------------------------------

    def after_turn(self, message_id: str) -> list[Ask]:
        """Experience sampling after a finished assistant reply: at most one question, drawn with its chance."""
        questions = [q for q in self.questions() if q.when == "after_turn"]
        if not questions:
            return []
        if message_id in self._drawn or self.store.asked_about(self._study_id, message_id=message_id):
            return []  # this reply had its draw
        now = self.clock()
        today = self.store.history(self._study_id, when=("after_turn",),
                                   local_day=now.astimezone(self.tz).date().isoformat())
        candidates = turn_candidates(now, questions, today, tz=self.tz)
        if not candidates:
            return []
        # Drawn only when a question could come, so under a seed the draws depend only on such replies.
        self._drawn.add(message_id)
        chosen = pick(candidates, self.rng.random())
        if chosen is None:
            return []
        question, chance = chosen
        row = self._row(question, now, message_id=message_id, ask_probability=chance)
        self.store.add([row])
        return [self._ask(row, question)]

    def after_comparison(self, comparison_id: str) -> list[Ask]:
        """The after_comparison questions, once, after the participant rated the comparison (not after a skipped,
        failed, cancelled or abandoned one)."""
        questions = [q for q in self.questions() if q.when == "after_comparison"]
        if not questions:
            return []
        try:
            state = ComparisonStore(self.db).get(comparison_id).state
        except ComparisonNotFound:
            return []
        if state != "rated" or self.store.asked_about(self._study_id, comparison_id=comparison_id):
            return []
        now = self.clock()
        rows = [self._row(q, now, comparison_id=comparison_id) for q in questions]
        self.store.add(rows)
        return [self._ask(row, q) for row, q in zip(rows, questions, strict=True)]

    def surveys_due(self) -> list[Ask]:
        """The daily, weekly and at_end questions due now (a postponed one again once its delay has passed).
        Postponed ones whose period ended are closed as unanswered."""
        surveys = [q for q in self.questions() if q.when in SURVEY_WHEN]
        if not surveys:
            return []
        assert self.study.record is not None
        now = self.clock()
        history = self.store.history(self._study_id, when=SURVEY_WHEN)
        due, expired = surveys_due_at(now, surveys, history, enrolled_at=_aware(self.study.record.enrolled_at),
                                      duration_days=self.study.protocol.duration_days, tz=self.tz)
        rows = [(self._row(d.question, now, period=d.period), d.question) for d in due if d.period is not None]
        again = [(d.again, d.question) for d in due if d.again is not None]
        with atomic(self.db):
            if expired:
                self.store.mark_unanswered([a.id for a in expired])
            self.store.add(row for row, _ in rows)
            self.store.reopen([a.id for a, _ in again])
        if expired:
            self._changed()
        by_id = {row.id: self._ask(row, q) for row, q in [*rows, *again]}
        order = {q.id: i for i, q in enumerate(surveys)}
        return sorted(by_id.values(), key=lambda a: order[a.question.id])

    # Answers -------------------------------------------------------------------------------------

    def record(self, answer: Answer) -> None:
        """Store an answer or a skip (it then travels as a question_answer record, if consented). AnswerError
        when the answer does not fit the question. An ask already closed keeps its first ending."""
        number, option, text = check_answer(answer.ask.question, answer)
        answered_at = answer.answered_at or self.clock()
        stored = self.store.get(answer.ask.ask_id)
        if stored is not None and stored.period_ends_at and _aware(stored.period_ends_at) <= answered_at:
            # A daily or weekly survey answered after its day or week: the answer would date the wrong period.
            log.info("question %s was answered after its period ended; it stays unanswered", answer.ask.question.id)
            if self.store.mark_unanswered([stored.id]):
                self._changed()
            return
        if self.store.close(answer.ask.ask_id, answer.status, answered_at=utc_text(answered_at), number=number,
                            option=option, text=text):
            self._changed()
        else:
            log.info("question %s was answered after it had closed; the first ending stands",
                     answer.ask.question.id)

    def still_open(self, asks: Sequence[Ask]) -> list[Ask]:
        """Those of ``asks`` not closed meanwhile (a survey left waiting past its day ends unanswered)."""
        return [a for a in asks
                if (row := self.store.get(a.ask_id)) is not None and row.status in ("asked", "postponed")]

    def postpone(self, asks: Sequence[Ask]) -> None:
        """Surveys put off by the participant: due again after the delay, if their period has not ended by then
        (then they end unanswered)."""
        other = [a.question.id for a in asks if a.question.when not in SURVEY_WHEN]
        if other:
            raise AnswerError(f"only daily, weekly and at_end questions can be put off, not {', '.join(other)}: "
                              "skip or answer them")
        if asks:
            self.store.postpone([a.ask_id for a in asks], self.clock() + self.postpone_delay)

    # Helpers -------------------------------------------------------------------------------------

    def _row(self, question: Question, now: datetime, *, period: SurveyPeriod | None = None,
             comparison_id: str | None = None, message_id: str | None = None,
             ask_probability: float | None = None) -> QuestionAsk:
        record = self.study.record
        assert record is not None
        local = now.astimezone(self.tz)
        day, _ = study_day(record.enrolled_at, now, self.study.protocol.duration_days, tz=self.tz)
        return QuestionAsk(
            id=new_id(), study_id=record.id, question_id=question.id, question_version=question.version,
            question_type=question.type, question_when=question.when, asked_at=utc_text(now),
            utc_offset_min=offset_minutes(local), local_day=local.date().isoformat(), study_day=day,
            period=period.key if period else None,
            period_ends_at=utc_text(period.ends_at) if period and period.ends_at else None,
            comparison_id=comparison_id, message_id=message_id, ask_probability=ask_probability)

    @staticmethod
    def _ask(row: QuestionAsk, question: Question) -> Ask:
        return Ask(ask_id=row.id, question=question, asked_at=local_time(row.asked_at, row.utc_offset_min),
                   comparison_id=row.comparison_id, message_id=row.message_id, ask_probability=row.ask_probability)

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()


def local_time(stored: str, offset_min: int) -> datetime:
    """A stored (UTC) time in the participant's offset of the time."""
    return _aware(stored).astimezone(timezone(timedelta(minutes=offset_min)))
