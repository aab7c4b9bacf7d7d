"""SQL for the consent log: consent_events, append-only (triggers refuse UPDATE and DELETE)."""

from __future__ import annotations

from typing import Any

from sqlite_utils import Database

from studyapp.store.util import atomic, dumps, loads, new_id, now


class ConsentStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def append(self, *, study_id: str, document_version: str, document_sha256: str, categories: list[str],
               action: str, include_earlier: list[str] | None = None) -> dict[str, Any]:
        """Append one consent event and return it as a row dict (categories decoded)."""
        row = {
            "id": new_id(),
            "study_id": study_id,
            "document_version": document_version,
            "document_sha256": document_sha256,
            "categories": dumps(sorted(categories)),
            "action": action,
            "created_at": now(),
            "include_earlier": dumps(sorted(include_earlier or [])),
        }
        with atomic(self.db):  # may be part of the consent service's transaction
            self.db.execute(
                "INSERT INTO consent_events (id, study_id, document_version, document_sha256, categories, "
                "action, created_at, include_earlier) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                list(row.values()),
            )
        return _decode(row)

    def events(self, study_id: str) -> list[dict[str, Any]]:
        """The study's consent events, oldest first (rowid breaks ties of equal timestamps)."""
        rows = self.db.query("SELECT * FROM consent_events WHERE study_id = ? ORDER BY created_at, rowid",
                             [study_id])
        return [_decode(r) for r in rows]


def _decode(row: dict[str, Any]) -> dict[str, Any]:
    row = dict(row)
    row["categories"] = loads(row["categories"], [])
    row["include_earlier"] = loads(row.get("include_earlier"), [])
    return row
