"""The participant's memory: attributes, their history, labels, extraction runs and selections.

All SQL of the personalization pipeline lives here (the objects it reads and writes are in studyapp.domain).
The pipeline (studyapp.personalize) decides *what* changes; this module writes it, and writes a whole
reconciliation in one transaction (``apply_changes``), so a failure never leaves a half-written memory.

Extraction bookkeeping: ``messages.extracted_at`` is NULL for user messages not yet read by the extractor.
A run first *claims* its messages (``extracted_at = 'claim:<time>:<run id>'``, an atomic UPDATE), so two
runs, in one process or two, never process the same message; the claim becomes the finish time when the
run is recorded, or is released when the model could not be reached. Claims older than
``STALE_CLAIM_S`` (a crash mid-run) count as unprocessed again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlite_utils import Database

from studyapp.domain import (
    ACTORS,
    LABEL_SOURCES,
    ORIGINS,
    Attribute,
    AttributeChange,
    AttributeEvent,
    AttributeLabel,
    ExtractionRun,
    LabelDismissal,
    MemoryChangeError,
    MemoryView,
    Message,
    NewAttribute,
    SelectionRecord,
)
from studyapp.events import ATTRIBUTE_LABELS
from studyapp.store.util import atomic, dumps, loads, new_id, now

STALE_CLAIM_S = 600
CLAIM_PREFIX = "claim:"


def _attribute(row: dict[str, Any]) -> Attribute:
    return Attribute(
        id=row["id"],
        text=row["text"],
        reason=row["reason"],
        confidence=float(row["confidence"]),
        status=row["status"],
        origin=row["origin"],
        evidence=list(loads(row["evidence"], [])),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        label=row.get("label"),
        labeled_at=row.get("labeled_at"),
    )


_LABEL_COLUMNS = "id, attribute_id, label, labeled_at, source, attribute_text, confidence, age_s"
_DISMISSAL_COLUMNS = "id, attribute_id, dismissed_at, source"


def _age_s(created_at: str, at: str) -> float:
    """Seconds from ``created_at`` to ``at`` (both ISO-8601); 0 if the clock went back in between."""
    try:
        start, end = datetime.fromisoformat(created_at), datetime.fromisoformat(at)
    except ValueError:
        return 0.0
    start, end = (t if t.tzinfo else t.replace(tzinfo=UTC) for t in (start, end))
    return max(0.0, (end - start).total_seconds())


def _clamp(value: float) -> float:
    return max(0.0, min(1.0, float(value)))


def _merge_ids(*lists: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for ids in lists:
        for i in ids:
            seen.setdefault(i, None)
    return list(seen)


_ATTRIBUTE_SELECT = """
    SELECT a.*,
           (SELECT l.label FROM attribute_labels l WHERE l.attribute_id = a.id
             ORDER BY l.labeled_at DESC LIMIT 1) AS label,
           (SELECT l.labeled_at FROM attribute_labels l WHERE l.attribute_id = a.id
             ORDER BY l.labeled_at DESC LIMIT 1) AS labeled_at
    FROM attributes a
"""


def _check_source(source: str | None) -> None:
    if source is not None and source not in LABEL_SOURCES:
        raise MemoryChangeError(f"Unknown label source {source!r}; use one of {', '.join(LABEL_SOURCES)}.")


class MemoryStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # Reading -----------------------------------------------------------------------

    def list_attributes(self, *, include_deleted: bool = False) -> list[Attribute]:
        where = "" if include_deleted else "WHERE a.status = 'active'"
        sql = f"{_ATTRIBUTE_SELECT} {where} ORDER BY a.created_at, a.id"
        return [_attribute(r) for r in self.db.query(sql)]

    def get(self, attribute_id: str) -> Attribute | None:
        rows = list(self.db.query(f"{_ATTRIBUTE_SELECT} WHERE a.id = ?", [attribute_id]))
        return _attribute(rows[0]) if rows else None

    def count_active(self) -> int:
        return self.db.execute("SELECT count(*) FROM attributes WHERE status = 'active'").fetchone()[0]

    def edited_by_participant(self) -> set[str]:
        """Ids of the attributes whose text the participant changed (their origin alone no longer says who wrote it)."""
        rows = self.db.execute(
            "SELECT DISTINCT attribute_id FROM attribute_events WHERE action = 'update' AND actor = 'participant'"
        ).fetchall()
        return {r[0] for r in rows}

    def forgotten_texts(self) -> list[str]:
        """Texts of attributes the participant forgot: the extractor must not bring them back."""
        rows = self.db.execute(
            "SELECT DISTINCT a.text FROM attributes a JOIN attribute_events e ON e.attribute_id = a.id "
            "WHERE a.status = 'deleted' AND e.action = 'delete' AND e.actor = 'participant'"
        ).fetchall()
        return [r[0] for r in rows]

    def events(self, attribute_id: str | None = None) -> list[AttributeEvent]:
        sql = "SELECT * FROM attribute_events"
        params: list[Any] = []
        if attribute_id is not None:
            sql += " WHERE attribute_id = ?"
            params.append(attribute_id)
        sql += " ORDER BY created_at, rowid"
        return [
            AttributeEvent(
                id=r["id"], attribute_id=r["attribute_id"], action=r["action"],
                before=loads(r["before"]), after=loads(r["after"]), reason=r["reason"],
                actor=r["actor"], run_id=r["run_id"], created_at=r["created_at"],
            )
            for r in self.db.query(sql, params)
        ]

    def labels(self, attribute_id: str) -> list[AttributeLabel]:
        """Every label the participant gave this attribute, oldest first."""
        rows = self.db.execute(
            f"SELECT {_LABEL_COLUMNS} FROM attribute_labels WHERE attribute_id = ? ORDER BY labeled_at",
            [attribute_id]).fetchall()
        return [AttributeLabel(*row) for row in rows]

    def get_label(self, label_id: str) -> AttributeLabel | None:
        rows = self.db.execute(f"SELECT {_LABEL_COLUMNS} FROM attribute_labels WHERE id = ?", [label_id]).fetchall()
        return AttributeLabel(*rows[0]) if rows else None

    def dismissals(self, attribute_id: str) -> list[LabelDismissal]:
        """Every time the participant left this attribute for later, oldest first."""
        rows = self.db.execute(
            f"SELECT {_DISMISSAL_COLUMNS} FROM label_dismissals WHERE attribute_id = ? ORDER BY dismissed_at, rowid",
            [attribute_id]).fetchall()
        return [LabelDismissal(*row) for row in rows]

    def get_dismissal(self, dismissal_id: str) -> LabelDismissal | None:
        row = self.db.execute(f"SELECT {_DISMISSAL_COLUMNS} FROM label_dismissals WHERE id = ?",
                              [dismissal_id]).fetchone()
        return LabelDismissal(*row) if row else None

    def evidence_messages(self, attribute_id: str) -> list[Message]:
        """The messages that support an attribute, in conversation order (deleted ones simply drop out)."""
        attribute = self.get(attribute_id)
        if attribute is None or not attribute.evidence:
            return []
        marks = ", ".join("?" for _ in attribute.evidence)
        rows = self.db.query(
            "SELECT n, id, conversation_id, role, content, status, created_at, error, model, arm, comparison_id, "
            f"template, first_token_ms, duration_ms FROM messages WHERE id IN ({marks}) ORDER BY n",
            attribute.evidence,
        )
        return [Message(**r) for r in rows]

    # Participant actions -------------------------------------------------------------

    def add_participant_attribute(self, text: str, *, reason: str = "Added by the participant") -> Attribute:
        text = text.strip()
        if not text:
            raise MemoryChangeError("An attribute needs some text: write one sentence about yourself.")
        new = NewAttribute(text=text, reason=reason, confidence=1.0, evidence=[], origin="participant")
        self.apply_changes([AttributeChange(action="add", reason=reason, new=new)], actor="participant")
        attribute = self.get(new.id)
        assert attribute is not None
        return attribute

    def edit(self, attribute_id: str, text: str, *, reason: str = "Edited by the participant") -> Attribute:
        text = text.strip()
        if not text:
            raise MemoryChangeError("The attribute text cannot be empty: to remove it, forget it instead.")
        self.apply_changes(
            [AttributeChange(action="update", reason=reason, attribute_id=attribute_id, text=text)],
            actor="participant",
        )
        attribute = self.get(attribute_id)
        assert attribute is not None
        return attribute

    def forget(self, attribute_id: str, *, reason: str = "Forgotten by the participant") -> None:
        self.apply_changes(
            [AttributeChange(action="delete", reason=reason, attribute_id=attribute_id)], actor="participant"
        )

    def label(self, attribute_id: str, label: str, *, source: str | None = None) -> str:
        """Store the participant's label with its time, where it was given, and the attribute as it was then
        (text, confidence, age): the attribute may change later, the label answered this version. Returns
        labeled_at."""
        _check_source(source)
        if label not in ATTRIBUTE_LABELS:
            raise MemoryChangeError(f"Unknown label {label!r}; use one of {', '.join(ATTRIBUTE_LABELS)}.")
        attribute = self.get(attribute_id)
        if attribute is None:
            raise MemoryChangeError(f"No attribute {attribute_id}.")
        ts = now()
        with atomic(self.db):
            self.db.execute(
                f"INSERT INTO attribute_labels ({_LABEL_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [new_id(), attribute_id, label, ts, source, attribute.text, attribute.confidence,
                 _age_s(attribute.created_at, ts)],
            )
        return ts

    def dismiss(self, attribute_id: str, *, source: str | None = None) -> str:
        """Record that the participant left this attribute unanswered for later; returns the dismissal's id."""
        _check_source(source)
        if self.get(attribute_id) is None:
            raise MemoryChangeError(f"No attribute {attribute_id}.")
        dismissal_id = new_id()
        with atomic(self.db):
            self.db.execute(f"INSERT INTO label_dismissals ({_DISMISSAL_COLUMNS}) VALUES (?, ?, ?, ?)",
                            [dismissal_id, attribute_id, now(), source])
        return dismissal_id

    # Reconciliation ------------------------------------------------------------------

    def apply_changes(
        self,
        changes: Sequence[AttributeChange],
        *,
        actor: str,
        run: ExtractionRun | None = None,
        finish_claim: str | None = None,
    ) -> list[AttributeEvent]:
        """Apply changes, write one event per change, record ``run`` and finish the claim: all or nothing."""
        if actor not in ACTORS:
            raise MemoryChangeError(f"Unknown actor {actor!r}")
        events: list[AttributeEvent] = []
        run_id = run.id if run else None
        conn = self.db.conn
        with conn:
            conn.execute("SAVEPOINT apply_changes")
            try:
                if run is not None:
                    self._insert_run(run)
                for change in changes:
                    event = self._apply_one(change, actor=actor, run_id=run_id)
                    if event is not None:
                        events.append(event)
                if finish_claim is not None:
                    conn.execute(
                        "UPDATE messages SET extracted_at = ? WHERE extracted_at = ?", [now(), finish_claim]
                    )
                conn.execute("RELEASE apply_changes")
            except BaseException:
                conn.execute("ROLLBACK TO apply_changes")
                conn.execute("RELEASE apply_changes")
                raise
        return events

    def _apply_one(self, change: AttributeChange, *, actor: str, run_id: str | None) -> AttributeEvent | None:
        ts = now()
        if change.action == "add":
            new = change.new
            if new is None:
                raise MemoryChangeError("An 'add' change needs the new attribute.")
            if new.origin not in ORIGINS:
                raise MemoryChangeError(f"Unknown origin {new.origin!r}")
            self.db.execute(
                "INSERT INTO attributes (id, text, reason, confidence, status, origin, evidence, created_at, "
                "updated_at) VALUES (?, ?, ?, ?, 'active', ?, ?, ?, ?)",
                [new.id, new.text, new.reason, _clamp(new.confidence), new.origin,
                 dumps(_merge_ids(new.evidence)), ts, ts],
            )
            after = {"text": new.text, "reason": new.reason, "confidence": _clamp(new.confidence),
                     "status": "active", "evidence": _merge_ids(new.evidence)}
            return self._event(new.id, "add", None, after, change.reason, actor, run_id, ts)

        if change.attribute_id is None:
            raise MemoryChangeError(f"A {change.action!r} change needs an attribute id.")
        current = self.get(change.attribute_id)
        if current is None:
            raise MemoryChangeError(f"No attribute {change.attribute_id}.")
        before = current.snapshot()
        if change.action == "delete":
            if current.status == "deleted":
                return None
            self.db.execute(
                "UPDATE attributes SET status = 'deleted', updated_at = ? WHERE id = ?", [ts, current.id]
            )
            return self._event(current.id, "delete", before, {**before, "status": "deleted"},
                               change.reason, actor, run_id, ts)
        if change.action in ("update", "keep"):
            if current.status == "deleted":
                if actor == "model":
                    # Forgotten while the model was deciding: the participant's choice wins, quietly.
                    return None
                raise MemoryChangeError("This attribute was forgotten; it cannot be changed.")
            after = dict(before)
            if change.action == "update" and change.text is not None:
                after["text"] = change.text
            if change.attribute_reason is not None:
                after["reason"] = change.attribute_reason
            if change.confidence is not None:
                after["confidence"] = _clamp(change.confidence)
            if change.evidence:
                after["evidence"] = _merge_ids(before["evidence"], change.evidence)
            if after == before:
                return None  # nothing changed: no event (a 'keep' with no new evidence)
            self.db.execute(
                "UPDATE attributes SET text = ?, reason = ?, confidence = ?, evidence = ?, updated_at = ? "
                "WHERE id = ?",
                [after["text"], after["reason"], after["confidence"], dumps(after["evidence"]), ts, current.id],
            )
            return self._event(current.id, change.action, before, after, change.reason, actor, run_id, ts)
        raise MemoryChangeError(f"Unknown action {change.action!r}")

    def _event(self, attribute_id: str, action: str, before: dict[str, Any] | None, after: dict[str, Any] | None,
               reason: str, actor: str, run_id: str | None, ts: str) -> AttributeEvent:
        event = AttributeEvent(new_id(), attribute_id, action, before, after, reason, actor, run_id, ts)
        self.db.execute(
            "INSERT INTO attribute_events (id, attribute_id, action, before, after, reason, actor, run_id, "
            "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [event.id, attribute_id, action, None if before is None else dumps(before),
             None if after is None else dumps(after), reason, actor, run_id, ts],
        )
        return event

    # Extraction runs and claims --------------------------------------------------------

    def _insert_run(self, run: ExtractionRun) -> None:
        self.db.execute(
            "INSERT INTO extraction_runs (id, status, model, template, message_ids, raw, error, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [run.id, run.status, run.model, run.template, dumps(run.message_ids), run.raw, run.error,
             run.created_at],
        )

    def record_failed_run(self, run: ExtractionRun, *, finish_claim: str | None = None) -> None:
        """A run whose output could not be used: kept with its raw text; its messages count as read."""
        self.apply_changes([], actor="model", run=run, finish_claim=finish_claim)

    def runs(self) -> list[ExtractionRun]:
        return [
            ExtractionRun(id=r["id"], status=r["status"], model=r["model"], template=r["template"],
                          message_ids=loads(r["message_ids"], []), raw=r["raw"], error=r["error"],
                          created_at=r["created_at"])
            for r in self.db.query("SELECT * FROM extraction_runs ORDER BY created_at, rowid")
        ]

    def _unprocessed_where(self) -> tuple[str, list[Any]]:
        stale = (datetime.now(UTC) - timedelta(seconds=STALE_CLAIM_S)).isoformat(timespec="microseconds")
        # A claim is 'claim:<iso time>:<run id>'; the time sorts as text, so a substring compare finds stale ones.
        return (
            "(m.extracted_at IS NULL OR (m.extracted_at LIKE 'claim:%' "
            "AND substr(m.extracted_at, 7, 32) < ?))",
            [stale],
        )

    def pending_user_messages(self, conversation_id: str | None = None, *, limit: int = 50,
                              message_ids: Sequence[str] | None = None) -> list[Message]:
        """User messages not yet extracted, from conversations with memory on, oldest first."""
        cond, params = self._unprocessed_where()
        sql = (
            "SELECT m.n, m.id, m.conversation_id, m.role, m.content, m.status, m.created_at, m.error, m.model, "
            "m.arm, m.comparison_id, m.template, m.first_token_ms, m.duration_ms "
            "FROM messages m JOIN conversations c ON c.id = m.conversation_id "
            f"WHERE m.role = 'user' AND c.memory_enabled = 1 AND {cond}"
        )
        if conversation_id is not None:
            sql += " AND m.conversation_id = ?"
            params.append(conversation_id)
        if message_ids is not None:
            sql += f" AND m.id IN ({', '.join('?' for _ in message_ids)})"
            params.extend(message_ids)
        sql += f" ORDER BY m.n LIMIT {int(limit)}"
        return [Message(**r) for r in self.db.query(sql, params)]

    def claim(self, message_ids: Sequence[str], run_id: str) -> tuple[str, list[str]]:
        """Atomically claim the still-unprocessed ones among ``message_ids``; returns (claim, claimed ids)."""
        if not message_ids:
            return "", []
        claim = f"{CLAIM_PREFIX}{now()}:{run_id}"
        cond, params = self._unprocessed_where()
        marks = ", ".join("?" for _ in message_ids)
        with atomic(self.db):
            self.db.execute(
                f"UPDATE messages AS m SET extracted_at = ? WHERE m.id IN ({marks}) AND {cond}",
                [claim, *message_ids, *params],
            )
            claimed = [r[0] for r in self.db.execute(
                "SELECT id FROM messages WHERE extracted_at = ? ORDER BY n", [claim]
            ).fetchall()]
        return claim, claimed

    def release_claim(self, claim: str) -> None:
        """Give messages back (the model could not be reached): a later run reads them again."""
        with atomic(self.db):
            self.db.execute("UPDATE messages SET extracted_at = NULL WHERE extracted_at = ?", [claim])

    def existing_message_ids(self, message_ids: Iterable[str]) -> set[str]:
        ids = list(message_ids)
        if not ids:
            return set()
        marks = ", ".join("?" for _ in ids)
        return {r[0] for r in self.db.execute(f"SELECT id FROM messages WHERE id IN ({marks})", ids).fetchall()}

    # Selections ------------------------------------------------------------------------

    def record_selections(self, message_id: str, decisions: Sequence[tuple[str, bool, str, bool]], *,
                          model: str | None, template: str | None) -> list[str]:
        """One row per attribute considered for a request: (attribute id, selected, rationale, valid), where
        valid is false when the selector's answer was unreadable or said nothing about the attribute."""
        ts = now()
        ids = []
        with atomic(self.db):
            for attribute_id, selected, rationale, valid in decisions:
                row_id = new_id()
                ids.append(row_id)
                self.db.execute(
                    "INSERT INTO selections (id, message_id, attribute_id, selected, rationale, model, template, "
                    "created_at, valid) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [row_id, message_id, attribute_id, int(selected), rationale, model, template, ts, int(valid)],
                )
        return ids

    def selections(self, message_id: str) -> list[SelectionRecord]:
        return [
            SelectionRecord(id=r["id"], message_id=r["message_id"], attribute_id=r["attribute_id"],
                            selected=bool(r["selected"]), rationale=r["rationale"], model=r["model"],
                            template=r["template"], created_at=r["created_at"],
                            valid=None if r["valid"] is None else bool(r["valid"]),
                            conversation_id=r["conversation_id"])
            for r in self.db.query(
                "SELECT s.*, m.conversation_id FROM selections s LEFT JOIN messages m ON m.id = s.message_id "
                "WHERE s.message_id = ? ORDER BY s.created_at, s.rowid", [message_id]
            )
        ]

    # Memory views --------------------------------------------------------------------------

    def record_view(self, *, opened_at: str, screen: str, closed_at: str | None = None) -> str:
        """The participant looked at their memory from ``opened_at`` until now (or ``closed_at``)."""
        closed = closed_at or now()
        duration = max(0.0, (datetime.fromisoformat(closed) - datetime.fromisoformat(opened_at)).total_seconds())
        view_id = new_id()
        with atomic(self.db):
            self.db.execute("INSERT INTO memory_views (id, opened_at, closed_at, duration_s, screen) "
                            "VALUES (?, ?, ?, ?, ?)", [view_id, opened_at, closed, duration, screen])
        return view_id

    def get_view(self, view_id: str) -> MemoryView | None:
        row = self.db.execute("SELECT id, opened_at, closed_at, duration_s, screen FROM memory_views WHERE id = ?",
                              [view_id]).fetchone()
        return MemoryView(*row) if row is not None else None

    def views(self) -> list[MemoryView]:
        return [MemoryView(*r) for r in self.db.execute(
            "SELECT id, opened_at, closed_at, duration_s, screen FROM memory_views ORDER BY opened_at, rowid")]

    def selected_attributes(self, message_id: str) -> list[Attribute]:
        """The attributes used for a reply (for 'which attributes shaped this answer' in the chat view)."""
        rows = self.db.query(
            f"{_ATTRIBUTE_SELECT} JOIN selections s ON s.attribute_id = a.id "
            "WHERE s.message_id = ? AND s.selected = 1 ORDER BY s.rowid",
            [message_id],
        )
        return [_attribute(r) for r in rows]
