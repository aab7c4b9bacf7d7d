"""The local pseudonym mapping and the participant's always-remove terms.

Both tables stay on this machine: they hold the very details anonymization removes, so nothing
here is ever queued, exported or logged (privacy invariant 2).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlite_utils import Database

from studyapp.store.util import atomic, now

PERSON = "PERSON"


def normalize(value: str) -> str:
    """The key a detected value is stored under: 'Maria  Lopez' and 'maria lopez' are one person."""
    return " ".join(value.split()).casefold()


def _name_words(key: str) -> list[str]:
    """The words of a normalized name that can stand for the person alone: not initials ("d.")."""
    return [w for w in key.split() if not (w.endswith(".") and len(w) <= 2)]


def person_alias(key: str, known: Sequence[tuple[str, str]]) -> str | None:
    """The placeholder of a person already known that the new name ``key`` (normalized) stands for, if any.

    ``known`` holds the participant's PERSON (value, placeholder) pairs, oldest first. One placeholder per
    person: "jonas" after "jonas becker" is that person, and so is "becker"; "jonas becker" after "jonas"
    alone takes the first name's placeholder, unless that placeholder already stands for another full name
    ("jonas weber"), or both "jonas" and "becker" were seen alone as different placeholders (then no one can
    tell, and the full name gets its own).

    A first name (or surname) that is part of several known full names goes to the full name stored most
    recently: the person the participant wrote about last is the likelier one meant by a bare "Anna" in the
    next message. The choice is stored with the name, so it never changes afterwards.
    """
    words = _name_words(key)
    if not words:
        return None
    full = [(v, p, _name_words(v)) for v, p in known if len(_name_words(v)) > 1]
    if len(words) == 1:
        matches = [p for _v, p, w in full if words[0] in (w[0], w[-1])]
        return matches[-1] if matches else None
    # The same first and last name with a middle name or initial more or less ("faina d. yefremova").
    same = [p for _v, p, w in full if (w[0], w[-1]) == (words[0], words[-1])]
    if same:
        return same[-1]
    bound = {p for _v, p, _w in full}
    alone = {p for v, p in known if v in (words[0], words[-1]) and p not in bound}
    return alone.pop() if len(alone) == 1 else None


class PrivacyStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # Pseudonyms ------------------------------------------------------------------------------------

    def placeholder(self, entity_type: str, value: str, *, same_as: tuple[str, ...] = ()) -> str:
        """The participant's placeholder for ``value`` (e.g. ``<PERSON_3>``), created on first sight.

        ``same_as`` lists other entity types whose placeholder for the same value is reused (a name the
        recognizer once calls a person and once a place stays one placeholder). A person's first name or
        surname alone and their full name share one placeholder (see ``person_alias``); the alias is stored
        as a row of its own, so it stays what it was decided to be. One transaction reads the known names,
        numbers and stores a new placeholder, so two writers never hand out the same number.
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
            alias = None
            if entity_type == PERSON:
                known = self.db.execute("SELECT value, placeholder FROM pseudonyms WHERE entity_type = ? "
                                        "ORDER BY created_at, rowid", [PERSON]).fetchall()
                alias = person_alias(key, [(str(v), str(p)) for v, p in known])
            if alias is not None:
                self.db.execute("INSERT OR IGNORE INTO pseudonyms (entity_type, value, placeholder, created_at) "
                                "VALUES (?, ?, ?, ?)", [entity_type, key, alias, now()])
            else:
                # The next number after the highest one (aliases share a number, so rows are no count).
                self.db.execute(
                    "INSERT OR IGNORE INTO pseudonyms (entity_type, value, placeholder, created_at) "
                    "SELECT ?, ?, '<' || ? || '_' || (COALESCE(MAX(CAST(substr(placeholder, length(?) + 3, "
                    "length(placeholder) - length(?) - 3) AS INTEGER)), 0) + 1) || '>', ? "
                    "FROM pseudonyms WHERE entity_type = ?",
                    [entity_type, key, entity_type, entity_type, entity_type, now(), entity_type],
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
