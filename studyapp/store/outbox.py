"""The outbox: anonymized, consented events waiting to leave the machine.

Only studyapp.privacy puts events here (after the consent check and anonymization); only
studyapp.sync takes them out, and only once the server acknowledged them. Statuses:
``pending`` (waiting for review when the study asks for it, else ready), ``approved`` (reviewed, ready),
``withheld`` (the participant said no: never sent), ``rejected`` (the server refused it; kept with the reason).

An upload *claims* the events it sends (``claim_ready``) until the server answered; the participant's
decisions (approve, withhold, re-scrub) change only unclaimed events, so what the server receives is
always what the participant last saw. A claim older than ``STALE_CLAIM_S`` (a crash mid-upload) lapses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlite_utils import Database

from studyapp.store.util import atomic, dumps, loads, new_id, now

STALE_CLAIM_S = 120.0
UNCLAIMED = "(claim_id IS NULL OR claimed_at < ?)"


def _stale_before() -> str:
    return (datetime.now(UTC) - timedelta(seconds=STALE_CLAIM_S)).isoformat(timespec="microseconds")


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
        with atomic(self.db):  # may be part of the record pump's transaction
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

    def latest_with(self, study_id: str, kind: str, field: str, value: str) -> OutboxEvent | None:
        """The newest ``kind`` event of the study whose payload has ``field`` = ``value`` (any status)."""
        rows = list(self.db.query(
            "SELECT * FROM outbox WHERE study_id = ? AND kind = ? AND json_extract(payload, ?) = ? "
            "ORDER BY created_at DESC, event_id DESC LIMIT 1", [study_id, kind, f"$.{field}", value]))
        return _event(rows[0]) if rows else None

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

    def set_status(self, event_ids: list[str], status: str, reason: str | None = None, *,
                   unclaimed_only: bool = False) -> int:
        """Set the status of events; with ``unclaimed_only`` not of those an upload is sending. Returns how many."""
        ts = now()
        sql = "UPDATE outbox SET status = ?, reason = ?, updated_at = ? WHERE event_id = ?"
        params: list[tuple[Any, ...]] = [(status, reason, ts, e) for e in event_ids]
        if unclaimed_only:
            stale = _stale_before()
            sql += f" AND {UNCLAIMED}"
            params = [(*p, stale) for p in params]
        changed = 0
        with atomic(self.db):
            for p in params:
                changed += self.db.execute(sql, p).rowcount
        return changed

    def claim_ready(self, study_id: str, limit: int, *, kind: str | None = None,
                    scrub: Callable[[OutboxEvent], dict[str, Any]] | None = None) -> tuple[str, list[OutboxEvent]]:
        """Claim up to ``limit`` approved events for an upload; returns (claim id, the events as claimed).

        ``scrub`` gives the payload an event is to be sent with (the privacy layer applies the participant's
        current terms): it runs in the claim's transaction, and a changed payload is stored with the claim.
        """
        claim_id, ts = new_id(), now()
        where = f"status = 'approved' AND study_id = ? AND {UNCLAIMED}"
        params: list[Any] = [study_id, _stale_before()]
        if kind is not None:
            where += " AND kind = ?"
            params.append(kind)
        with atomic(self.db):  # the claim and the read of what is claimed are one snapshot
            self.db.execute(
                f"UPDATE outbox SET claim_id = ?, claimed_at = ? WHERE event_id IN "
                f"(SELECT event_id FROM outbox WHERE {where} ORDER BY created_at, event_id LIMIT ?)",
                [claim_id, ts, *params, int(limit)],
            )
            events = [_event(r) for r in self.db.query(
                "SELECT * FROM outbox WHERE claim_id = ? ORDER BY created_at, event_id", [claim_id])]
            for event in events if scrub is not None else ():
                payload = scrub(event)
                if payload != event.payload:
                    self.db.execute("UPDATE outbox SET payload = ?, updated_at = ? WHERE event_id = ?",
                                    [dumps(payload), ts, event.event_id])
                    event.payload = payload
        return claim_id, events

    def renew_claim(self, claim_id: str) -> None:
        """Keep a claim from lapsing while an upload is still retrying."""
        with atomic(self.db):
            self.db.execute("UPDATE outbox SET claimed_at = ? WHERE claim_id = ?", [now(), claim_id])

    def release(self, claim_id: str) -> None:
        """End a claim (events not settled by the server's answer wait for the next upload)."""
        with atomic(self.db):
            self.db.execute("UPDATE outbox SET claim_id = NULL, claimed_at = NULL WHERE claim_id = ?", [claim_id])

    def claimed(self, study_id: str | None = None) -> int:
        """How many events an upload is sending right now."""
        sql = f"SELECT count(*) FROM outbox WHERE NOT {UNCLAIMED}"
        params: list[Any] = [_stale_before()]
        if study_id:
            sql += " AND study_id = ?"
            params.append(study_id)
        return self.db.execute(sql, params).fetchone()[0]

    def approve(self, event_ids: list[str]) -> int:
        return self.set_status(event_ids, "approved", unclaimed_only=True)

    def withhold(self, event_ids: list[str]) -> int:
        return self.set_status(event_ids, "withheld", unclaimed_only=True)

    def reject(self, event_id: str, reason: str) -> None:
        self.set_status([event_id], "rejected", reason)

    def update_payload(self, event_id: str, payload: dict[str, Any], *, unclaimed_only: bool = False) -> bool:
        """Replace an event's payload; with ``unclaimed_only`` not while an upload sends it. True if changed."""
        sql = "UPDATE outbox SET payload = ?, updated_at = ? WHERE event_id = ?"
        params: list[Any] = [dumps(payload), now(), event_id]
        if unclaimed_only:
            sql += f" AND {UNCLAIMED}"
            params.append(_stale_before())
        with atomic(self.db):
            return self.db.execute(sql, params).rowcount > 0

    def remove(self, event_ids: list[str]) -> None:
        """Remove acknowledged events (accepted or duplicate on the server)."""
        with atomic(self.db):
            self.db.conn.executemany("DELETE FROM outbox WHERE event_id = ?", [(e,) for e in event_ids])

    def note_attempt(self, event_ids: list[str]) -> None:
        with atomic(self.db):
            self.db.conn.executemany("UPDATE outbox SET attempts = attempts + 1 WHERE event_id = ?",
                                [(e,) for e in event_ids])

    def clear(self, study_id: str) -> int:
        """Empty the outbox of a study (withdrawal)."""
        with atomic(self.db):
            cursor = self.db.execute("DELETE FROM outbox WHERE study_id = ?", [study_id])
        return cursor.rowcount
