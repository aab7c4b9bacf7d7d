"""Checking one uploaded event against the shared contract (studyapp/events.py).

An event that fails is rejected with a reason naming the field and the problem; it never blocks the
other events of its batch. The server stores only the fields the contract names, so nothing
unexpected (e.g. a text field that was never anonymized) can slip in under another name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from studyapp.contract import MAX_KEY_LENGTH, MAX_TEXT_LENGTH, ContractError, check_fields, show

__all__ = ["MAX_KEY_LENGTH", "MAX_TEXT_LENGTH", "RECORD_KEYS", "CheckedEvent", "Rejected", "check_event", "show"]

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
    "selection": ("selection_id",),
    "turn_selection": ("selection_id",),
    "memory_view": ("view_id",),
    "question_answer": ("answer_id",),
}
# The participant-side time of an event, in order of preference, for "days active".
TIME_FIELDS = ("created_at", "labeled_at", "rated_at", "updated_at", "decided_at", "dismissed_at", "opened_at",
               "asked_at")

# The contract's error is the server's reason for refusing an event.
Rejected = ContractError


@dataclass(frozen=True)
class CheckedEvent:
    kind: str
    payload: dict[str, Any]
    record_key: str
    day: str | None


def _day(payload: dict[str, Any]) -> str | None:
    for name in TIME_FIELDS:
        value = payload.get(name)
        if isinstance(value, str) and len(value) >= 10 and value[4] == "-" and value[7] == "-":
            return value[:10]
    return None


def check_event(event_id: str, kind: str, payload: Any) -> CheckedEvent:
    """Validate one event; raises Rejected with the reason."""
    checked = check_fields(kind, payload)
    keys = RECORD_KEYS.get(kind)
    record_key = "\x1f".join(str(checked[k]) for k in keys) if keys else event_id
    return CheckedEvent(kind, checked, record_key, _day(checked))
