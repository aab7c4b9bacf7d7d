"""The participant's own export: every conversation with every message, as plain data."""

from __future__ import annotations

from typing import Any

from sqlite_utils import Database

from studyapp import __version__
from studyapp.store.util import now


def export_conversations(db: Database) -> dict[str, Any]:
    conversations = []
    for conv in db.query("SELECT * FROM conversations ORDER BY created_at"):
        messages = list(
            db.query(
                "SELECT id, role, content, status, error, model, arm, comparison_id, in_thread, created_at, "
                "updated_at FROM messages WHERE conversation_id = ? ORDER BY n",
                [conv["id"]],
            )
        )
        for m in messages:
            m["in_thread"] = bool(m["in_thread"])
        conversations.append(
            {
                "id": conv["id"],
                "title": conv["title"],
                "created_at": conv["created_at"],
                "updated_at": conv["updated_at"],
                "memory_enabled": bool(conv["memory_enabled"]),
                "messages": messages,
            }
        )
    return {"exported_at": now(), "studyapp_version": __version__, "conversations": conversations}
