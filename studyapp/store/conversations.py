"""Conversations and their messages: the participant's chat history."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from sqlite_utils import Database

from studyapp.domain import Conversation, Message, SearchHit
from studyapp.store.util import atomic, new_id, now

DEFAULT_TITLE = "New conversation"


def _conversation(row: dict[str, Any]) -> Conversation:
    return Conversation(
        id=row["id"],
        title=row["title"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        memory_enabled=bool(row["memory_enabled"]),
        message_count=row.get("message_count", 0) or 0,
    )


_MESSAGE_COLUMNS = (
    "n, id, conversation_id, role, content, status, created_at, error, model, arm, comparison_id, "
    "template, first_token_ms, duration_ms"
)


def _message(row: dict[str, Any] | tuple[Any, ...]) -> Message:
    if isinstance(row, tuple):
        row = dict(zip([c.strip() for c in _MESSAGE_COLUMNS.split(",")], row, strict=True))
    return Message(**{k: row[k] for k in Message.__dataclass_fields__})


class ConversationStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # Conversations -----------------------------------------------------------------

    def create(self, title: str = DEFAULT_TITLE, *, memory_enabled: bool = True) -> Conversation:
        ts = now()
        row = {
            "id": new_id(),
            "title": title,
            "created_at": ts,
            "updated_at": ts,
            "memory_enabled": int(memory_enabled),
        }
        with atomic(self.db):
            self.db["conversations"].insert(row)
        return _conversation(row)

    def get(self, conversation_id: str) -> Conversation | None:
        rows = list(self.db.query("SELECT * FROM conversations WHERE id = ?", [conversation_id]))
        return _conversation(rows[0]) if rows else None

    def list(self, limit: int | None = None) -> list[Conversation]:
        sql = """
            SELECT c.*, (SELECT count(*) FROM messages m WHERE m.conversation_id = c.id) AS message_count
            FROM conversations c ORDER BY c.updated_at DESC
        """
        if limit:
            sql += f" LIMIT {int(limit)}"
        return [_conversation(r) for r in self.db.query(sql)]

    def totals(self) -> tuple[int, int]:
        """(conversations, messages) in the whole history."""
        row = self.db.execute(
            "SELECT (SELECT count(*) FROM conversations), (SELECT count(*) FROM messages)").fetchone()
        return row[0], row[1]

    def rename(self, conversation_id: str, title: str) -> None:
        title = title.strip() or DEFAULT_TITLE
        with atomic(self.db):
            self.db.execute(
                "UPDATE conversations SET title = ? WHERE id = ?",
                [title, conversation_id],
            )

    def set_memory_enabled(self, conversation_id: str, enabled: bool) -> None:
        with atomic(self.db):
            self.db.execute(
                "UPDATE conversations SET memory_enabled = ? WHERE id = ?", [int(enabled), conversation_id]
            )

    def delete(self, conversation_id: str) -> None:
        with atomic(self.db):
            self.db.execute("DELETE FROM conversations WHERE id = ?", [conversation_id])

    def touch(self, conversation_id: str) -> None:
        with atomic(self.db):
            self.db.execute("UPDATE conversations SET updated_at = ? WHERE id = ?", [now(), conversation_id])

    # Messages ----------------------------------------------------------------------

    def add_message(
        self,
        conversation_id: str,
        role: str,
        content: str,
        *,
        status: str = "complete",
        model: str | None = None,
        arm: str | None = None,
        comparison_id: str | None = None,
        template: str | None = None,
        in_thread: bool = True,
    ) -> Message:
        """Insert and commit a message at once (a user message is durable before any request goes out)."""
        ts = now()
        row = {
            "id": new_id(),
            "conversation_id": conversation_id,
            "role": role,
            "content": content,
            "status": status,
            "model": model,
            "arm": arm,
            "comparison_id": comparison_id,
            "template": template,
            "in_thread": int(in_thread),
            "created_at": ts,
            "updated_at": ts,
        }
        with atomic(self.db):
            cursor = self.db.execute(
                "INSERT INTO messages (id, conversation_id, role, content, status, model, arm, comparison_id, "
                "template, in_thread, created_at, updated_at) VALUES (:id, :conversation_id, :role, :content, "
                ":status, :model, :arm, :comparison_id, :template, :in_thread, :created_at, :updated_at)",
                row,
            )
            self.db.execute("UPDATE conversations SET updated_at = ? WHERE id = ?", [ts, conversation_id])
        return Message(
            n=cursor.lastrowid or 0,
            id=row["id"],
            conversation_id=conversation_id,
            role=role,
            content=content,
            status=status,
            created_at=ts,
            model=model,
            arm=arm,
            comparison_id=comparison_id,
            template=template,
        )

    def update_message(
        self,
        message_id: str,
        *,
        content: str | None = None,
        status: str | None = None,
        error: str | None = None,
        first_token_ms: float | None = None,
        duration_ms: float | None = None,
    ) -> None:
        fields: dict[str, Any] = {"updated_at": now()}
        if content is not None:
            fields["content"] = content
        if status is not None:
            fields["status"] = status
        if error is not None:
            fields["error"] = error
        if first_token_ms is not None:
            fields["first_token_ms"] = first_token_ms
        if duration_ms is not None:
            fields["duration_ms"] = duration_ms
        assignments = ", ".join(f"{k} = :{k}" for k in fields)
        with atomic(self.db):
            self.db.execute(f"UPDATE messages SET {assignments} WHERE id = :id", {**fields, "id": message_id})

    def set_in_thread(self, message_id: str, in_thread: bool) -> None:
        with atomic(self.db):
            self.db.execute("UPDATE messages SET in_thread = ? WHERE id = ?", [int(in_thread), message_id])

    def get_message(self, message_id: str) -> Message | None:
        rows = self.db.execute(f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE id = ?", [message_id]).fetchall()
        return _message(rows[0]) if rows else None

    def messages_by_id(self, message_ids: Sequence[str]) -> list[Message]:
        """The messages with these ids, in the order given; ids of deleted messages are left out."""
        if not message_ids:
            return []
        marks = ", ".join("?" for _ in message_ids)
        rows = self.db.execute(f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE id IN ({marks})",
                               list(message_ids)).fetchall()
        found = {m.id: m for m in map(_message, rows)}
        return [found[i] for i in message_ids if i in found]

    def count_user_messages_since(self, since: str) -> int:
        """The participant's own messages written at or after ``since`` (UTC ISO): "chatted today?"."""
        return self.db.execute(
            "SELECT count(*) FROM messages WHERE role = 'user' AND created_at >= ?", [since]
        ).fetchone()[0]

    def count_messages(self, conversation_id: str) -> int:
        return self.db.execute(
            "SELECT count(*) FROM messages WHERE conversation_id = ?", [conversation_id]
        ).fetchone()[0]

    def messages(
        self,
        conversation_id: str,
        *,
        before_n: int | None = None,
        limit: int | None = None,
        include_arms: bool = False,
    ) -> list[Message]:
        """Messages in order: the newest ``limit`` of those before ``before_n``.

        Comparison arms not chosen to continue the conversation (``in_thread = 0``) are left out
        unless ``include_arms``: they belong to the comparison, not to the thread.
        """
        where = ["conversation_id = ?"]
        params: list[Any] = [conversation_id]
        if before_n is not None:
            where.append("n < ?")
            params.append(before_n)
        if not include_arms:
            where.append("in_thread = 1")
        sql = f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE {' AND '.join(where)} ORDER BY n DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        rows = self.db.execute(sql, params).fetchall()
        return [_message(r) for r in reversed(rows)]

    def messages_around(self, conversation_id: str, n: int, *, before: int = 30, after: int = 30) -> list[Message]:
        """A window of messages around message ``n``: for jumping to a search hit."""
        older = self.db.execute(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ? AND n < ? ORDER BY n DESC LIMIT ?",
            [conversation_id, n, before],
        ).fetchall()
        newer = self.db.execute(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ? AND n >= ? ORDER BY n LIMIT ?",
            [conversation_id, n, after + 1],
        ).fetchall()
        return [_message(r) for r in reversed(older)] + [_message(r) for r in newer]

    def mark_streaming_interrupted(self) -> int:
        """Messages left 'streaming' by a crash become 'interrupted' (their text so far is kept)."""
        with atomic(self.db):
            cursor = self.db.execute(
                "UPDATE messages SET status = 'interrupted', updated_at = ? WHERE status = 'streaming'", [now()]
            )
        return cursor.rowcount

    # Search ------------------------------------------------------------------------

    def search(self, query: str, *, limit: int = 50) -> list[SearchHit]:
        """Full-text search over every message, best match first."""
        match = _fts_query(query)
        if not match:
            return []
        sql = f"""
            SELECT {", ".join("m." + c.strip() for c in _MESSAGE_COLUMNS.split(","))},
                   c.title AS conversation_title,
                   snippet(messages_fts, 0, char(2), char(3), '…', 12) AS snippet
            FROM messages_fts
            JOIN messages m ON m.n = messages_fts.rowid
            JOIN conversations c ON c.id = m.conversation_id
            WHERE messages_fts MATCH ?
            ORDER BY messages_fts.rank
            LIMIT ?
        """
        hits = []
        for row in self.db.query(sql, [match, limit]):
            hits.append(SearchHit(_message(row), row["conversation_title"], row["snippet"]))
        return hits


def _fts_query(text: str) -> str:
    """Turn what a person typed into a safe FTS5 query: every word must match, as a prefix."""
    words = re.findall(r"\w+", text, flags=re.UNICODE)
    return " ".join(f'"{w}"*' for w in words)
