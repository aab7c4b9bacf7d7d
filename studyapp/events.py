"""The records a study collects, as they travel from the outbox to the collection server.

Shared by the participant app (which makes events) and the server (which validates and stores them),
so both agree on kinds, categories and fields. Field names follow the export contract
(docs/ARCHITECTURE.md section 8); the server adds ``study_id`` and ``participant_id`` from the token,
so a participant can never write records for someone else.
"""

from __future__ import annotations

# Data categories a study can ask for (protocol [categories]); the participant consents per category.
CATEGORIES = ("ratings", "attribute_labels", "relevance_labels", "attributes", "conversation_text", "selections",
              "question_answers")
# How the consent screen names each category to the participant (the protocol's description follows it).
CATEGORY_TITLES = {
    "ratings": "Your ratings of answers",
    "attribute_labels": "Your judgements of what the assistant believes about you",
    "relevance_labels": "Whether an answer should have used what the assistant knows about you",
    "attributes": "What the assistant believes about you",
    "conversation_text": "Your conversations",
    "selections": "What the assistant chose to use for each request",
    "question_answers": "Your answers to the study's questions",
}

# The version of this contract an app writes its records under: every record carries it as contract_version,
# so an export tells the rows of older apps (empty contract_version) that lack the fields added since.
CONTRACT_VERSION = 2
# Entity types counted in replaced_entities (the anonymizer's placeholders; studyapp.privacy.anonymize).
REPLACED_FIELD = "replaced_entities"

SELECTION_FIELDS = ("selection_id", "message_id", "conversation_id", "attribute_id", "selected", "valid", "decided_at")

# kind -> (category that must be consented, required fields, optional fields). Optional fields are those
# older apps did not send; every kind also allows contract_version (and, where it has text, replaced_entities).
_EVENT_KINDS: dict[str, tuple[str | None, tuple[str, ...], tuple[str, ...]]] = {
    # The consent record itself is always sent: the study must know what was agreed to.
    "consent": (None, ("consent_version", "consent_sha256", "categories", "action", "created_at"), ()),
    # The answer a participant kept from a comparison continues the conversation: it is a message too, marked with
    # its arm and comparison (the other answer stays only in the comparison record).
    "message": (
        "conversation_text",
        ("conversation_id", "message_id", "role", "content", "created_at", "status"),
        ("arm", "comparison_id"),
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
    # Every comparison that was started, whatever became of it (state): rated, skipped, failed (an arm could not
    # be written), cancelled (the participant stopped it) or abandoned (the app closed before it was rated).
    # The fields after time_to_rate_ms (no text) let a comparison be analyzed without joins.
    "comparison": (
        "ratings",
        ("comparison_id", "conversation_id", "personalized_side", "model", "created_at", "skipped"),
        ("prompt", "generic_response", "personalized_response", "rating", "chosen", "rated_at",
         "comment", "parameters", "templates", "time_to_rate_ms",
         "prompt_message_id", "shown_at", "rating_shown", "memory_size", "selected_count", "selector_model",
         "selector_template", "protocol_version", "study_day", "utc_offset_min",
         "state", "ended_at", "consent_version", "extractor_model", "extractor_template", "generic_template",
         "personalized_template", "context_messages", "context_sha256"),
    ),
    # One per attribute sampled for "should this have shaped the answer?": relevance_status says what became of
    # the question, ask_probability the chance it was sampled (1 for selected attributes) to weight recall.
    "relevance_label": (
        "relevance_labels",
        ("comparison_id", "attribute_id", "selected_by_model", "model_relevant"),
        ("human_relevant", "relevance_status", "asked_when", "ask_probability", "labeled_at"),
    ),
    # verdict_id tells re-runs of the same judge and order apart. An answer the app could not read is sent too
    # (verdict_status unreadable, rating empty). context_sha256/context_chars: the conversation the judge saw.
    "judge_verdict": (
        "ratings",
        ("comparison_id", "judge_model", "personalized_side", "rating"),
        ("verdict_id", "verdict_status", "judge_template", "context_sha256", "context_chars", "created_at"),
    ),
    # Every participant turn the comparison schedule looked at (no text): which turns could have become
    # comparisons, and why they did or did not. Travels with the ratings it is the denominator of.
    "schedule_decision": (
        "ratings",
        ("decision_id", "conversation_id", "message_id", "decided_at", "eligible", "outcome", "memory_size"),
        ("draw", "probability", "reason", "selected_count"),
    ),
    # The selector's yes/no on one attribute for one request (stage 2). valid is false when the selector's answer
    # could not be read or said nothing about the attribute: then "not selected" is not the model's "no".
    # Comparison turns travel with the relevance labels they are compared against; ordinary turns only with
    # the selections category.
    "selection": ("relevance_labels", SELECTION_FIELDS, ("rationale", "model", "template")),
    "turn_selection": ("selections", SELECTION_FIELDS, ("rationale", "model", "template")),
    # The participant looked at what the assistant holds about them (seeing it can change later ratings).
    "memory_view": ("ratings", ("view_id", "opened_at", "duration_s"), ("closed_at", "screen")),
    # One per question of the study's own ([[questions]]) put to the participant: answered, skipped, or unanswered
    # (the app closed or the question's period ended first). asked_at carries the participant's local offset.
    "question_answer": (
        "question_answers",
        ("answer_id", "question_id", "question_version", "question_type", "question_when", "status", "asked_at"),
        ("answered_at", "answer_number", "answer_option", "answer_text", "comparison_id", "message_id",
         "study_day", "utc_offset_min", "ask_probability"),
    ),
}

# Fields holding free text written by or about the participant: anonymized on device before queueing.
TEXT_FIELDS: dict[str, tuple[str, ...]] = {
    "message": ("content",),
    "attribute": ("text", "reason"),
    "attribute_label": ("attribute_text",),
    "comparison": ("prompt", "generic_response", "personalized_response", "comment"),
    "selection": ("rationale",),
    "turn_selection": ("rationale",),
    "question_answer": ("answer_text",),
}

# Every kind allows contract_version; kinds with free text also count what anonymization replaced in it.
EVENT_KINDS: dict[str, tuple[str | None, tuple[str, ...], tuple[str, ...]]] = {
    kind: (category, required,
           optional + ("contract_version",) + ((REPLACED_FIELD,) if kind in TEXT_FIELDS else ()))
    for kind, (category, required, optional) in _EVENT_KINDS.items()
}

ATTRIBUTE_LABELS = ("makes_sense", "maybe", "doesnt_make_sense")
# Where a stage-1 label was given (or left for later): the study's label prompt (F4), or the memory screen.
LABEL_SOURCES = ("label_prompt", "memory_screen")
SIDES = ("left", "right")
# Why a turn did or did not become a comparison (studyapp.study.schedule decides; shared with the server).
SCHEDULE_OUTCOMES = ("memory_off", "no_comparisons", "daily_cap", "too_few_attributes", "too_soon", "draw_lost",
                     "comparison", "nothing_selected", "selection_failed", "cancelled")
ARMS = ("generic", "personalized")
# What became of a comparison that was started.
COMPARISON_STATES = ("rated", "skipped", "failed", "cancelled", "abandoned")
# What became of a relevance question: answered yes / no / not sure, or not answered (never shown because the
# participant skipped the rating, or left the questions with Esc).
RELEVANCE_STATUSES = ("yes", "no", "not_sure", "not_asked")
# When the relevance questions came, relative to the rating.
ASKED_WHEN = ("before_rating", "after_rating")
VERDICT_STATUSES = ("ok", "unreadable")
# A message's state when it was collected, and an attribute's (as the app's database allows them).
MESSAGE_STATUSES = ("complete", "streaming", "interrupted", "error")
ATTRIBUTE_STATUSES = ("active", "deleted")
# Who wrote an attribute: the extractor model, or the participant on the memory screen.
ATTRIBUTE_ORIGINS = ("model", "participant")
# Where the participant looked at their memory.
MEMORY_VIEW_SCREENS = ("memory_screen", "label_prompt")
# The study's own questions (studyapp.study.questions): their types, when they are asked, and what became of one
# put to the participant (unanswered: the app closed, or the question's period ended, before an answer or a skip).
QUESTION_TYPES = ("likert", "choice", "yes_no", "text")
QUESTION_WHEN = ("after_comparison", "after_turn", "daily", "weekly", "at_end")
QUESTION_STATUSES = ("answered", "skipped", "unanswered")


def category_of(kind: str) -> str | None:
    return EVENT_KINDS[kind][0]
