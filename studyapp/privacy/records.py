"""Every study record's upload payload, built in this one module from the participant's own data.

Each function turns a domain object of the participant's database into ``(kind, payload)`` with exactly the
fields studyapp.events allows for the kind (the export contract): nothing else can ride along, and the free
text in it is anonymized by the gate (studyapp.privacy.collect) before it is queued. The consent record is
built here too, though it is queued by the consent log itself (studyapp.privacy.consent), never by the gate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from studyapp.domain import Attribute, AttributeLabel, LabelDismissal, Message, ScheduleRecord
    from studyapp.store.comparisons import ComparisonRecord, JudgeVerdict, RelevanceLabel

Record = tuple[str, dict[str, Any]]


def message_record(message: Message) -> Record:
    """A chat message (category conversation_text)."""
    return ("message", {"conversation_id": message.conversation_id, "message_id": message.id,
                        "role": message.role, "content": message.content, "created_at": message.created_at,
                        "status": message.status})


def attribute_record(a: Attribute) -> Record:
    """One version of an attribute (category attributes). The database's intake snapshots the same fields
    when an attribute changes (migration m005), so each version is sent as it was written."""
    return ("attribute", {"attribute_id": a.id, "text": a.text, "reason": a.reason, "confidence": a.confidence,
                          "origin": a.origin, "status": a.status, "created_at": a.created_at,
                          "updated_at": a.updated_at})


def attribute_label_record(label: AttributeLabel) -> Record:
    """A stage-1 label (category attribute_labels) with the attribute as it was when labeled (None for labels
    given before m007). The gate sends attribute_text only where the attributes category is consented too."""
    return ("attribute_label", {"attribute_id": label.attribute_id, "label": label.label,
                                "labeled_at": label.labeled_at, "source": label.source,
                                "attribute_text": label.attribute_text, "confidence": label.confidence,
                                "age_s": label.age_s})


def dismissal_record(d: LabelDismissal) -> Record:
    """An attribute left unanswered in the label prompt (category attribute_labels; no text)."""
    return ("label_dismissal", {"dismissal_id": d.id, "attribute_id": d.attribute_id,
                                "dismissed_at": d.dismissed_at, "source": d.source})


@dataclass(frozen=True)
class ComparisonContext:
    """What the participant's database knew around a comparison (privacy.intake reads it); None where unknown."""

    memory_size: int | None = None  # active attributes when the schedule decided (its schedule_decisions row)
    selected_count: int | None = None  # attributes the selector chose for the prompt
    selector_model: str | None = None  # the selector's model and template (its selections rows)
    selector_template: str | None = None
    protocol_version: str | None = None  # the enrolled study's protocol version
    study_day: int | None = None  # 1 on the day of enrollment, by the participant's local calendar
    utc_offset_min: int | None = None  # the participant's local UTC offset when the comparison was created


def comparison_records(c: ComparisonRecord, labels: Sequence[RelevanceLabel],
                       context: ComparisonContext | None = None) -> list[Record]:
    """A rated or skipped comparison (category ratings) and its relevance labels (category relevance_labels).

    ``rating`` is the personalized arm's view; ``rating_shown`` the number pressed on the scale as shown."""
    context = context or ComparisonContext()
    records: list[Record] = [("comparison", {
        "comparison_id": c.id,
        "conversation_id": c.conversation_id,
        "prompt": c.prompt,
        "generic_response": c.generic_response,
        "personalized_response": c.personalized_response,
        "personalized_side": c.personalized_side,
        "model": c.model or "",
        "created_at": c.created_at,
        "rating": c.rating,
        "chosen": c.chosen,
        "rated_at": c.rated_at,
        "skipped": c.skipped,
        "comment": c.comment,
        "parameters": c.parameters,
        "templates": c.templates,
        "time_to_rate_ms": c.time_to_rate_ms,
        "prompt_message_id": c.prompt_message_id,
        "shown_at": c.shown_at,
        "rating_shown": c.shown_choice,
        "memory_size": context.memory_size,
        "selected_count": context.selected_count,
        "selector_model": context.selector_model,
        "selector_template": context.selector_template,
        "protocol_version": context.protocol_version,
        "study_day": context.study_day,
        "utc_offset_min": context.utc_offset_min,
    })]
    records += [("relevance_label", {"comparison_id": label.comparison_id, "attribute_id": label.attribute_id,
                                     "selected_by_model": label.selected_by_model,
                                     "model_relevant": label.model_relevant, "human_relevant": label.human_relevant})
                for label in labels]
    return records


def verdict_record(v: JudgeVerdict) -> Record | None:
    """A judge's verdict on one order of a pair (category ratings); None for an unreadable one (no rating).

    verdict_id makes each order and each re-run an event of its own."""
    if v.rating is None:
        return None
    return ("judge_verdict", {"comparison_id": v.comparison_id, "judge_model": v.judge_model,
                              "personalized_side": v.personalized_side, "rating": v.rating, "verdict_id": v.id})


def schedule_record(d: ScheduleRecord) -> Record:
    """A turn the comparison schedule looked at (category ratings; no text)."""
    return ("schedule_decision", {"decision_id": d.id, "conversation_id": d.conversation_id,
                                  "message_id": d.message_id, "decided_at": d.decided_at, "eligible": d.eligible,
                                  "draw": d.draw, "probability": d.probability, "outcome": d.outcome,
                                  "reason": d.reason, "memory_size": d.memory_size,
                                  "selected_count": d.selected_count})


def consent_payload(*, version: str, sha256: str, categories: Sequence[str], action: str,
                    created_at: str) -> dict[str, Any]:
    """The ``consent`` event: always sent, so the study knows what was agreed to (the sha256 of the exact text)."""
    return {"consent_version": version, "consent_sha256": sha256, "categories": list(categories), "action": action,
            "created_at": created_at}
