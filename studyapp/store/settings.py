"""Key-value settings (never secrets: those live in the keyring, see studyapp.secrets)."""

from __future__ import annotations

import json
from typing import Any

from sqlite_utils import Database

from studyapp.store.util import atomic


class SettingsStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def get(self, key: str, default: Any = None) -> Any:
        row = self.db.execute("SELECT value FROM settings WHERE key = ?", [key]).fetchone()
        return json.loads(row[0]) if row else default

    def set(self, key: str, value: Any) -> None:
        with atomic(self.db):
            self.db.execute(
                "INSERT INTO settings (key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                [key, json.dumps(value)],
            )

    def delete(self, key: str) -> None:
        with atomic(self.db):
            self.db.execute("DELETE FROM settings WHERE key = ?", [key])
