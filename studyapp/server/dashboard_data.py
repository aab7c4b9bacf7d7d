"""What the dashboard shows, read from the live database: compliance, upload health, withdrawals, headline figures.

Plain data for dashboard_html.py; pandas is imported only to compute the headline figures (the ``analysis`` extra).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from studyapp.server import export as export_mod
from studyapp.server.storage import Storage
from studyapp.study.schedule import study_day

if TYPE_CHECKING:
    from studyapp.analysis.model import Item

log = logging.getLogger(__name__)

STOPPED_AFTER = timedelta(days=3)
NEEDS_ANALYSIS = "headline figures need the analysis extra (pip install 'studyapp[analysis]')"
ANALYSIS_FAILED = "headline figures could not be computed from the live database; the server's log says why"

# The rules behind the numbers, as the page states them.
STOPPED_RULE = ("A participant has stopped when the server has stored nothing from them for the last 3 days "
                "(counted from enrollment while they have sent nothing yet).")
WEEK_RULE = ("Study weeks count 7 days from the day of enrollment (UTC); a comparison counts in the week of "
             "its rated_at.")


@dataclass(frozen=True)
class ParticipantRow:
    participant_id: str
    enrolled_at: str
    last_upload_at: str | None
    days_active: int
    study_week: int
    rated_this_week: int
    rated: int
    events: int
    rejected: int
    stopped: bool


@dataclass(frozen=True)
class ReasonRow:
    kind: str
    reason: str
    events: int
    participants: int
    last_at: str


@dataclass(frozen=True)
class WithdrawnRow:
    participant_id: str
    withdrawn_at: str


@dataclass(frozen=True)
class UsageRow:
    """The model gateway's counts for one UTC day, role and model, over all participants."""

    day: str
    role: str
    model: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    errors: int
    estimated: int
    latency_ms_mean: int
    latency_ms_max: int


@dataclass(frozen=True)
class Overview:
    study: dict[str, Any]
    generated_at: datetime
    codes: dict[str, int]
    participants: list[ParticipantRow]
    reasons: list[ReasonRow]
    withdrawn: list[WithdrawnRow]
    usage: list[UsageRow] = field(default_factory=list)
    # The gateway's budgets per participant: (tokens per UTC day, requests per minute).
    limits: tuple[int, int] | None = None

    @property
    def rejected(self) -> int:
        return sum(r.events for r in self.reasons)

    # Participants taking part per condition (empty: the study assigns none).
    by_condition: dict[str, int] = field(default_factory=dict)

    @property
    def stopped(self) -> int:
        return sum(p.stopped for p in self.participants)


def _utc(value: str) -> datetime:
    dt = datetime.fromisoformat(value)
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


def _week(enrolled_at: str, now: datetime) -> tuple[int, date]:
    """The participant's study week (1 from the day of enrollment, UTC) and the day it started."""
    day, _ = study_day(enrolled_at, now, 0, tz=UTC)
    week = (day - 1) // 7 + 1
    return week, _utc(enrolled_at).astimezone(UTC).date() + timedelta(days=7 * (week - 1))


def _rated_in_week(by_day: dict[str, int], start: date) -> int:
    days = {(start + timedelta(days=i)).isoformat() for i in range(7)}
    return sum(n for day, n in by_day.items() if day in days)


def _stopped(enrolled_at: str, last_upload_at: str | None, now: datetime) -> bool:
    return now - _utc(last_upload_at or enrolled_at) > STOPPED_AFTER


def overview(storage: Storage, now: datetime | None = None) -> Overview:
    """Everything on the page but the headline figures, read from the live database."""
    now = now or datetime.now(UTC)
    study = storage.require_study()
    rated = storage.rated_comparisons_by_day()
    rejections = storage.rejections()
    rejected_by: dict[str, int] = {}
    reasons: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rejections:
        rejected_by[r["participant_id"]] = rejected_by.get(r["participant_id"], 0) + r["events"]
        reasons.setdefault((r["kind"], r["reason"]), []).append(r)
    participants: list[ParticipantRow] = []
    withdrawn: list[WithdrawnRow] = []
    by_condition: dict[str, int] = {}
    for row in storage.compliance():
        pid = row["participant_id"]
        if row["withdrawn_at"] is not None:
            withdrawn.append(WithdrawnRow(pid, row["withdrawn_at"]))
            continue
        if row["condition"] is not None:
            by_condition[row["condition"]] = by_condition.get(row["condition"], 0) + 1
        week, start = _week(row["enrolled_at"], now)
        participants.append(ParticipantRow(
            participant_id=pid, enrolled_at=row["enrolled_at"], last_upload_at=row["last_upload_at"],
            days_active=row["days_active"], study_week=week, rated_this_week=_rated_in_week(rated.get(pid, {}), start),
            rated=row["comparisons_rated"], events=row["events"], rejected=rejected_by.get(pid, 0),
            stopped=_stopped(row["enrolled_at"], row["last_upload_at"], now)))
    reason_rows = [ReasonRow(kind, reason, sum(r["events"] for r in rs), len(rs), max(r["last_at"] for r in rs))
                   for (kind, reason), rs in reasons.items()]
    reason_rows.sort(key=lambda r: (-r.events, r.kind, r.reason))
    usage = [UsageRow(**{k: r[k] for k in UsageRow.__dataclass_fields__})
             for r in storage.gateway_usage(("day", "role", "model"))]
    usage.sort(key=lambda u: (u.day, u.role, u.model), reverse=True)  # the latest day first
    limits = storage.gateway_limits()
    return Overview(study, now, storage.code_counts(), participants, reason_rows, withdrawn, usage,
                    (limits.daily_tokens, limits.requests_per_minute), dict(sorted(by_condition.items())))


# The last headline figures per database, with the data version they were computed on: the analysis reads every
# record (seconds on a large study), so a reload with nothing new since reuses them.
_cache: dict[str, tuple[tuple[int, int, int], list[tuple[str, Item | None]]]] = {}
_cache_lock = threading.Lock()


def headline_figures(storage: Storage) -> list[tuple[str, Item | None]] | str:
    """The report's headline figures computed from the live database (key, item), or why there are none."""
    version = storage.data_version()
    with _cache_lock:
        cached = _cache.get(str(storage.path))
        if cached is not None and cached[0] == version:
            return cached[1]
        figures = _compute_headline_figures(storage)
        if not isinstance(figures, str):
            _cache[str(storage.path)] = (version, figures)
        return figures


def _compute_headline_figures(storage: Storage) -> list[tuple[str, Item | None]] | str:
    try:
        # Lazily: the server runs without the analysis extra, and the page then says what is missing.
        import pandas as pd

        from studyapp.analysis.load import from_frames
        from studyapp.analysis.measures import HEADLINE_KEYS, analyze
    except ImportError:
        return NEEDS_ANALYSIS
    with storage.snapshot() as snapshot:  # one snapshot, as an export: the frames agree with each other
        study_id = snapshot.require_study()["id"]
        frames = {rt.name: pd.DataFrame(list(export_mod.rows(snapshot, rt, study_id)),
                                        columns=export_mod.column_names(rt))
                  for rt in export_mod.RECORD_TYPES}
    try:
        analysis = analyze(from_frames(frames))
    except Exception:
        # The rest of the page is still worth seeing; the log keeps the traceback for whoever fixes it.
        log.exception("the dashboard's headline figures failed")
        return ANALYSIS_FAILED
    return [(key, analysis.find(key)) for key in HEADLINE_KEYS]
