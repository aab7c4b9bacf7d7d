"""The records a study collects, as they travel from the outbox to the collection server.

Shared by the participant app (which makes events) and the server (which validates and stores them),
so both agree on kinds, categories and fields. Field names follow the export contract
(docs/ARCHITECTURE.md section 8); the server adds ``study_id`` and ``participant_id`` from the token,
so a participant can never write records for someone else.
"""

from __future__ import annotations

# Data categories a study can ask for (protocol [categories]); the participant consents per category.
CATEGORIES = ("ratings", "attribute_labels", "relevance_labels", "attributes", "conversation_text")

# kind -> (category that must be consented, required fields, optional fields)
EVENT_KINDS: dict[str, tuple[str | None, tuple[str, ...], tuple[str, ...]]] = {
    # The consent record itself is always sent: the study must know what was agreed to.
    "consent": (None, ("consent_version", "consent_sha256", "categories", "action", "created_at"), ()),
    "message": (
        "conversation_text",
        ("conversation_id", "message_id", "role", "content", "created_at", "status"),
        (),
    ),
    "attribute": (
        "attributes",
        ("attribute_id", "text", "reason", "confidence", "origin", "status", "created_at", "updated_at"),
        (),
    ),
    # What was labeled, as it was when labeled (the attribute may be edited later), and where. Optional: older
    # apps sent only the label. attribute_text goes only with the attributes category too (privacy/collect.py).
    "attribute_label": (
        "attribute_labels",
        ("attribute_id", "label", "labeled_at"),
        ("source", "attribute_text", "confidence", "age_s"),
    ),
    # The participant left the label prompt ("Later") with the attribute on screen unanswered: without it, an
    # unlabeled attribute could not be told apart from one never shown.
    "label_dismissal": ("attribute_labels", ("attribute_id", "dismissed_at", "dismissal_id"), ("source",)),
    # The fields after time_to_rate_ms (no text) let a comparison be analyzed without joins: the prompt's id, when
    # both arms were shown, the number pressed as shown (rating is the personalized arm's view), the memory and
    # selection at the time, the selector, the protocol version, the study day and the local UTC offset.
    # Optional: older apps did not send them.
    "comparison": (
        "ratings",
        ("comparison_id", "conversation_id", "personalized_side", "model", "created_at", "skipped"),
        ("prompt", "generic_response", "personalized_response", "rating", "chosen", "rated_at",
         "comment", "parameters", "templates", "time_to_rate_ms",
         "prompt_message_id", "shown_at", "rating_shown", "memory_size", "selected_count", "selector_model",
         "selector_template", "protocol_version", "study_day", "utc_offset_min"),
    ),
    "relevance_label": (
        "relevance_labels",
        ("comparison_id", "attribute_id", "selected_by_model", "model_relevant"),
        ("human_relevant",),
    ),
    # verdict_id (optional: older apps did not send it) tells re-runs of the same judge and order apart.
    "judge_verdict": ("ratings", ("comparison_id", "judge_model", "personalized_side", "rating"), ("verdict_id",)),
    # Every participant turn the comparison schedule looked at (no text): which turns could have become
    # comparisons, and why they did or did not. Travels with the ratings it is the denominator of.
    "schedule_decision": (
        "ratings",
        ("decision_id", "conversation_id", "message_id", "decided_at", "eligible", "outcome", "memory_size"),
        ("draw", "probability", "reason", "selected_count"),
    ),
}

# Fields holding free text written by or about the participant: anonymized on device before queueing.
TEXT_FIELDS: dict[str, tuple[str, ...]] = {
    "message": ("content",),
    "attribute": ("text", "reason"),
    "attribute_label": ("attribute_text",),
    "comparison": ("prompt", "generic_response", "personalized_response", "comment"),
}

ATTRIBUTE_LABELS = ("makes_sense", "maybe", "doesnt_make_sense")
# Where a stage-1 label was given (or left for later): the study's label prompt (F4), or the memory screen.
LABEL_SOURCES = ("label_prompt", "memory_screen")
SIDES = ("left", "right")
# Why a turn did or did not become a comparison (studyapp.study.schedule decides; shared with the server).
SCHEDULE_OUTCOMES = ("memory_off", "no_comparisons", "daily_cap", "too_few_attributes", "too_soon", "draw_lost",
                     "comparison", "nothing_selected", "selection_failed")
ARMS = ("generic", "personalized")


def category_of(kind: str) -> str | None:
    return EVENT_KINDS[kind][0]
