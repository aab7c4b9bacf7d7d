"""The schedule's decisions: for every participant turn, whether it could and did become a comparison."""

from __future__ import annotations

from sqlite_utils import Database

from studyapp.domain import ScheduleRecord
from studyapp.store.util import atomic, new_id, now

_COLUMNS = ("id, message_id, conversation_id, decided_at, eligible, draw, probability, outcome, reason, memory_size, "
            "selected_count")


def _record(row: tuple) -> ScheduleRecord:
    (id_, message_id, conversation_id, decided_at, eligible, draw, probability, outcome, reason, memory_size,
     selected_count) = row
    return ScheduleRecord(id_, message_id, conversation_id, decided_at, bool(eligible), draw, probability, outcome,
                          reason, memory_size, selected_count)


class ScheduleStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def record(self, *, message_id: str, conversation_id: str, eligible: bool, draw: float | None,
               probability: float | None, outcome: str, reason: str, memory_size: int,
               selected_count: int | None) -> str:
        decision_id = new_id()
        with atomic(self.db):
            self.db.execute(
                f"INSERT INTO schedule_decisions ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [decision_id, message_id, conversation_id, now(), int(eligible), draw, probability, outcome, reason,
                 memory_size, selected_count],
            )
        return decision_id

    def get(self, decision_id: str) -> ScheduleRecord | None:
        row = self.db.execute(f"SELECT {_COLUMNS} FROM schedule_decisions WHERE id = ?", [decision_id]).fetchone()
        return _record(row) if row else None

    def for_message(self, message_id: str) -> ScheduleRecord | None:
        row = self.db.execute(f"SELECT {_COLUMNS} FROM schedule_decisions WHERE message_id = ?",
                              [message_id]).fetchone()
        return _record(row) if row else None

    def list(self) -> list[ScheduleRecord]:
        return [_record(r) for r in self.db.execute(
            f"SELECT {_COLUMNS} FROM schedule_decisions ORDER BY decided_at, rowid").fetchall()]
