"""The outbox: anonymized, consented events waiting to leave the machine.

Only studyapp.privacy puts events here (after the consent check and anonymization); only
studyapp.sync takes them out, and only once the server acknowledged them. Statuses:
``pending`` (waiting for review when the study asks for it, else ready), ``approved`` (reviewed, ready),
``withheld`` (the participant said no: never sent), ``rejected`` (the server refused it; kept with the reason).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlite_utils import Database

from studyapp.store.util import dumps, loads, new_id, now


@dataclass
class OutboxEvent:
    event_id: str
    study_id: str
    kind: str
    category: str
    payload: dict[str, Any]
    consent_version: str | None
    status: str
    reason: str | None
    attempts: int
    created_at: str


def _event(row: dict[str, Any]) -> OutboxEvent:
    return OutboxEvent(
        event_id=row["event_id"],
        study_id=row["study_id"],
        kind=row["kind"],
        category=row["category"],
        payload=loads(row["payload"], {}),
        consent_version=row["consent_version"],
        status=row["status"],
        reason=row["reason"],
        attempts=row["attempts"],
        created_at=row["created_at"],
    )


class OutboxStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, *, study_id: str, kind: str, category: str, payload: dict[str, Any],
            consent_version: str | None, approved: bool, event_id: str | None = None) -> str:
        """Queue an event whose payload is already anonymized. Returns its event_id."""
        ts = now()
        event_id = event_id or new_id()
        with self.db.conn:
            self.db.execute(
                "INSERT INTO outbox (event_id, study_id, kind, category, payload, consent_version, status, "
                "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [event_id, study_id, kind, category, dumps(payload), consent_version,
                 "approved" if approved else "pending", ts, ts],
            )
        return event_id

    def get(self, event_id: str) -> OutboxEvent | None:
        rows = list(self.db.query("SELECT * FROM outbox WHERE event_id = ?", [event_id]))
        return _event(rows[0]) if rows else None

    def list(self, *, status: str | None = None, study_id: str | None = None, kind: str | None = None,
             limit: int | None = None) -> list[OutboxEvent]:
        where, params = [], []
        if kind:
            where.append("kind = ?")
            params.append(kind)
        if status:
            where.append("status = ?")
            params.append(status)
        if study_id:
            where.append("study_id = ?")
            params.append(study_id)
        sql = "SELECT * FROM outbox"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at, event_id"
        if limit:
            sql += f" LIMIT {int(limit)}"
        return [_event(r) for r in self.db.query(sql, params)]

    def ready(self, study_id: str, limit: int) -> list[OutboxEvent]:
        """Events that may be uploaded now: approved ones (review done or not required)."""
        return self.list(status="approved", study_id=study_id, limit=limit)

    def counts(self, study_id: str | None = None) -> dict[str, int]:
        sql = "SELECT status, count(*) AS n FROM outbox"
        params: list[Any] = []
        if study_id:
            sql += " WHERE study_id = ?"
            params.append(study_id)
        sql += " GROUP BY status"
        counts = {"pending": 0, "approved": 0, "withheld": 0, "rejected": 0}
        counts.update({r["status"]: r["n"] for r in self.db.query(sql, params)})
        return counts

    def set_status(self, event_ids: list[str], status: str, reason: str | None = None) -> None:
        ts = now()
        with self.db.conn:
            self.db.conn.executemany(
                "UPDATE outbox SET status = ?, reason = ?, updated_at = ? WHERE event_id = ?",
                [(status, reason, ts, e) for e in event_ids],
            )

    def approve(self, event_ids: list[str]) -> None:
        self.set_status(event_ids, "approved")

    def withhold(self, event_ids: list[str]) -> None:
        self.set_status(event_ids, "withheld")

    def reject(self, event_id: str, reason: str) -> None:
        self.set_status([event_id], "rejected", reason)

    def update_payload(self, event_id: str, payload: dict[str, Any]) -> None:
        with self.db.conn:
            self.db.execute("UPDATE outbox SET payload = ?, updated_at = ? WHERE event_id = ?",
                            [dumps(payload), now(), event_id])

    def remove(self, event_ids: list[str]) -> None:
        """Remove acknowledged events (accepted or duplicate on the server)."""
        with self.db.conn:
            self.db.conn.executemany("DELETE FROM outbox WHERE event_id = ?", [(e,) for e in event_ids])

    def note_attempt(self, event_ids: list[str]) -> None:
        with self.db.conn:
            self.db.conn.executemany("UPDATE outbox SET attempts = attempts + 1 WHERE event_id = ?",
                                [(e,) for e in event_ids])

    def clear(self, study_id: str) -> int:
        """Empty the outbox of a study (withdrawal)."""
        with self.db.conn:
            cursor = self.db.execute("DELETE FROM outbox WHERE study_id = ?", [study_id])
        return cursor.rowcount
