"""Asking the study's own questions (studyapp.study.asking): when each is due, by explicit times in the
participant's time zone, and what each asking leaves in the participant's database."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from pathlib import Path

import pytest
from sqlite_utils import Database

from studyapp.privacy.consent import ConsentService
from studyapp.store.collect_queue import CollectQueue
from studyapp.store.comparisons import ComparisonStore
from studyapp.store.conversations import ConversationStore
from studyapp.store.db import open_database
from studyapp.store.questions import QuestionStore
from studyapp.study.asking import (
    Answer,
    AnswerError,
    Ask,
    Asking,
)
from studyapp.study.current import current_study, save_enrollment
from studyapp.study.protocol import Protocol, parse_protocol

QUESTIONS = '''
[[questions]]
id = "felt_understood"
text = "Which answer made you feel more understood?"
type = "choice"
options = ["Response 1", "Response 2", "Neither"]
when = "after_comparison"

[[questions]]
id = "wrong_assumption"
text = "Did either answer assume something wrong about you?"
type = "yes_no"
when = "after_comparison"

[[questions]]
id = "written_for_you"
text = "Did that reply feel like it was written for you?"
type = "likert"
points = 5
labels = ["Not at all", "Completely"]
when = "after_turn"
probability = 0.5
daily_cap = 2

[[questions]]
id = "today"
text = "How was today?"
type = "likert"
points = 3
labels = ["Bad", "Good"]
when = "daily"
at = "19:00"

[[questions]]
id = "this_week"
text = "This week, how well did the assistant keep up with you?"
type = "likert"
points = 7
labels = ["Not at all", "Perfectly"]
when = "weekly"
at = "18:00"
weekday = "sunday"

[[questions]]
id = "anything_else"
text = "Anything else?"
type = "text"
max_length = 40
when = "at_end"
'''


def protocol_text(*, questions: str = QUESTIONS, answers_required: bool = False) -> str:
    return f'''
[study]
id = "asking"
title = "Asking study"
version = "1"
duration_days = 14

[[consent]]
version = "1"
title = "Consent"
text = "You agree."

[categories.ratings]
required = true

[categories.question_answers]
required = {"true" if answers_required else "false"}

[comparisons]
min_turns_between = 0
daily_cap = 5
probability = 0.5
min_attributes = 0
{questions}'''


# Enrolled on Monday 2026-11-02, 09:00 in UTC-05:00 (14:00 UTC): a 14-day study, days 1..14 end 2026-11-15.
EAST_COAST = timezone(timedelta(hours=-5))
ENROLLED = datetime(2026, 11, 2, 14, 0, tzinfo=UTC)


def at(text: str, tz: tzinfo = EAST_COAST) -> datetime:
    """A local time in the participant's zone, e.g. at("2026-11-03 19:30")."""
    return datetime.fromisoformat(text).replace(tzinfo=tz)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = open_database(tmp_path / "studyapp.db")
    yield database
    database.close()


def enroll(db: Database, protocol: Protocol, *, consent: tuple[str, ...] = ("ratings", "question_answers"),
           enrolled_at: datetime = ENROLLED) -> None:
    save_enrollment(db, protocol, participant_id="p1")
    db.execute("UPDATE studies SET enrolled_at = ?", [enrolled_at.isoformat()])
    db.conn.commit()
    ConsentService(db).grant(protocol, consent)


def asking(db: Database, clock: Clock, *, rng: random.Random | None = None, tz: tzinfo = EAST_COAST) -> Asking:
    return Asking(db, current_study(db), tz=tz, clock=clock, rng=rng or random.Random(1))


class Draws(random.Random):
    """The experience-sampling draws, given in order (a fault-free stand-in for chance)."""

    def __init__(self, *draws: float) -> None:
        super().__init__()
        self.draws = list(draws)

    def random(self) -> float:
        return self.draws.pop(0)


def rated_comparison(db: Database, *, skip: bool = False) -> str:
    conversations = ConversationStore(db)
    conversation = conversations.create("c")
    prompt = conversations.add_message(conversation.id, "user", "dinner?")
    store = ComparisonStore(db)
    comparison_id = store.create(conversation_id=conversation.id, prompt_message_id=prompt.id,
                                 personalized_side="left", coin={"bit": 0}, attributes=[], model="m",
                                 parameters={}, templates={})
    store.mark_shown(comparison_id)
    store.record_rating(comparison_id, rating=None if skip else 4, shown_choice=None if skip else 4,
                        chosen_arm=None, chosen_message_id=None, skipped=skip, comment=None, time_to_rate_ms=900.0)
    return comparison_id


# The API over a real database ---------------------------------------------------------------------------------


def test_nothing_is_asked_outside_a_study_with_questions_and_their_consent(db: Database) -> None:
    clock = Clock(at("2026-11-03 20:00"))
    # Not enrolled: the built-in study has no questions.
    idle = asking(db, clock)
    assert idle.after_turn("m1") == [] and idle.surveys_due() == [] and idle.after_comparison("c1") == []
    # Enrolled, but question_answers not granted.
    enroll(db, parse_protocol(protocol_text()), consent=("ratings",))
    assert asking(db, clock, rng=Draws(0.0)).after_turn("m1") == []
    assert asking(db, clock).surveys_due() == []
    assert QuestionStore(db).list() == []


def test_an_unusable_protocol_asks_nothing(db: Database) -> None:
    enroll(db, parse_protocol(protocol_text()))
    db.execute("UPDATE studies SET protocol = json_set(protocol, '$.study.duration_days', -1)")
    db.conn.commit()
    study = current_study(db)
    assert not study.usable
    assert Asking(db, study, tz=EAST_COAST, clock=Clock(at("2026-11-03 20:00")), rng=Draws(0.0)).after_turn(
        "m1") == []


def test_after_turn_asks_one_question_records_it_and_its_chance(db: Database) -> None:
    enroll(db, parse_protocol(protocol_text()))
    clock = Clock(at("2026-11-03 10:00"))
    [ask] = asking(db, clock, rng=Draws(0.2)).after_turn("m1")
    assert ask.question.id == "written_for_you" and ask.message_id == "m1" and ask.ask_probability == 0.5
    assert ask.asked_at == at("2026-11-03 10:00") and ask.asked_at.utcoffset() == timedelta(hours=-5)
    [row] = QuestionStore(db).list()
    assert (row.id, row.status, row.local_day, row.study_day, row.utc_offset_min) == (
        ask.ask_id, "asked", "2026-11-03", 2, -300)
    # The same reply never brings a second question, and a lost draw asks nothing.
    assert asking(db, clock, rng=Draws(0.0)).after_turn("m1") == []
    assert asking(db, clock, rng=Draws(0.5)).after_turn("m2") == []


def test_after_comparison_only_after_a_rated_one_and_once(db: Database) -> None:
    enroll(db, parse_protocol(protocol_text()))
    clock = Clock(at("2026-11-03 10:00"))
    rated, skipped = rated_comparison(db), rated_comparison(db, skip=True)
    asks = asking(db, clock).after_comparison(rated)
    assert [a.question.id for a in asks] == ["felt_understood", "wrong_assumption"]
    assert {a.comparison_id for a in asks} == {rated}
    assert asking(db, clock).after_comparison(rated) == []
    assert asking(db, clock).after_comparison(skipped) == []
    assert asking(db, clock).after_comparison("no-such-comparison") == []


def test_record_stores_the_answer_and_notes_the_record_once(db: Database) -> None:
    enroll(db, parse_protocol(protocol_text()))
    woken: list[int] = []
    a = Asking(db, current_study(db), tz=EAST_COAST, clock=Clock(at("2026-11-03 10:00")), rng=Draws(0.1),
               on_change=lambda: woken.append(1))
    [ask] = a.after_turn("m1")
    assert CollectQueue(db).count() == 0  # open asks are not records yet
    a.record(Answer(ask, "answered", number=4, answered_at=at("2026-11-03 10:01")))
    row = QuestionStore(db).get(ask.ask_id)
    assert row is not None and (row.status, row.answer_number) == ("answered", 4)
    assert [q.kind for q in CollectQueue(db).take()] == ["question_answer"] and woken == [1]
    # A second answer does not change the first.
    a.record(Answer(ask, "skipped"))
    assert QuestionStore(db).get(ask.ask_id).status == "answered" and CollectQueue(db).count() == 1


@pytest.mark.parametrize(("question_id", "answer", "message"), [
    ("written_for_you", {"number": 6}, "from 1 to 5"),
    ("written_for_you", {"number": True}, "from 1 to 5"),
    ("wrong_assumption", {"number": 2}, "from 0 to 1"),
    ("felt_understood", {"option": "Maybe"}, "one of the question's options"),
    ("anything_else", {"text": "   "}, "is empty: write an answer, or skip"),
    ("anything_else", {"text": "x" * 41}, "41 characters; at most 40"),
])
def test_an_answer_that_does_not_fit_its_question_is_refused(db: Database, question_id: str,
                                                           answer: dict[str, object], message: str) -> None:
    enroll(db, parse_protocol(protocol_text()))
    question = next(q for q in current_study(db).protocol.questions if q.id == question_id)
    ask = Ask(ask_id="a1", question=question, asked_at=at("2026-11-03 10:00"))
    with pytest.raises(AnswerError, match=message):
        asking(db, Clock(at("2026-11-03 10:00"))).record(Answer(ask, "answered", **answer))  # type: ignore[arg-type]
