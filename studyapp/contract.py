"""The values each field of a study record may hold: one check, run on the device before a record is queued
and again by the collection server when it arrives.

``check_fields(kind, payload)`` returns the payload with its values normalized (0/1 as booleans, whole
numbers as floats where a number is expected) or raises ``ContractError`` naming the field, what it holds and
what is allowed. The participant's app checks with ``require_offset=True``: every time it writes carries its
UTC offset. The server accepts times without one from older apps.
"""

from __future__ import annotations

import json
import math
import re
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from studyapp.events import (
    ARMS,
    ASKED_WHEN,
    ATTRIBUTE_LABELS,
    ATTRIBUTE_ORIGINS,
    ATTRIBUTE_STATUSES,
    COMPARISON_STATES,
    EVENT_KINDS,
    LABEL_SOURCES,
    MEMORY_VIEW_SCREENS,
    MESSAGE_STATUSES,
    QUESTION_STATUSES,
    QUESTION_TYPES,
    QUESTION_WHEN,
    RELEVANCE_STATUSES,
    REPLACED_FIELD,
    SCHEDULE_OUTCOMES,
    SIDES,
    VERDICT_STATUSES,
)

MAX_KEY_LENGTH = 200
MAX_TEXT_LENGTH = 1_000_000
MAX_ENTITY_TYPES = 64

ID_FIELDS = frozenset({"conversation_id", "message_id", "attribute_id", "comparison_id", "verdict_id",
                       "decision_id", "dismissal_id", "prompt_message_id", "selection_id", "view_id",
                       "answer_id"})
BOOL_FIELDS = frozenset({"skipped", "selected_by_model", "model_relevant", "eligible", "selected", "valid"})
NULLABLE_BOOL_FIELDS = frozenset({"human_relevant"})
# Whole numbers of 0 or more.
COUNT_FIELDS = frozenset({"memory_size", "selected_count", "study_day", "context_messages", "context_chars",
                          "contract_version", "answer_number"})
# Ratings on the 1..5 scale: rating from the personalized arm's view, rating_shown the number pressed as shown.
RATING_FIELDS = frozenset({"rating", "rating_shown"})
NUMBER_FIELDS = frozenset({"confidence", "time_to_rate_ms", "draw", "probability", "age_s", "ask_probability",
                           "duration_s"})
NON_NEGATIVE_FIELDS = frozenset({"age_s", "duration_s", "time_to_rate_ms"})
# Numbers that are shares (0..1); ask_probability is never 0 for a question that was sampled.
SHARE_FIELDS = frozenset({"confidence", "probability", "ask_probability"})
TIME_FIELDS = frozenset({"created_at", "updated_at", "labeled_at", "rated_at", "shown_at", "decided_at",
                         "dismissed_at", "ended_at", "opened_at", "closed_at", "asked_at", "answered_at"})
SHA256_FIELDS = frozenset({"context_sha256"})
JSON_FIELDS = frozenset({"parameters", "templates"})
# Minutes east of UTC, as far as time zones go (UTC-14:00 .. UTC+14:00).
MAX_UTC_OFFSET_MIN = 14 * 60
CHOICES: dict[str, tuple[str, ...]] = {
    "label": ATTRIBUTE_LABELS,
    "personalized_side": SIDES,
    "chosen": ARMS,
    "arm": ARMS,
    "role": ("system", "user", "assistant"),
    "action": ("grant", "update", "withdraw"),
    "outcome": SCHEDULE_OUTCOMES,
    "source": LABEL_SOURCES,
    "state": COMPARISON_STATES,
    "relevance_status": RELEVANCE_STATUSES,
    "asked_when": ASKED_WHEN,
    "verdict_status": VERDICT_STATUSES,
    "screen": MEMORY_VIEW_SCREENS,
    "question_type": QUESTION_TYPES,
    "question_when": QUESTION_WHEN,
}
# Fields whose allowed values depend on the kind of record (a message's status is not an attribute's).
KIND_CHOICES: dict[tuple[str, str], tuple[str, ...]] = {
    ("message", "status"): MESSAGE_STATUSES,
    ("attribute", "status"): ATTRIBUTE_STATUSES,
    ("attribute", "origin"): ATTRIBUTE_ORIGINS,
    ("question_answer", "status"): QUESTION_STATUSES,
}
# How far ahead of the checker's clock a time may lie: a participant's clock set a few hours wrong is not an
# error, a record dated next week is (it would count as days active that never were).
FUTURE_SKEW = timedelta(days=1)
# No study record is older than this: a time before it is a device clock that was reset (a flat clock battery
# starts at 1970) or a made-up value (year 0001), and it would count as a day active that never was.
EARLIEST_TIME = datetime(2000, 1, 1, tzinfo=UTC)
_SHA256 = re.compile(r"[0-9a-f]{64}")
# A time starts with its calendar date (what every app writes): fromisoformat also reads week dates (2026-W48-1)
# and compact forms, whose first ten characters are no date, and the server counts days active by them.
_CALENDAR_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}(?:[T ]|$)")


class ContractError(ValueError):
    """A record breaks the contract; the message names the field and what is allowed."""


def show(value: Any, limit: int = 60) -> str:
    """A short, ASCII-only rendering of untrusted input for error messages."""
    try:
        text = json.dumps(value, ensure_ascii=True)
    except (TypeError, ValueError):
        text = ascii(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _time(name: str, value: Any, require_offset: bool, latest: datetime | None = None) -> str:
    """``latest``: the latest time accepted (the checker's clock plus FUTURE_SKEW), read now if not given."""
    if isinstance(value, str) and len(value) <= 64 and _CALENDAR_DATE.match(value):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            parsed = None
        if parsed is not None and (parsed.tzinfo is not None or not require_offset):
            # Older apps wrote times without an offset, in UTC.
            aware = parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
            if aware > (latest if latest is not None else datetime.now(UTC) + FUTURE_SKEW):
                raise ContractError(f"field '{name}' lies in the future ({show(value)}): check the device's clock")
            if aware < EARLIEST_TIME:
                raise ContractError(f"field '{name}' lies before 2000-01-01 ({show(value)}): check the device's "
                                    "clock and date")
            return value
    wanted = "an ISO-8601 time with its UTC offset" if require_offset else "an ISO-8601 time"
    raise ContractError(f"field '{name}' must be {wanted} (e.g. 2026-11-29T15:20:00+00:00), got {show(value)}")


def _bool(name: str, value: Any) -> bool:
    # SQLite stores booleans as 0/1, so accept those too.
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise ContractError(f"field '{name}' must be true or false, got {show(value)}")


def _replaced(value: Any) -> dict[str, int]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            value = None
    if (not isinstance(value, dict) or len(value) > MAX_ENTITY_TYPES
            or not all(isinstance(k, str) and 0 < len(k) <= 64 and _is_count(v) for k, v in value.items())):
        raise ContractError(f"field '{REPLACED_FIELD}' must be an object of entity type -> count (at most "
                            f"{MAX_ENTITY_TYPES} types), got {show(value)}")
    return value


def _unicode(name: str, value: Any) -> None:
    """Text must be Unicode that encodes as UTF-8: JSON may carry a lone surrogate (\\ud800), which no UTF-8 file
    (CSV, Parquet) can hold, so one such record would stop every export of the study."""
    if isinstance(value, str):
        if value.isascii():
            return
        text = value
    elif isinstance(value, dict | list):
        try:
            text = json.dumps(value, ensure_ascii=False)
        except (TypeError, ValueError):
            return  # not JSON at all: the field's own check names the problem
    else:
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ContractError(f"field '{name}' holds a lone surrogate (e.g. \\ud800), which is not Unicode text; "
                            "send the text as valid UTF-8") from None


def check_field(name: str, value: Any, *, require_offset: bool = False, optional: bool = False) -> Any:
    """One field's value, normalized; raises ContractError. An ``optional`` id may be null (e.g. the comparison
    of a message that is not a comparison's answer); a required one never."""
    _unicode(name, value)
    if name in ID_FIELDS:
        if value is None and optional:
            return None
        if not isinstance(value, str) or not value or len(value) > MAX_KEY_LENGTH:
            raise ContractError(f"field '{name}' must be a non-empty id of at most {MAX_KEY_LENGTH} characters")
        if not value.isprintable():
            # A control character (NUL above all) in a key: PostgreSQL cannot store it, and no app makes one.
            raise ContractError(f"field '{name}' holds a control character; an id is printable text")
        return value
    if value is None:
        if name in BOOL_FIELDS:
            raise ContractError(f"field '{name}' must be true or false, got null")
        return None
    if name in BOOL_FIELDS or name in NULLABLE_BOOL_FIELDS:
        return _bool(name, value)
    if name in NUMBER_FIELDS:
        if not _is_number(value):
            raise ContractError(f"field '{name}' must be a number, got {show(value)}")
        if name in SHARE_FIELDS and not 0 <= value <= 1:
            raise ContractError(f"field '{name}' must be between 0 and 1, got {show(value)}")
        if name == "ask_probability" and value == 0:
            raise ContractError("field 'ask_probability' must be more than 0: a question asked had a chance")
        if name in NON_NEGATIVE_FIELDS and value < 0:
            raise ContractError(f"field '{name}' must be 0 or more, got {show(value)}")
        return float(value)
    if name in COUNT_FIELDS:
        if not _is_count(value):
            raise ContractError(f"field '{name}' must be a whole number of 0 or more, got {show(value)}")
        return value
    if name in RATING_FIELDS:
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 5:
            raise ContractError(f"field '{name}' must be an integer from 1 to 5 (or null), got {show(value)}")
        return value
    if name == "utc_offset_min":
        if (isinstance(value, bool) or not isinstance(value, int)
                or not -MAX_UTC_OFFSET_MIN <= value <= MAX_UTC_OFFSET_MIN):
            raise ContractError(f"field 'utc_offset_min' must be a whole number of minutes from "
                                f"{-MAX_UTC_OFFSET_MIN} to {MAX_UTC_OFFSET_MIN}, got {show(value)}")
        return value
    if name in TIME_FIELDS:
        return _time(name, value, require_offset)
    if name in SHA256_FIELDS:
        if not isinstance(value, str) or not _SHA256.fullmatch(value):
            raise ContractError(f"field '{name}' must be a sha256 in lowercase hex (64 characters), got {show(value)}")
        return value
    if name == REPLACED_FIELD:
        return _replaced(value)
    if name == "categories":
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                raise ContractError("field 'categories' must be a list of category names") from None
        if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
            raise ContractError("field 'categories' must be a list of category names")
        return value
    if name in JSON_FIELDS:
        if isinstance(value, dict | list | str):
            return value
        raise ContractError(f"field '{name}' must be an object or text, got {show(value)}")
    if not isinstance(value, str):
        raise ContractError(f"field '{name}' must be text, got {show(value)}")
    if len(value) > MAX_TEXT_LENGTH:
        raise ContractError(f"field '{name}' is longer than {MAX_TEXT_LENGTH} characters")
    if name in CHOICES and value not in CHOICES[name]:
        raise ContractError(f"field '{name}' must be one of {', '.join(CHOICES[name])}; got {show(value)}")
    return value


# How check_field treats each field, decided once: the common values (ASCII text in an id, text, choice, time or
# sha256 field; true or false; a whole number or a float in range; null where allowed) are then checked without
# walking check_field's chain of tests, which dominates ingest on the server. Anything else goes to check_field.
(_ID, _TEXT, _CHOICE, _TIME, _SHA256_HEX, _BOOL, _NULLABLE_BOOL, _NUMBER, _COUNT, _RATING, _UTC_OFFSET,
 _OTHER) = range(12)
# The values of a closed set, as a set: one hash lookup instead of a scan of the tuple.
_CHOICE_SETS = {name: frozenset(allowed) for name, allowed in CHOICES.items()}
# The range a float of a number field may take: finite bounds, so that inf and nan fall outside.
_LARGEST = sys.float_info.max
_NUMBER_RANGE = {name: (0.0, 1.0) if name in SHARE_FIELDS else (0.0, _LARGEST) if name in NON_NEGATIVE_FIELDS
                 else (-_LARGEST, _LARGEST) for name in NUMBER_FIELDS}


def _field_class(name: str) -> int:
    # In check_field's order of tests: a name in two sets is treated as check_field treats it.
    if name in ID_FIELDS:
        return _ID
    if name in BOOL_FIELDS:
        return _BOOL
    if name in NULLABLE_BOOL_FIELDS:
        return _NULLABLE_BOOL
    if name in NUMBER_FIELDS:
        # ask_probability's own rule (more than 0) is left to check_field.
        return _OTHER if name == "ask_probability" else _NUMBER
    if name in COUNT_FIELDS:
        return _COUNT
    if name in RATING_FIELDS:
        return _RATING
    if name == "utc_offset_min":
        return _UTC_OFFSET
    if name in TIME_FIELDS:
        return _TIME
    if name in SHA256_FIELDS:
        return _SHA256_HEX
    if name == REPLACED_FIELD or name == "categories" or name in JSON_FIELDS:
        return _OTHER
    return _CHOICE if name in CHOICES else _TEXT


class _KindPlan:
    """What check_fields needs of one kind, worked out once at import."""

    __slots__ = ("classes", "fields", "kind_choices", "required", "required_set")

    def __init__(self, kind: str, required: tuple[str, ...], optional: tuple[str, ...]) -> None:
        self.required = required
        self.required_set = frozenset(required)
        self.fields = frozenset((*required, *optional))
        self.classes = {name: _field_class(name) for name in (*required, *optional)}
        self.kind_choices = [(name, allowed) for (of, name), allowed in KIND_CHOICES.items() if of == kind]


_PLANS = {kind: _KindPlan(kind, required, optional) for kind, (_, required, optional) in EVENT_KINDS.items()}


def check_fields(kind: str, payload: Any, *, require_offset: bool = False,
                 now: datetime | None = None) -> dict[str, Any]:
    """The payload of a ``kind`` record with every value checked; raises ContractError. ``now``: the clock that
    times are checked against (the server reads it once per upload); the current time if not given."""
    plan = _PLANS.get(kind)
    if plan is None:
        raise ContractError(f"unknown kind {show(kind)}; known kinds: {', '.join(sorted(EVENT_KINDS))}")
    if not isinstance(payload, dict):
        raise ContractError("payload must be a JSON object")
    keys = payload.keys()
    # Set comparisons in C; the lists of what is wrong are made only for a message.
    if not keys >= plan.required_set:
        missing = [f for f in plan.required if f not in payload]
        raise ContractError(f"kind '{kind}' is missing required field(s): {', '.join(missing)}")
    fields = plan.fields
    if not keys <= fields:
        unknown = [f for f in payload if f not in fields]
        names = ", ".join(show(f, 40) for f in unknown[:5])
        raise ContractError(f"kind '{kind}' does not allow field(s) {names}; only the contract's fields are stored")
    classes = plan.classes
    latest = None
    checked: dict[str, Any] = {}
    for name, value in payload.items():
        # check_field's answer for the common values, found in a test or two.
        cls = classes[name]
        of = type(value)
        if of is str:
            if value.isascii():
                if cls == _TEXT:
                    if len(value) <= MAX_TEXT_LENGTH:
                        checked[name] = value
                        continue
                elif cls == _ID:
                    if value and len(value) <= MAX_KEY_LENGTH and value.isprintable():
                        checked[name] = value
                        continue
                elif cls == _TIME:
                    if latest is None:
                        latest = (now if now is not None else datetime.now(UTC)) + FUTURE_SKEW
                    checked[name] = _time(name, value, require_offset, latest)
                    continue
                elif cls == _CHOICE:
                    if value in _CHOICE_SETS[name]:
                        checked[name] = value
                        continue
                elif cls == _SHA256_HEX:
                    if _SHA256.fullmatch(value):
                        checked[name] = value
                        continue
        elif of is bool:
            if cls == _BOOL or cls == _NULLABLE_BOOL:
                checked[name] = value
                continue
        elif value is None:
            # Null stands for "not given" in every field but an id (allowed only where optional) and a true/false.
            if cls != _ID and cls != _BOOL:
                checked[name] = None
                continue
        elif of is float:
            if cls == _NUMBER:
                low, high = _NUMBER_RANGE[name]
                if low <= value <= high:
                    checked[name] = value
                    continue
        elif of is int:
            if cls == _COUNT:
                if value >= 0:
                    checked[name] = value
                    continue
            elif cls == _RATING:
                if 1 <= value <= 5:
                    checked[name] = value
                    continue
            elif cls == _UTC_OFFSET:
                if -MAX_UTC_OFFSET_MIN <= value <= MAX_UTC_OFFSET_MIN:
                    checked[name] = value
                    continue
        checked[name] = check_field(name, value, require_offset=require_offset, optional=name not in plan.required_set)
    for name, allowed in plan.kind_choices:
        if checked.get(name) is not None and checked[name] not in allowed:
            raise ContractError(f"field '{name}' of a {kind} must be one of {', '.join(allowed)}; "
                                f"got {show(checked[name])}")
    return checked
