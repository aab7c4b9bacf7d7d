"""The study this install is enrolled in: the ``studies`` table.

The protocol is kept as the JSON of ``Protocol.to_dict()`` (consent texts inline), exactly as received,
so the app can show the same consent text later and the study layer re-validates it on load
(``studyapp.study.current``). No row (or only withdrawn ones) means the built-in local study.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlite_utils import Database

from studyapp.store.util import atomic, now


@dataclass
class StudyRecord:
    id: str
    protocol: dict[str, Any]
    server_url: str | None
    participant_id: str | None
    enrolled_at: str
    withdrawn_at: str | None

    @property
    def active(self) -> bool:
        return self.withdrawn_at is None


def _record(row: dict[str, Any]) -> StudyRecord:
    return StudyRecord(
        id=row["id"],
        protocol=json.loads(row["protocol"]),
        server_url=row["server_url"],
        participant_id=row["participant_id"],
        enrolled_at=row["enrolled_at"],
        withdrawn_at=row["withdrawn_at"],
    )


class StudyStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def enroll(
        self,
        study_id: str,
        protocol: dict[str, Any],
        *,
        server_url: str | None = None,
        participant_id: str | None = None,
        enrolled_at: str | None = None,
    ) -> StudyRecord:
        """Record enrollment (or re-enrollment after a withdrawal) in ``study_id`` with its protocol."""
        ts = enrolled_at or now()
        row = {
            "id": study_id,
            "protocol": json.dumps(protocol, ensure_ascii=False, sort_keys=True),
            "server_url": server_url,
            "participant_id": participant_id,
            "enrolled_at": ts,
            "withdrawn_at": None,
        }
        with atomic(self.db):
            self.db.execute(
                "INSERT INTO studies (id, protocol, server_url, participant_id, enrolled_at, withdrawn_at) "
                "VALUES (:id, :protocol, :server_url, :participant_id, :enrolled_at, :withdrawn_at) "
                "ON CONFLICT(id) DO UPDATE SET protocol = excluded.protocol, server_url = excluded.server_url, "
                "participant_id = excluded.participant_id, enrolled_at = excluded.enrolled_at, withdrawn_at = NULL",
                row,
            )
        return _record(row)

    def update_protocol(self, study_id: str, protocol: dict[str, Any]) -> None:
        """A new protocol version from the server; enrollment time and participant id stay."""
        with atomic(self.db):
            self.db.execute(
                "UPDATE studies SET protocol = ? WHERE id = ?",
                [json.dumps(protocol, ensure_ascii=False, sort_keys=True), study_id],
            )

    def withdraw(self, study_id: str, *, at: str | None = None) -> None:
        with atomic(self.db):
            self.db.execute(
                "UPDATE studies SET withdrawn_at = ? WHERE id = ? AND withdrawn_at IS NULL", [at or now(), study_id]
            )

    def get(self, study_id: str) -> StudyRecord | None:
        rows = list(self.db.query("SELECT * FROM studies WHERE id = ?", [study_id]))
        return _record(rows[0]) if rows else None

    def current(self) -> StudyRecord | None:
        """The study the participant takes part in now: the latest enrollment not withdrawn."""
        rows = list(self.db.query(
            "SELECT * FROM studies WHERE withdrawn_at IS NULL ORDER BY enrolled_at DESC LIMIT 1"
        ))
        return _record(rows[0]) if rows else None

    def all(self) -> list[StudyRecord]:
        return [_record(r) for r in self.db.query("SELECT * FROM studies ORDER BY enrolled_at")]
