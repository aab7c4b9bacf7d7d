"""Which study this install runs now: the enrolled protocol, or the built-in local study.

Used by the app at start-up and by enrollment (which saves the protocol received from the server).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlite_utils import Database

from studyapp.store.studies import StudyRecord, StudyStore
from studyapp.study.protocol import Protocol, ProtocolError, builtin_protocol, protocol_from_dict
from studyapp.study.schedule import study_day


@dataclass(frozen=True)
class CurrentStudy:
    protocol: Protocol
    # None for the built-in local study (not enrolled).
    record: StudyRecord | None
    # Set when the enrolled study's stored protocol no longer validates. The install stays enrolled (sync,
    # withdrawal and protocol refresh go on, and a valid protocol from the server ends it), but nothing new
    # passes the privacy gate and no comparison is offered until then; ``protocol`` is the built-in one.
    problem: str | None = None

    @property
    def enrolled(self) -> bool:
        return self.record is not None

    @property
    def usable(self) -> bool:
        """Enrolled with a protocol that validates, or the built-in study."""
        return self.problem is None

    def day(self, now: datetime | None = None) -> tuple[int, int]:
        """(day N, of M): the built-in study counts from today."""
        now = now or datetime.now(UTC)
        start = self.record.enrolled_at if self.record else now
        return study_day(start, now, self.protocol.duration_days)

    def status_line(self, pending_labels: int = 0, now: datetime | None = None) -> str:
        """E.g. "Local study (not enrolled) · day 3 of 14 · 2 attributes to label"."""
        if self.problem is not None and self.record is not None:
            return (f"Study {self.record.id}: its protocol cannot be used, nothing is collected "
                    "(a valid one is asked for at every sync)")
        day, total = self.day(now)
        parts = [self.protocol.title]
        if self.protocol.condition is not None:  # only in a study that tells participants their condition
            parts.append(f"condition {self.protocol.condition}")
        parts.append(f"day {day} of {total}" if day <= total else f"finished ({total} days)")
        if pending_labels:
            noun = "attribute" if pending_labels == 1 else "attributes"
            parts.append(f"{pending_labels} {noun} to label")
        return " · ".join(parts)


def current_study(db: Database) -> CurrentStudy:
    record = StudyStore(db).current()
    if record is None:
        return CurrentStudy(builtin_protocol(), None)
    try:
        return CurrentStudy(protocol_from_dict(record.protocol, source=f"study {record.id}"), record)
    except ProtocolError as exc:
        return CurrentStudy(builtin_protocol(), record, problem=str(exc))


def save_enrollment(db: Database, protocol: Protocol, *, participant_id: str | None,
                    server_url: str | None = None) -> StudyRecord:
    """Store the protocol received at enrollment (server_url defaults to the protocol's)."""
    return StudyStore(db).enroll(protocol.id, protocol.to_dict(), server_url=server_url or protocol.server_url,
                                 participant_id=participant_id)
