"""Asking the study's own questions (studyapp.study.asking): when each is due, by explicit times in the
participant's time zone, and what each asking leaves in the participant's database."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlite_utils import Database

from studyapp.context import AppContext
from studyapp.llm.openai_compat import OpenAICompatModel
from studyapp.privacy.consent import ConsentService
from studyapp.store.collect_queue import CollectQueue
from studyapp.store.comparisons import ComparisonStore
from studyapp.store.conversations import ConversationStore
from studyapp.store.db import open_database
from studyapp.store.questions import QuestionAsk, QuestionStore
from studyapp.study.asking import (
    Answer,
    AnswerError,
    Ask,
    Asking,
    pick,
    survey_period,
    surveys_due_at,
    turn_candidates,
)
from studyapp.study.current import current_study, save_enrollment
from studyapp.study.protocol import Protocol, parse_protocol
from studyapp.study.questions import Question
from studyapp.tui.services import Services
from tests.support.timezone import machine_time_zone

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
    lost = asking(db, clock, rng=Draws(0.5, 0.0))
    assert lost.after_turn("m2") == []
    # Nor is a reply drawn for twice (its real chance would be more than the recorded one).
    assert lost.after_turn("m2") == [] and lost.rng.draws == [0.0]  # type: ignore[attr-defined]


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


# The rules, with explicit times ---------------------------------------------------------------------------------


def q(question_id: str) -> Question:
    return next(x for x in parse_protocol(protocol_text()).questions if x.id == question_id)


def asked(question: Question, when: datetime, *, status: str = "answered", period: str | None = None,
          period_ends_at: datetime | None = None, due_at: datetime | None = None,
          message_id: str | None = None) -> QuestionAsk:
    local = when.astimezone(EAST_COAST)
    return QuestionAsk(
        id=f"{question.id}-{when.isoformat()}", study_id="asking", question_id=question.id,
        question_version=question.version, question_type=question.type, question_when=question.when,
        asked_at=when.astimezone(UTC).isoformat(), utc_offset_min=-300, local_day=local.date().isoformat(),
        period=period, period_ends_at=period_ends_at.astimezone(UTC).isoformat() if period_ends_at else None,
        message_id=message_id, status=status, due_at=due_at.astimezone(UTC).isoformat() if due_at else None)


def test_turn_draw_falls_on_one_question_with_its_own_chance() -> None:
    one, two = q("written_for_you"), replace(q("written_for_you"), id="second", probability=0.3)
    now = at("2026-11-03 10:00")
    candidates = turn_candidates(now, [one, two], [], tz=EAST_COAST)
    assert candidates == [(one, 0.5), (two, 0.3)]
    # One draw, the chances laid end to end: at most one question after a reply.
    assert pick(candidates, 0.0) == (one, 0.5) and pick(candidates, 0.4999) == (one, 0.5)
    assert pick(candidates, 0.5) == (two, 0.3) and pick(candidates, 0.7999) == (two, 0.3)
    assert pick(candidates, 0.8) is None
    # Chances that add up to more than 1 are scaled down, so each recorded chance is the real one.
    three = replace(two, id="third", probability=1.0)
    assert turn_candidates(now, [one, three], [], tz=EAST_COAST) == [(one, 0.5 / 1.5), (three, 1.0 / 1.5)]


def test_the_turn_draw_respects_the_daily_cap_by_the_local_day() -> None:
    question = q("written_for_you")  # daily_cap = 2
    history = [asked(question, at("2026-11-03 09:00")), asked(question, at("2026-11-03 23:30"), status="skipped")]
    assert turn_candidates(at("2026-11-03 23:59"), [question], history, tz=EAST_COAST) == []
    # Past local midnight it is a new day, though in UTC (04:59 the same day) the day had long begun.
    assert turn_candidates(at("2026-11-04 00:01"), [question], history, tz=EAST_COAST) == [(question, 0.5)]


def test_the_turn_draw_over_many_replies_matches_the_probability(db: Database) -> None:
    enroll(db, parse_protocol(protocol_text(questions=QUESTIONS.replace("daily_cap = 2", "daily_cap = 1000"))))
    clock = Clock(at("2026-11-03 10:00"))
    a = asking(db, clock, rng=random.Random(7))
    asks = sum(len(a.after_turn(f"m{i}")) for i in range(400))
    # 400 draws at p = 0.5: a seeded sequence, within 4 standard deviations (10) of 200.
    assert 160 <= asks <= 240
    assert {r.ask_probability for r in QuestionStore(db).list()} == {0.5}


def test_the_daily_question_is_due_from_its_time_until_local_midnight() -> None:
    daily = q("today")
    span = {"enrolled_at": ENROLLED, "duration_days": 14, "tz": EAST_COAST}
    assert survey_period(daily, at("2026-11-03 18:59"), **span) is None
    period = survey_period(daily, at("2026-11-03 19:00"), **span)
    assert period is not None and period.key == "2026-11-03"
    assert (period.starts_at, period.ends_at) == (at("2026-11-03 19:00"), at("2026-11-04 00:00"))
    assert survey_period(daily, at("2026-11-03 23:59"), **span).key == "2026-11-03"  # type: ignore[union-attr]
    # After local midnight the day's question is over, and the next day's is not due before 19:00.
    assert survey_period(daily, at("2026-11-04 00:01"), **span) is None
    # Asked once a day.
    history = [asked(daily, at("2026-11-03 19:05"), period="2026-11-03")]
    assert surveys_due_at(at("2026-11-03 22:00"), [daily], history, enrolled_at=ENROLLED, duration_days=14,
                          tz=EAST_COAST) == ([], [])
    due, _ = surveys_due_at(at("2026-11-04 19:00"), [daily], history, enrolled_at=ENROLLED, duration_days=14,
                            tz=EAST_COAST)
    assert [d.period.key for d in due if d.period] == ["2026-11-04"]


def test_the_participants_time_zone_decides_whether_a_daily_question_is_due() -> None:
    daily = q("today")
    moment = datetime(2026, 11, 4, 1, 0, tzinfo=UTC)  # 20:00 on Nov 3 in UTC-5, 10:00 on Nov 4 in UTC+9
    east_coast = survey_period(daily, moment, enrolled_at=ENROLLED, duration_days=14, tz=EAST_COAST)
    assert east_coast is not None and east_coast.key == "2026-11-03"
    assert survey_period(daily, moment, enrolled_at=ENROLLED, duration_days=14, tz=timezone(timedelta(hours=9))) \
        is None
    # A zone with daylight saving (from 2026-03-29): 19:00 in Berlin is 18:00 UTC before it, 17:00 UTC after.
    berlin = ZoneInfo("Europe/Berlin")
    summer_enrolled = datetime(2026, 3, 20, 8, 0, tzinfo=UTC)
    after_switch = survey_period(daily, datetime(2026, 3, 30, 17, 0, tzinfo=UTC), enrolled_at=summer_enrolled,
                                 duration_days=14, tz=berlin)
    assert after_switch is not None and after_switch.starts_at.astimezone(UTC).hour == 17
    assert survey_period(daily, datetime(2026, 3, 27, 17, 30, tzinfo=UTC), enrolled_at=summer_enrolled,
                         duration_days=14, tz=berlin) is None  # 18:30 in Berlin before the switch


def test_the_machines_own_zone_counts_its_daylight_saving_change() -> None:
    # tz=None: the participant's machine's zone (Central European here), whose clocks go forward on 2026-03-29.
    weekly = replace(q("this_week"), weekday="saturday", at="19:00")
    enrolled = datetime(2026, 3, 20, 8, 0, tzinfo=UTC)
    with machine_time_zone("CET-1CEST,M3.5.0,M10.5.0/3"):
        period = survey_period(weekly, datetime(2026, 3, 29, 10, 0, tzinfo=UTC), enrolled_at=enrolled,
                               duration_days=28)
    assert period is not None and period.key == "2026-03-28"
    # 19:00 before the change is 18:00 UTC; the next Saturday's 19:00, in summer time, is 17:00 UTC.
    assert period.starts_at == datetime(2026, 3, 28, 18, 0, tzinfo=UTC)
    assert period.ends_at == datetime(2026, 4, 4, 17, 0, tzinfo=UTC)


def test_no_daily_question_before_enrollment_or_after_the_study_days() -> None:
    daily = q("today")
    late = datetime(2026, 11, 3, 1, 0, tzinfo=UTC)  # enrolled at 20:00 local, after the day's 19:00
    assert survey_period(daily, at("2026-11-02 21:00"), enrolled_at=late, duration_days=14, tz=EAST_COAST) is None
    assert survey_period(daily, at("2026-11-15 19:00"), enrolled_at=ENROLLED, duration_days=14, tz=EAST_COAST)
    assert survey_period(daily, at("2026-11-16 19:00"), enrolled_at=ENROLLED, duration_days=14, tz=EAST_COAST) \
        is None


def test_the_weekly_question_is_due_from_its_weekday_and_time_once_that_week() -> None:
    weekly = q("this_week")  # sunday 18:00; enrolled Monday 2026-11-02
    span = {"enrolled_at": ENROLLED, "duration_days": 14, "tz": EAST_COAST}
    assert survey_period(weekly, at("2026-11-07 20:00"), **span) is None  # Saturday
    assert survey_period(weekly, at("2026-11-08 17:59"), **span) is None  # Sunday, before 18:00
    period = survey_period(weekly, at("2026-11-08 18:00"), **span)
    assert period is not None and (period.key, period.ends_at) == ("2026-11-08", at("2026-11-15 18:00"))
    # Not answered on Sunday: still due on Wednesday, for the same week.
    assert survey_period(weekly, at("2026-11-11 09:00"), **span).key == "2026-11-08"  # type: ignore[union-attr]
    history = [asked(weekly, at("2026-11-09 08:00"), period="2026-11-08")]
    assert surveys_due_at(at("2026-11-15 17:59"), [weekly], history, **span) == ([], [])
    due, _ = surveys_due_at(at("2026-11-15 18:00"), [weekly], history, **span)
    assert [d.period.key for d in due if d.period] == ["2026-11-15"]


def test_the_exit_survey_is_due_once_the_last_study_day_is_over() -> None:
    end = q("anything_else")
    span = {"enrolled_at": ENROLLED, "duration_days": 14, "tz": EAST_COAST}
    assert survey_period(end, at("2026-11-15 23:59"), **span) is None  # day 14 of 14
    period = survey_period(end, at("2026-11-16 00:00"), **span)
    assert period is not None and (period.key, period.starts_at, period.ends_at) == (
        "end", at("2026-11-16 00:00"), None)
    history = [asked(end, at("2026-11-16 08:00"), status="skipped", period="end")]
    assert surveys_due_at(at("2026-12-20 08:00"), [end], history, **span) == ([], [])


def test_a_postponed_survey_is_due_again_after_the_delay_and_ends_unanswered_with_its_day(db: Database) -> None:
    enroll(db, parse_protocol(protocol_text()))
    clock = Clock(at("2026-11-03 19:30"))
    a = asking(db, clock)
    [ask] = a.surveys_due()
    assert ask.question.id == "today"
    a.postpone([ask])
    assert QuestionStore(db).get(ask.ask_id).status == "postponed"  # type: ignore[union-attr]
    clock.now = at("2026-11-03 20:29")
    assert a.surveys_due() == []
    clock.now = at("2026-11-03 20:30")
    [again] = a.surveys_due()
    # The same asking, first asked at 19:30: one record per question and day.
    assert (again.ask_id, again.asked_at) == (ask.ask_id, at("2026-11-03 19:30"))
    assert QuestionStore(db).get(ask.ask_id).status == "asked"  # type: ignore[union-attr]
    clock.now = at("2026-11-03 23:30")
    a.postpone([again])  # due again at 00:30, after the day's end
    assert CollectQueue(db).count() == 0
    clock.now = at("2026-11-04 00:10")
    assert a.surveys_due() == []
    row = QuestionStore(db).get(ask.ask_id)
    assert row is not None and row.status == "unanswered"
    assert [r.kind for r in CollectQueue(db).take()] == ["question_answer"]


def test_a_survey_left_waiting_past_its_day_ends_unanswered_and_cannot_be_answered_late(db: Database) -> None:
    enroll(db, parse_protocol(protocol_text()))
    clock = Clock(at("2026-11-03 19:05"))
    a = asking(db, clock)
    [monday] = a.surveys_due()  # announced, never opened
    clock.now = at("2026-11-04 19:05")
    [tuesday] = a.surveys_due()
    assert tuesday.ask_id != monday.ask_id
    assert QuestionStore(db).get(monday.ask_id).status == "unanswered"  # type: ignore[union-attr]
    assert a.still_open([monday, tuesday]) == [tuesday]
    a.record(Answer(monday, "answered", number=3))  # the first ending stands (3: the scale's top)
    assert QuestionStore(db).get(monday.ask_id).status == "unanswered"  # type: ignore[union-attr]
    # Answered after its day ended, though no check ran in between: unanswered, not a late answer.
    clock.now = at("2026-11-05 00:30")
    a.record(Answer(tuesday, "answered", number=2))
    row = QuestionStore(db).get(tuesday.ask_id)
    assert row is not None and (row.status, row.answer_number) == ("unanswered", None)


def test_only_surveys_can_be_put_off(db: Database) -> None:
    enroll(db, parse_protocol(protocol_text()))
    a = asking(db, Clock(at("2026-11-03 10:00")), rng=Draws(0.0))
    asks = a.after_turn("m1")
    with pytest.raises(AnswerError, match="only daily, weekly and at_end questions can be put off"):
        a.postpone(asks)


def test_a_postponed_survey_whose_question_was_reworded_ends_unanswered() -> None:
    daily = q("today")
    history = [asked(daily, at("2026-11-03 19:05"), status="postponed", period="2026-11-03",
                     period_ends_at=at("2026-11-04 00:00"), due_at=at("2026-11-03 20:05"))]
    due, expired = surveys_due_at(at("2026-11-03 21:00"), [replace(daily, version="2")], history,
                                  enrolled_at=ENROLLED, duration_days=14, tz=EAST_COAST)
    assert due == [] and [a.id for a in expired] == [history[0].id]


async def test_a_question_left_on_screen_ends_unanswered_at_the_next_start(tmp_path: Path) -> None:
    app_ctx = AppContext.create(tmp_path)
    enroll(app_ctx.db, parse_protocol(protocol_text()), enrolled_at=datetime.now(UTC) - timedelta(days=1))
    a = Asking(app_ctx.db, current_study(app_ctx.db), rng=Draws(0.0))
    [on_screen] = a.after_turn("m1")
    store = QuestionStore(app_ctx.db)
    row = store.get(on_screen.ask_id)
    assert row is not None
    # And a daily survey the participant put off, still within its day.
    store.add([replace(row, id="survey", question_id="today", question_when="daily", message_id=None,
                       ask_probability=None, status="postponed")])
    app_ctx.close()  # the app closed with the question on screen

    app_ctx = AppContext.create(tmp_path)
    services = Services(app_ctx, model_factory=lambda: OpenAICompatModel("http://127.0.0.1:9/v1", "m"))
    try:
        assert services.unanswered == 1
        store = QuestionStore(app_ctx.db)
        assert store.get(on_screen.ask_id).status == "unanswered"  # type: ignore[union-attr]
        assert store.get("survey").status == "postponed"  # type: ignore[union-attr]
        assert services.asking.after_turn("m1") == []  # that reply had its question
    finally:
        await services.aclose()
        app_ctx.close()
    app_ctx = AppContext.create(tmp_path)
    again = Services(app_ctx, model_factory=lambda: OpenAICompatModel("http://127.0.0.1:9/v1", "m"))
    assert again.unanswered == 0
    await again.aclose()
    app_ctx.close()
