"""When turns become comparisons, when attribute labels are due, and the study day."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone

from studyapp.study.protocol import ComparisonSchedule, LabelingCadence
from studyapp.study.schedule import ComparisonScheduler, TurnFacts, labels_due, start_of_day, study_day

SCHEDULE = ComparisonSchedule(min_turns_between=3, daily_cap=2, probability=0.5, min_attributes=2)


def eligible(**overrides: object) -> TurnFacts:
    facts = {"turns_since_last_comparison": 5, "comparisons_today": 0, "attributes_in_memory": 4,
             "memory_enabled": True} | overrides
    return TurnFacts(**facts)  # type: ignore[arg-type]


def test_each_rule_blocks_with_its_reason() -> None:
    always = ComparisonScheduler(ComparisonSchedule(3, 2, 1.0, 2), random.Random(0))
    assert always.decide(eligible()).compare
    cases = {
        "memory is off": eligible(memory_enabled=False),
        "daily cap reached (2 of 2 today)": eligible(comparisons_today=2),
        "too few attributes in memory (1 of 2 needed)": eligible(attributes_in_memory=1),
        "too soon after the last comparison (2 of 3 turns)": eligible(turns_since_last_comparison=2),
    }
    for reason, facts in cases.items():
        decision = always.decide(facts)
        assert not decision.compare
        assert reason in decision.reason


def test_first_comparison_needs_no_earlier_one() -> None:
    always = ComparisonScheduler(ComparisonSchedule(3, 2, 1.0, 0), random.Random(0))
    assert always.decide(eligible(turns_since_last_comparison=None)).compare


def test_no_comparisons_when_cap_or_probability_is_zero() -> None:
    for schedule in (ComparisonSchedule(0, 0, 1.0, 0), ComparisonSchedule(0, 5, 0.0, 0)):
        decision = ComparisonScheduler(schedule, random.Random(0)).decide(eligible())
        assert not decision.compare and "no comparisons" in decision.reason


def test_deterministic_under_a_seed() -> None:
    def run(seed: int) -> list[bool]:
        s = ComparisonScheduler(SCHEDULE, random.Random(seed))
        return [s.decide(eligible()).compare for _ in range(50)]

    assert run(7) == run(7)
    assert run(7) != run(8)
    # The protocol's own seed is used when no rng is given.
    seeded = ComparisonSchedule(3, 2, 0.5, 2, seed=7)
    from_protocol = ComparisonScheduler(seeded)
    assert [from_protocol.decide(eligible()).compare for _ in range(50)] == run(7)


def test_blocked_turns_do_not_consume_draws() -> None:
    a = ComparisonScheduler(SCHEDULE, random.Random(3))
    b = ComparisonScheduler(SCHEDULE, random.Random(3))
    a.decide(eligible(memory_enabled=False))
    a.decide(eligible(comparisons_today=9))
    assert [a.decide(eligible()).compare for _ in range(20)] == [b.decide(eligible()).compare for _ in range(20)]


def test_probability_is_respected() -> None:
    s = ComparisonScheduler(ComparisonSchedule(0, 10**6, 0.3, 0), random.Random(1))
    hits = sum(s.decide(eligible()).compare for _ in range(10_000))
    assert 2800 < hits < 3200


def test_labels_due() -> None:
    cadence = LabelingCadence(every_new_attributes=3, batch_size=2, max_per_day=5)
    assert labels_due(cadence, 2, 0) == 0  # not enough new attributes yet
    assert labels_due(cadence, 3, 0) == 2  # one batch
    assert labels_due(cadence, 10, 4) == 1  # only one left for today
    assert labels_due(cadence, 10, 5) == 0  # daily maximum reached
    assert labels_due(LabelingCadence(1, 5, 9), 1, 0) == 1  # never more than are waiting


def test_study_day_counts_calendar_days() -> None:
    tz = timezone(timedelta(hours=2))
    enrolled = "2026-03-01T21:30:00+00:00"  # 23:30 local, day 1
    assert study_day(enrolled, "2026-03-01T21:45:00+00:00", 14, tz=tz) == (1, 14)
    assert study_day(enrolled, "2026-03-01T22:05:00+00:00", 14, tz=tz) == (2, 14)  # after local midnight
    assert study_day(enrolled, datetime(2026, 3, 14, 12, tzinfo=UTC), 14, tz=tz) == (14, 14)
    assert study_day(enrolled, datetime(2026, 3, 20, 12, tzinfo=UTC), 14, tz=tz) == (20, 14)
    assert study_day(enrolled, "2026-02-01T00:00:00", 14, tz=tz) == (1, 14)  # never below 1


def test_start_of_day_is_local_midnight_in_utc() -> None:
    tz = timezone(timedelta(hours=-5))
    now = datetime(2026, 3, 2, 3, 0, tzinfo=UTC)  # 22:00 on March 1st locally
    assert start_of_day(now, tz=tz) == "2026-03-01T05:00:00.000000+00:00"
