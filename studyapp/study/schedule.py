"""When a turn becomes a comparison, when to ask for attribute labels, and which study day it is.

Pure decisions from facts the caller gathers (the store counts turns and comparisons, the memory counts
attributes), so the rules are easy to test and deterministic under a seeded ``random.Random``.
The random draw happens only once every rule allows a comparison, so the sequence of draws, and hence the
schedule under a seed, depends only on the eligible turns.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo

from studyapp.study.protocol import ComparisonSchedule, LabelingCadence


@dataclass(frozen=True)
class TurnFacts:
    """What the scheduler needs to know about the participant's new turn."""

    # User turns since the last comparison (None: there has been none yet).
    turns_since_last_comparison: int | None
    comparisons_today: int
    attributes_in_memory: int
    memory_enabled: bool = True


# Why a turn did or did not become a comparison: studyapp.events.SCHEDULE_OUTCOMES. The last three are settled by
# the turn after selection (studyapp.turns) when the draw was won ("draw_won" until then).


@dataclass(frozen=True)
class ScheduleDecision:
    compare: bool
    reason: str
    # One of studyapp.events.SCHEDULE_OUTCOMES, or "draw_won" until selection says whether the comparison happens.
    outcome: str = ""
    # Eligible: every rule passed and the draw was made (the denominator of the comparison rate).
    eligible: bool = False
    draw: float | None = None
    probability: float | None = None


class ComparisonScheduler:
    """Applies the protocol's comparison schedule to one turn at a time."""

    def __init__(self, schedule: ComparisonSchedule, rng: random.Random | None = None) -> None:
        self.schedule = schedule
        if rng is None:
            rng = random.Random(schedule.seed) if schedule.seed is not None else random.SystemRandom()
        self.rng = rng

    def decide(self, facts: TurnFacts) -> ScheduleDecision:
        s = self.schedule
        if not facts.memory_enabled:
            # Without memory there is nothing to personalize with: both arms would be generic.
            return ScheduleDecision(False, "memory is off in this conversation", "memory_off")
        if s.daily_cap <= 0 or s.probability <= 0:
            return ScheduleDecision(False, "the study asks for no comparisons", "no_comparisons")
        if facts.comparisons_today >= s.daily_cap:
            return ScheduleDecision(False, f"daily cap reached ({facts.comparisons_today} of {s.daily_cap} today)",
                                    "daily_cap")
        if facts.attributes_in_memory < s.min_attributes:
            return ScheduleDecision(False, f"too few attributes in memory ({facts.attributes_in_memory} of "
                                           f"{s.min_attributes} needed)", "too_few_attributes")
        since = facts.turns_since_last_comparison
        if since is not None and since < s.min_turns_between:
            return ScheduleDecision(False, f"too soon after the last comparison ({since} of {s.min_turns_between} "
                                           "turns)", "too_soon")
        draw = self.rng.random()
        if draw < s.probability:
            return ScheduleDecision(True, f"eligible, and the draw {draw:.3f} < probability {s.probability}",
                                    "draw_won", True, draw, s.probability)
        return ScheduleDecision(False, f"eligible, but the draw {draw:.3f} >= probability {s.probability}",
                                "draw_lost", True, draw, s.probability)


def labels_due(cadence: LabelingCadence, new_unlabeled_count: int, labeled_today: int) -> int:
    """How many attributes to ask the participant to label now (0: not now).

    The app asks once ``every_new_attributes`` unlabeled attributes have piled up, ``batch_size`` at a time,
    and never more than ``max_per_day`` a day. The app announces them; the participant opens them.
    """
    if new_unlabeled_count < cadence.every_new_attributes:
        return 0
    left_today = max(0, cadence.max_per_day - labeled_today)
    return min(cadence.batch_size, new_unlabeled_count, left_today)


def _as_datetime(value: str | datetime) -> datetime:
    dt = datetime.fromisoformat(value) if isinstance(value, str) else value
    # Stored times are UTC; a naive value is taken as UTC too.
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


def study_day(enrolled_at: str | datetime, now: str | datetime, duration_days: int,
              *, tz: tzinfo | None = None) -> tuple[int, int]:
    """(day, total): the participant's study day, 1 on the day of enrollment, by calendar days in ``tz``.

    ``tz`` defaults to the machine's local time zone (a participant's day ends at their midnight).
    ``day`` may exceed ``total`` once the study period is over; it is never below 1.
    """
    start = _as_datetime(enrolled_at).astimezone(tz).date()
    today = _as_datetime(now).astimezone(tz).date()
    return max(1, (today - start).days + 1), duration_days


def start_of_day(now: datetime | None = None, *, tz: tzinfo | None = None) -> str:
    """UTC ISO time of the participant's last local midnight: where "today" starts for daily caps."""
    local = (now or datetime.now(UTC)).astimezone(tz)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight.astimezone(UTC).isoformat(timespec="microseconds")
