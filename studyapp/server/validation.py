"""Checking one uploaded event against the shared contract (studyapp/events.py).

An event that fails is rejected with a reason naming the field and the problem; it never blocks the
other events of its batch. The server stores only the fields the contract names, so nothing
unexpected (e.g. a text field that was never anonymized) can slip in under another name.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from studyapp.events import ARMS, ATTRIBUTE_LABELS, EVENT_KINDS, LABEL_SOURCES, SCHEDULE_OUTCOMES, SIDES

MAX_KEY_LENGTH = 200
MAX_TEXT_LENGTH = 1_000_000

# Which fields name the record an event describes: a later event for the same record replaces the
# earlier one in the export (an attribute that was edited, a comparison that was rated after it was shown).
# Kinds not listed keep every event (consent records, attribute labels over time).
RECORD_KEYS: dict[str, tuple[str, ...]] = {
    "message": ("message_id",),
    "attribute": ("attribute_id",),
    "comparison": ("comparison_id",),
    "relevance_label": ("comparison_id", "attribute_id"),
    # A judge rates each pair in both orders: one record per order.
    "judge_verdict": ("comparison_id", "judge_model", "personalized_side"),
    "schedule_decision": ("decision_id",),
    "label_dismissal": ("dismissal_id",),
}
ID_FIELDS = frozenset({"conversation_id", "message_id", "attribute_id", "comparison_id", "verdict_id",
                       "decision_id", "dismissal_id", "prompt_message_id"})
BOOL_FIELDS = frozenset({"skipped", "selected_by_model", "model_relevant", "eligible"})
COUNT_FIELDS = frozenset({"memory_size", "selected_count", "study_day"})
# Ratings on the 1..5 scale: rating from the personalized arm's view, rating_shown the number pressed as shown.
RATING_FIELDS = frozenset({"rating", "rating_shown"})
# Times that must read as ISO-8601 (fields added since the server checks them; older ones are kept as text).
ISO_TIME_FIELDS = frozenset({"shown_at"})
# Minutes east of UTC, as far as time zones go (UTC-14:00 .. UTC+14:00).
MAX_UTC_OFFSET_MIN = 14 * 60
NULLABLE_BOOL_FIELDS = frozenset({"human_relevant"})
NUMBER_FIELDS = frozenset({"confidence", "time_to_rate_ms", "draw", "probability", "age_s"})
# Numbers that cannot be negative (an age is counted from the attribute's creation).
NON_NEGATIVE_FIELDS = frozenset({"age_s"})
JSON_FIELDS = frozenset({"parameters", "templates"})
CHOICES: dict[str, tuple[str, ...]] = {
    "label": ATTRIBUTE_LABELS,
    "personalized_side": SIDES,
    "chosen": ARMS,
    "role": ("system", "user", "assistant"),
    "action": ("grant", "update", "withdraw"),
    "outcome": SCHEDULE_OUTCOMES,
    "source": LABEL_SOURCES,
}
# The participant-side time of an event, in order of preference, for "days active".
TIME_FIELDS = ("created_at", "labeled_at", "rated_at", "updated_at", "decided_at", "dismissed_at")


class Rejected(ValueError):
    """The event breaks the contract; the message is the reason sent back to the participant's app."""


@dataclass(frozen=True)
class CheckedEvent:
    kind: str
    payload: dict[str, Any]
    record_key: str
    day: str | None


def show(value: Any, limit: int = 60) -> str:
    """A short, ASCII-only rendering of untrusted input for error messages."""
    try:
        text = json.dumps(value, ensure_ascii=True)
    except (TypeError, ValueError):
        text = ascii(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_iso_time(value: Any) -> bool:
    if not isinstance(value, str) or len(value) > 64:
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def _bool(name: str, value: Any) -> bool:
    # SQLite stores booleans as 0/1, so accept those too.
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise Rejected(f"field '{name}' must be true or false, got {show(value)}")


def _check_field(kind: str, name: str, value: Any) -> Any:
    if name in ID_FIELDS:
        if not isinstance(value, str) or not value or len(value) > MAX_KEY_LENGTH:
            raise Rejected(f"field '{name}' must be a non-empty id of at most {MAX_KEY_LENGTH} characters")
        return value
    if value is None:
        if name in BOOL_FIELDS:
            raise Rejected(f"field '{name}' must be true or false, got null")
        return None
    if name in BOOL_FIELDS or name in NULLABLE_BOOL_FIELDS:
        return _bool(name, value)
    if name in NUMBER_FIELDS:
        if not _is_number(value):
            raise Rejected(f"field '{name}' must be a number, got {show(value)}")
        if name == "confidence" and not 0 <= value <= 1:
            raise Rejected(f"field 'confidence' must be between 0 and 1, got {show(value)}")
        if name in NON_NEGATIVE_FIELDS and value < 0:
            raise Rejected(f"field '{name}' must be 0 or more, got {show(value)}")
        return float(value)
    if name in COUNT_FIELDS:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise Rejected(f"field '{name}' must be a whole number of 0 or more, got {show(value)}")
        return value
    if name in RATING_FIELDS:
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 5:
            raise Rejected(f"field '{name}' must be an integer from 1 to 5 (or null), got {show(value)}")
        return value
    if name == "utc_offset_min":
        if (isinstance(value, bool) or not isinstance(value, int)
                or not -MAX_UTC_OFFSET_MIN <= value <= MAX_UTC_OFFSET_MIN):
            raise Rejected(f"field 'utc_offset_min' must be a whole number of minutes from {-MAX_UTC_OFFSET_MIN} "
                           f"to {MAX_UTC_OFFSET_MIN}, got {show(value)}")
        return value
    if name in ISO_TIME_FIELDS:
        if not _is_iso_time(value):
            raise Rejected(f"field '{name}' must be an ISO-8601 time, got {show(value)}")
        return value
    if name == "categories":
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                raise Rejected("field 'categories' must be a list of category names") from None
        if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
            raise Rejected("field 'categories' must be a list of category names")
        return value
    if name in JSON_FIELDS:
        if isinstance(value, dict | list):
            return value
        if isinstance(value, str):
            return value
        raise Rejected(f"field '{name}' must be an object or text, got {show(value)}")
    if not isinstance(value, str):
        raise Rejected(f"field '{name}' must be text, got {show(value)}")
    if len(value) > MAX_TEXT_LENGTH:
        raise Rejected(f"field '{name}' is longer than {MAX_TEXT_LENGTH} characters")
    if name in CHOICES and value not in CHOICES[name]:
        allowed = ", ".join(CHOICES[name])
        raise Rejected(f"field '{name}' must be one of {allowed}; got {show(value)}")
    return value


def _day(payload: dict[str, Any]) -> str | None:
    for name in TIME_FIELDS:
        value = payload.get(name)
        if isinstance(value, str) and len(value) >= 10 and value[4] == "-" and value[7] == "-":
            return value[:10]
    return None


def check_event(event_id: str, kind: str, payload: Any) -> CheckedEvent:
    """Validate one event; raises Rejected with the reason."""
    if kind not in EVENT_KINDS:
        known = ", ".join(sorted(EVENT_KINDS))
        raise Rejected(f"unknown kind {show(kind)}; the server accepts: {known}")
    if not isinstance(payload, dict):
        raise Rejected("payload must be a JSON object")
    _, required, optional = EVENT_KINDS[kind]
    missing = [f for f in required if f not in payload]
    if missing:
        raise Rejected(f"kind '{kind}' is missing required field(s): {', '.join(missing)}")
    unknown = [f for f in payload if f not in required and f not in optional]
    if unknown:
        names = ", ".join(show(f, 40) for f in unknown[:5])
        raise Rejected(f"kind '{kind}' does not allow field(s) {names}; the server stores only the contract's fields")
    checked = {name: _check_field(kind, name, value) for name, value in payload.items()}
    keys = RECORD_KEYS.get(kind)
    record_key = "\x1f".join(str(checked[k]) for k in keys) if keys else event_id
    return CheckedEvent(kind, checked, record_key, _day(checked))
