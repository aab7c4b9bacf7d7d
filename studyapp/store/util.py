"""Small helpers shared by the store modules."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any


def new_id() -> str:
    """A random id: never derived from a person."""
    return str(uuid.uuid4())


def now() -> str:
    """UTC ISO-8601 with microseconds, so ordering by the string orders by time."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def loads(text: str | None, default: Any = None) -> Any:
    if text is None:
        return default
    return json.loads(text)
