"""The local pseudonym mapping and the participant's always-remove terms.

Both tables stay on this machine: they hold the very details anonymization removes, so nothing
here is ever queued, exported or logged (privacy invariant 2).
"""

from __future__ import annotations

from sqlite_utils import Database

from studyapp.store.util import atomic, now


def normalize(value: str) -> str:
    """The key a detected value is stored under: 'Maria  Lopez' and 'maria lopez' are one person."""
    return " ".join(value.split()).casefold()


class PrivacyStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # Pseudonyms ------------------------------------------------------------------------------------

    def placeholder(self, entity_type: str, value: str, *, same_as: tuple[str, ...] = ()) -> str:
        """The participant's placeholder for ``value`` (e.g. ``<PERSON_3>``), created on first sight.

        ``same_as`` lists other entity types whose placeholder for the same value is reused (a name the
        recognizer once calls a person and once a place stays one placeholder). One INSERT ... SELECT
        numbers and stores a new placeholder atomically, so two writers never hand out the same number.
        """
        key = normalize(value)
        if same_as:
            marks = ", ".join("?" for _ in same_as)
            row = self.db.execute(
                f"SELECT placeholder FROM pseudonyms WHERE value = ? AND entity_type IN ({marks}) "
                "ORDER BY created_at LIMIT 1", [key, *same_as]).fetchone()
            if row is not None:
                return str(row[0])
        with atomic(self.db):
            self.db.execute(
                "INSERT OR IGNORE INTO pseudonyms (entity_type, value, placeholder, created_at) "
                "SELECT ?, ?, '<' || ? || '_' || (count(*) + 1) || '>', ? FROM pseudonyms WHERE entity_type = ?",
                [entity_type, key, entity_type, now(), entity_type],
            )
        row = self.db.execute(
            "SELECT placeholder FROM pseudonyms WHERE entity_type = ? AND value = ?", [entity_type, key]
        ).fetchone()
        return str(row[0])

    def mapping(self) -> dict[tuple[str, str], str]:
        """Every (entity_type, normalized value) -> placeholder, for tests and the participant's own view."""
        return {(r[0], r[1]): r[2] for r in self.db.execute(
            "SELECT entity_type, value, placeholder FROM pseudonyms ORDER BY entity_type, created_at")}

    # Always-remove terms ---------------------------------------------------------------------------

    def terms(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT term FROM privacy_terms ORDER BY created_at, term")]

    def add_term(self, term: str) -> bool:
        """Store a term (whitespace-trimmed); False when it was already there."""
        with atomic(self.db):
            cursor = self.db.execute("INSERT OR IGNORE INTO privacy_terms (term, created_at) VALUES (?, ?)",
                                     [term, now()])
        return cursor.rowcount > 0

    def remove_term(self, term: str) -> bool:
        with atomic(self.db):
            cursor = self.db.execute("DELETE FROM privacy_terms WHERE term = ?", [term])
        return cursor.rowcount > 0
