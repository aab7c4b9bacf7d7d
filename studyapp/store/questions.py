"""The study's questions put to the participant (table question_asks, migration m009): the SQL of asking.

One row per asking: written 'asked' when the question is put (so a crash leaves a trace), 'postponed' when a survey
is put off, and closed once as 'answered', 'skipped' or 'unanswered'. Closing it notes the record for the privacy
gate in the same transaction (the table's trigger). Times are stored in UTC; the participant's UTC offset and
local calendar day at the asking are kept beside them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlite_utils import Database

from studyapp.store.util import atomic

OPEN_STATUSES = ("asked", "postponed")
FINAL_STATUSES = ("answered", "skipped", "unanswered")

_COLUMNS = ("id, study_id, question_id, question_version, question_type, question_when, asked_at, utc_offset_min, "
            "local_day, study_day, period, period_ends_at, comparison_id, message_id, ask_probability, status, "
            "due_at, answered_at, answer_number, answer_option, answer_text")


@dataclass(frozen=True)
class QuestionAsk:
    """One question put to the participant, and what became of it."""

    id: str  # the record's answer_id
    study_id: str
    question_id: str
    question_version: str
    question_type: str
    question_when: str
    asked_at: str  # UTC ISO-8601
    utc_offset_min: int  # the participant's offset from UTC when asked
    local_day: str  # the participant's calendar day when asked (YYYY-MM-DD)
    study_day: int | None = None
    # daily, weekly, at_end: the period asked for, and when it ends (None: at_end's never does).
    period: str | None = None
    period_ends_at: str | None = None
    comparison_id: str | None = None
    message_id: str | None = None
    ask_probability: float | None = None
    status: str = "asked"
    due_at: str | None = None  # a postponed survey is due again from then
    answered_at: str | None = None
    answer_number: int | None = None
    answer_option: str | None = None
    answer_text: str | None = None

    @property
    def open(self) -> bool:
        return self.status in OPEN_STATUSES


def _ask(row: Sequence[object]) -> QuestionAsk:
    return QuestionAsk(*row)  # type: ignore[arg-type]  # the columns are the fields, in order


def utc_text(moment: datetime) -> str:
    """How times are stored: UTC ISO-8601 with microseconds (ordering by the text orders by time)."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


class QuestionStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, asks: Iterable[QuestionAsk]) -> None:
        """Record questions as asked, in one transaction (the ones shown together are asked together)."""
        rows = [[getattr(a, name.strip()) for name in _COLUMNS.split(",")] for a in asks]
        with atomic(self.db):
            self.db.conn.executemany(
                f"INSERT INTO question_asks ({_COLUMNS}) VALUES ({', '.join('?' * len(_COLUMNS.split(',')))})",
                rows)

    def get(self, ask_id: str) -> QuestionAsk | None:
        row = self.db.execute(f"SELECT {_COLUMNS} FROM question_asks WHERE id = ?", [ask_id]).fetchone()
        return _ask(row) if row else None

    def history(self, study_id: str, *, when: Sequence[str] = (), local_day: str | None = None) -> list[QuestionAsk]:
        """The askings in the study, oldest first: only of questions asked ``when`` and on ``local_day`` if given
        (the rules need a day's or the surveys' askings, not the whole study's)."""
        sql, params = f"SELECT {_COLUMNS} FROM question_asks WHERE study_id = ?", [study_id]
        if when:
            sql += f" AND question_when IN ({', '.join('?' * len(when))})"
            params += list(when)
        if local_day is not None:
            sql += " AND local_day = ?"
            params.append(local_day)
        return [_ask(r) for r in self.db.execute(sql + " ORDER BY asked_at, rowid", params)]

    def asked_about(self, study_id: str, *, message_id: str | None = None, comparison_id: str | None = None) -> bool:
        """Whether a question was put about this reply or comparison already (each brings its questions once)."""
        column, value = ("message_id", message_id) if message_id is not None else ("comparison_id", comparison_id)
        return self.db.execute(f"SELECT 1 FROM question_asks WHERE study_id = ? AND {column} = ? LIMIT 1",
                               [study_id, value]).fetchone() is not None

    def list(self) -> list[QuestionAsk]:
        """Every asking of every study, oldest first."""
        return [_ask(r) for r in self.db.execute(f"SELECT {_COLUMNS} FROM question_asks ORDER BY asked_at, rowid")]

    def close(self, ask_id: str, status: str, *, answered_at: str | None = None, number: int | None = None,
              option: str | None = None, text: str | None = None) -> bool:
        """The answer (or skip); returns whether this call closed the ask. What became of it is decided once: an
        ask already closed keeps its first ending."""
        if status not in FINAL_STATUSES:
            raise ValueError(f"an ask closes as one of {', '.join(FINAL_STATUSES)}, not {status!r}")
        with atomic(self.db):
            cursor = self.db.execute(
                "UPDATE question_asks SET status = ?, answered_at = ?, answer_number = ?, answer_option = ?, "
                "answer_text = ?, due_at = NULL WHERE id = ? AND status IN ('asked', 'postponed')",
                [status, answered_at, number, option, text, ask_id])
        return cursor.rowcount == 1

    def reopen(self, ask_ids: Sequence[str]) -> None:
        """Postponed surveys put to the participant again: on screen, so a crash leaves them unanswered."""
        with atomic(self.db):
            self.db.conn.executemany(
                "UPDATE question_asks SET status = 'asked', due_at = NULL WHERE id = ? AND status = 'postponed'",
                [(i,) for i in ask_ids])

    def postpone(self, ask_ids: Sequence[str], due_at: datetime) -> int:
        """Surveys put off: due again from ``due_at``; returns how many were open."""
        with atomic(self.db):
            cursor = self.db.conn.executemany(
                "UPDATE question_asks SET status = 'postponed', due_at = ? "
                "WHERE id = ? AND status IN ('asked', 'postponed')",
                [(utc_text(due_at), i) for i in ask_ids])
        return cursor.rowcount

    def mark_unanswered(self, ask_ids: Sequence[str] | None = None) -> int:
        """Close open asks as 'unanswered': ``ask_ids`` (postponed surveys whose period ended), or, without them,
        every ask still 'asked' from an earlier run (the app closed with the question on screen). Returns how
        many."""
        with atomic(self.db):
            if ask_ids is None:
                cursor = self.db.execute(
                    "UPDATE question_asks SET status = 'unanswered', due_at = NULL WHERE status = 'asked'")
            else:
                cursor = self.db.conn.executemany(
                    "UPDATE question_asks SET status = 'unanswered', due_at = NULL "
                    "WHERE id = ? AND status IN ('asked', 'postponed')", [(i,) for i in ask_ids])
        return cursor.rowcount
