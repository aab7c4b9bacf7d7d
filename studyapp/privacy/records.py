"""Every study record's upload payload, built in this one module from the participant's own data.

Each function turns a domain object of the participant's database into ``(kind, payload)`` with exactly the
fields studyapp.events allows for the kind (the export contract): nothing else can ride along, and the free
text in it is anonymized by the gate (studyapp.privacy.collect) before it is queued. The consent record is
built here too, though it is queued by the consent log itself (studyapp.privacy.consent), never by the gate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from studyapp.events import CONTRACT_VERSION
from studyapp.personalize.select import NO_DECISION

if TYPE_CHECKING:
    from studyapp.domain import (
        Attribute,
        AttributeLabel,
        LabelDismissal,
        MemoryView,
        Message,
        ScheduleRecord,
        SelectionRecord,
    )
    from studyapp.store.comparisons import ComparisonRecord, JudgeVerdict, RelevanceLabel
    from studyapp.store.questions import QuestionAsk

Record = tuple[str, dict[str, Any]]


def _record(kind: str, payload: dict[str, Any]) -> Record:
    """Every record says which version of the contract it was written under (an export tells older apps' rows)."""
    return (kind, {**payload, "contract_version": CONTRACT_VERSION})


def message_record(message: Message) -> Record:
    """A chat message (category conversation_text); a comparison's kept answer says its arm and comparison."""
    return _record("message", {"conversation_id": message.conversation_id, "message_id": message.id,
                               "role": message.role, "content": message.content, "created_at": message.created_at,
                               "status": message.status, "arm": message.arm,
                               "comparison_id": message.comparison_id})


def attribute_record(a: Attribute) -> Record:
    """One version of an attribute (category attributes). The database's intake snapshots the same fields
    when an attribute changes (migration m005), so each version is sent as it was written."""
    return _record("attribute", {"attribute_id": a.id, "text": a.text, "reason": a.reason, "confidence": a.confidence,
                          "origin": a.origin, "status": a.status, "created_at": a.created_at,
                          "updated_at": a.updated_at})


def snapshot_record(kind: str, payload: dict[str, Any]) -> Record:
    """A record the database snapshotted when it was written (attributes: migration m005's trigger)."""
    return _record(kind, payload)


def attribute_label_record(label: AttributeLabel) -> Record:
    """A stage-1 label (category attribute_labels) with the attribute as it was when labeled (None for labels
    given before m007). The gate sends attribute_text only where the attributes category is consented too."""
    return _record("attribute_label", {"attribute_id": label.attribute_id, "label": label.label,
                                "labeled_at": label.labeled_at, "source": label.source,
                                "attribute_text": label.attribute_text, "confidence": label.confidence,
                                "age_s": label.age_s})


def dismissal_record(d: LabelDismissal) -> Record:
    """An attribute left unanswered in the label prompt (category attribute_labels; no text)."""
    return _record("label_dismissal", {"dismissal_id": d.id, "attribute_id": d.attribute_id,
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
    consent_version: str | None = None  # the consent in force when the comparison was created
    extractor_model: str | None = None  # the latest extraction run that worked before it
    extractor_template: str | None = None


def comparison_records(c: ComparisonRecord, labels: Sequence[RelevanceLabel],
                       context: ComparisonContext | None = None) -> list[Record]:
    """A comparison that ended (category ratings) and its relevance questions (category relevance_labels);
    none while it is still being generated or shown.

    ``state`` says what became of it; ``rating`` is the personalized arm's view, ``rating_shown`` the number
    pressed on the scale as shown."""
    if c.state is None:
        return []
    context = context or ComparisonContext()
    templates = c.templates if isinstance(c.templates, dict) else {}
    records: list[Record] = [_record("comparison", {
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
        "state": c.state,
        "ended_at": c.ended_at if c.rated_at is None else None,
        "consent_version": context.consent_version,
        "extractor_model": context.extractor_model,
        "extractor_template": context.extractor_template,
        "generic_template": templates.get("generic"),
        "personalized_template": templates.get("personalized"),
        "context_messages": len(c.context_message_ids) if c.context_message_ids is not None else None,
        "context_sha256": c.context_sha256,
    })]
    records += [relevance_record(label) for label in labels]
    return records


def relevance_record(label: RelevanceLabel) -> Record:
    """One relevance question of a comparison: the selector's side, the participant's answer and its status."""
    return _record("relevance_label", {
        "comparison_id": label.comparison_id, "attribute_id": label.attribute_id,
        "selected_by_model": label.selected_by_model, "model_relevant": label.model_relevant,
        "human_relevant": label.human_relevant, "relevance_status": label.status, "asked_when": label.asked_when,
        "ask_probability": label.ask_probability, "labeled_at": label.labeled_at})


def verdict_record(v: JudgeVerdict) -> Record:
    """A judge's verdict on one order of a pair (category ratings); an unreadable one is sent as such, no rating.

    verdict_id makes each order and each re-run an event of its own."""
    return _record("judge_verdict", {
        "comparison_id": v.comparison_id, "judge_model": v.judge_model, "personalized_side": v.personalized_side,
        "rating": v.rating, "verdict_id": v.id, "verdict_status": "ok" if v.rating is not None else "unreadable",
        "judge_template": v.template, "context_sha256": v.context_sha256, "context_chars": v.context_chars,
        "created_at": v.created_at})


def selection_records(selections: Sequence[SelectionRecord], *, comparison_turn: bool) -> list[Record]:
    """The selector's decision on every attribute for one request: with the relevance labels on a comparison
    turn (category relevance_labels), in the selections category on an ordinary one."""
    kind = "selection" if comparison_turn else "turn_selection"
    return [_record(kind, {"selection_id": s.id, "message_id": s.message_id,
                           "conversation_id": s.conversation_id, "attribute_id": s.attribute_id,
                           "selected": s.selected, "valid": _valid(s), "decided_at": s.created_at,
                           "rationale": s.rationale, "model": s.model, "template": s.template})
            for s in selections if s.conversation_id is not None]  # a deleted conversation's are gone


def _valid(s: SelectionRecord) -> bool:
    # Rows from before m008 did not store it; the selector wrote this rationale exactly when it had no decision.
    return s.valid if s.valid is not None else not s.rationale.startswith(NO_DECISION)


def memory_view_record(v: MemoryView) -> Record:
    """The participant looked at their memory (category ratings; no text)."""
    return _record("memory_view", {"view_id": v.id, "opened_at": v.opened_at, "closed_at": v.closed_at,
                                   "duration_s": v.duration_s, "screen": v.screen})


def schedule_record(d: ScheduleRecord) -> Record:
    """A turn the comparison schedule looked at (category ratings; no text)."""
    return _record("schedule_decision", {"decision_id": d.id, "conversation_id": d.conversation_id,
                                  "message_id": d.message_id, "decided_at": d.decided_at, "eligible": d.eligible,
                                  "draw": d.draw, "probability": d.probability, "outcome": d.outcome,
                                  "reason": d.reason, "memory_size": d.memory_size,
                                  "selected_count": d.selected_count})


def _local(stored: str | None, offset_min: int) -> str | None:
    """A stored UTC time in the participant's offset then (the record says their local time of day)."""
    if stored is None:
        return None
    moment = datetime.fromisoformat(stored)
    moment = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return moment.astimezone(timezone(timedelta(minutes=offset_min))).isoformat(timespec="microseconds")


def question_answer_record(ask: QuestionAsk) -> Record | None:
    """A question of the study's own put to the participant, once it closed (category question_answers): the
    answer, or that it was skipped or left unanswered; None while it is still open. Times in the participant's
    local offset; answer_text is free text, anonymized by the gate."""
    if ask.open:
        return None
    return _record("question_answer", {
        "answer_id": ask.id, "question_id": ask.question_id, "question_version": ask.question_version,
        "question_type": ask.question_type, "question_when": ask.question_when, "status": ask.status,
        "asked_at": _local(ask.asked_at, ask.utc_offset_min),
        "answered_at": _local(ask.answered_at, ask.utc_offset_min),
        "answer_number": ask.answer_number, "answer_option": ask.answer_option, "answer_text": ask.answer_text,
        "comparison_id": ask.comparison_id, "message_id": ask.message_id, "study_day": ask.study_day,
        "utc_offset_min": ask.utc_offset_min, "ask_probability": ask.ask_probability})


def consent_payload(*, version: str, sha256: str, categories: Sequence[str], action: str,
                    created_at: str) -> dict[str, Any]:
    """The ``consent`` event: always sent, so the study knows what was agreed to (the sha256 of the exact text)."""
    return {"consent_version": version, "consent_sha256": sha256, "categories": list(categories), "action": action,
            "created_at": created_at, "contract_version": CONTRACT_VERSION}
