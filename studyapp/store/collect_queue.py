"""The outbox's intake: study records written while enrolled, waiting for the privacy gate.

Rows are added only by the database itself (triggers of migration m005), in the same transaction as the
record they name, so a record can never be committed without being noted here (the transactional-outbox
pattern). The record pump (studyapp.privacy.pump) takes rows in order, builds each record from its source
row, passes it through the gate, and removes the row in the same transaction that queues the event.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlite_utils import Database

from studyapp.store.util import atomic, loads


@dataclass(frozen=True)
class QueuedRecord:
    n: int
    kind: str
    source_id: str
    # A snapshot of the record as written, for kinds that change later (attributes); else None.
    payload: dict[str, Any] | None
    created_at: str


class CollectQueue:
    def __init__(self, db: Database) -> None:
        self.db = db

    def take(self, limit: int = 100) -> list[QueuedRecord]:
        """The oldest waiting rows (they stay until ``remove``)."""
        rows = self.db.execute(
            "SELECT n, kind, source_id, payload, created_at FROM collect_queue ORDER BY n LIMIT ?", [limit]
        ).fetchall()
        return [QueuedRecord(n, kind, source_id, loads(payload), created_at)
                for n, kind, source_id, payload, created_at in rows]

    def remove(self, ns: Sequence[int]) -> None:
        """Remove handled rows; the caller owns the transaction (it also queues their events)."""
        self.db.conn.executemany("DELETE FROM collect_queue WHERE n = ?", [(n,) for n in ns])

    def count(self) -> int:
        return self.db.execute("SELECT count(*) FROM collect_queue").fetchone()[0]

    def clear(self) -> int:
        """Forget every waiting record (withdrawal: nothing more leaves the machine)."""
        with atomic(self.db):
            return self.db.execute("DELETE FROM collect_queue").rowcount
