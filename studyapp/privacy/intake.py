"""Study records on their way into the gate: the database's intake drained, and "include earlier records".

``drain`` takes what the database noted in ``collect_queue`` (in the same transaction as each record; see
studyapp.store.collect_queue), builds each record from its source row (studyapp.privacy.records), passes the
batch through the collector, and removes the handled rows in the same transaction that queues their events: a
crash at any point either leaves a row to be drained again at the next start, or has queued its event and
removed it.

When the participant grants a category and chooses to include what was made before, ``backfill`` offers every
existing record of that category to the collector again. The collector still decides (consent in force,
anonymization, review), and event ids are derived from the records, so a record that was already queued or
sent is not queued twice.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime, tzinfo

from sqlite_utils import Database

from studyapp.domain import ExtractionRun, ScheduleRecord
from studyapp.events import EVENT_KINDS
from studyapp.privacy.collect import CollectError, Collector, check_payload
from studyapp.privacy.records import (
    ComparisonContext,
    Record,
    attribute_label_record,
    attribute_record,
    comparison_records,
    dismissal_record,
    memory_view_record,
    message_record,
    question_answer_record,
    schedule_record,
    selection_records,
    snapshot_record,
    verdict_record,
)
from studyapp.store.collect_queue import CollectQueue, QueuedRecord
from studyapp.store.comparisons import ComparisonRecord, ComparisonStore
from studyapp.store.consent import ConsentStore
from studyapp.store.conversations import ConversationStore
from studyapp.store.memory import MemoryStore
from studyapp.store.questions import QuestionStore
from studyapp.store.schedule import ScheduleStore
from studyapp.store.studies import StudyStore
from studyapp.store.util import atomic
from studyapp.study.schedule import study_day

log = logging.getLogger(__name__)

# Messages still being written are not records yet.
FINISHED = ("complete", "interrupted", "error")


def _utc(value: str) -> datetime:
    """A stored time (UTC ISO-8601; a naive one is taken as UTC, like studyapp.study.schedule does)."""
    dt = datetime.fromisoformat(value)
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


def comparison_context(db: Database, c: ComparisonRecord, *, tz: tzinfo | None = None) -> ComparisonContext:
    """What the participant's own database knew around comparison ``c`` (None where it holds nothing).

    The schedule's decision and the selector's rows are those of the prompt message; the study day counts from
    the enrollment by the participant's calendar in ``tz`` (default: this machine's local time zone), whose UTC
    offset at the comparison's creation is sent too. A comparison made before the enrollment has no study day.
    """
    decision = ScheduleStore(db).for_message(c.prompt_message_id)
    selections = MemoryStore(db).selections(c.prompt_message_id)
    selector = selections[-1] if selections else None  # the latest selection run for the prompt
    created = _utc(c.created_at)
    offset = created.astimezone(tz).utcoffset()
    study = StudyStore(db).current()
    protocol = (study.protocol.get("study") or {}) if study is not None else {}
    day = None
    if study is not None and _utc(study.enrolled_at) <= created:
        day, _ = study_day(study.enrolled_at, created, int(protocol.get("duration_days") or 0), tz=tz)
    version = protocol.get("version")
    consent = _consent_at(db, study.id, c.created_at) if study is not None else None
    extraction = _extraction_before(db, c.created_at)
    return ComparisonContext(
        memory_size=decision.memory_size if decision is not None else None,
        selected_count=decision.selected_count if decision is not None else None,
        selector_model=selector.model if selector is not None else None,
        selector_template=selector.template if selector is not None else None,
        protocol_version=str(version) if version is not None else None,
        study_day=day,
        utc_offset_min=round(offset.total_seconds() / 60) if offset is not None else None,
        consent_version=consent,
        extractor_model=extraction.model if extraction is not None else None,
        extractor_template=extraction.template if extraction is not None else None,
    )


def _consent_at(db: Database, study_id: str, at: str) -> str | None:
    """The version of the consent in force at ``at`` (None if none was, or it had been withdrawn)."""
    version = None
    for event in ConsentStore(db).events(study_id):
        if _utc(event["created_at"]) > _utc(at):
            break
        version = None if event["action"] == "withdraw" else event["document_version"]
    return version


def _extraction_before(db: Database, at: str) -> ExtractionRun | None:
    """The latest extraction run that worked before ``at``: the extractor behind the memory then."""
    runs = [r for r in MemoryStore(db).runs() if r.status == "ok" and _utc(r.created_at) <= _utc(at)]
    return max(runs, key=lambda r: _utc(r.created_at)) if runs else None


def _decision_records(db: Database, decision: ScheduleRecord) -> list[Record]:
    """A turn's schedule decision and the selector's decisions on it (its kind tells a comparison turn)."""
    selections = MemoryStore(db).selections(decision.message_id)
    return [schedule_record(decision),
            *selection_records(selections, comparison_turn=decision.outcome == "comparison")]


def build(db: Database, queued: QueuedRecord) -> list[Record]:
    """The study records a ``collect_queue`` row stands for; none if its source was deleted since."""
    if queued.payload is not None:
        return [snapshot_record(queued.kind, queued.payload)]  # taken when it was written (attributes)
    if queued.kind == "message":
        message = ConversationStore(db).get_message(queued.source_id)
        return [message_record(message)] if message is not None else []
    if queued.kind == "attribute_label":
        label = MemoryStore(db).get_label(queued.source_id)
        return [attribute_label_record(label)] if label is not None else []
    if queued.kind == "label_dismissal":
        dismissal = MemoryStore(db).get_dismissal(queued.source_id)
        return [dismissal_record(dismissal)] if dismissal is not None else []
    if queued.kind == "comparison":
        comparisons = ComparisonStore(db)
        if not comparisons.exists(queued.source_id):
            return []
        comparison = comparisons.get(queued.source_id)
        return comparison_records(comparison, comparisons.relevance_labels(comparison.id),
                                  comparison_context(db, comparison))
    if queued.kind == "judge_verdict":
        verdict = ComparisonStore(db).get_verdict(queued.source_id)
        return [verdict_record(verdict)] if verdict is not None else []
    if queued.kind == "schedule_decision":
        decision = ScheduleStore(db).get(queued.source_id)
        return _decision_records(db, decision) if decision is not None else []
    if queued.kind == "memory_view":
        view = MemoryStore(db).get_view(queued.source_id)
        return [memory_view_record(view)] if view is not None else []
    if queued.kind == "question_answer":
        ask = QuestionStore(db).get(queued.source_id)
        record = question_answer_record(ask) if ask is not None else None
        return [record] if record is not None else []
    raise ValueError(f"collect_queue holds an unknown record kind {queued.kind!r}")


def drain(collector: Collector, *, batch: int = 100) -> tuple[int, int]:
    """Pass everything waiting in ``collect_queue`` through the gate; returns (queued, refused).

    Raises ``AnonymizationFailed`` (the rows stay for the next drain) if the anonymizer fails.
    """
    intake = CollectQueue(collector.db)
    queued = refused = 0
    while rows := intake.take(batch):
        records: list[Record] = []
        for row in rows:
            for record in build(collector.db, row):
                try:
                    check_payload(*record)
                except CollectError:
                    # A record this version cannot describe would block the intake forever: it stays only
                    # in the participant's database, and the log says so (without its content).
                    log.exception("a %s record in the intake is malformed; it is not collected", record[0])
                    refused += 1
                    continue
                records.append(record)
        prepared = collector.prepare(records)
        with atomic(collector.db):
            ids = collector.queue(prepared)
            intake.remove([row.n for row in rows])
        queued += sum(1 for i in ids if i is not None)
        refused += sum(1 for i in ids if i is None)
    return queued, refused


def earlier_records(db: Database, categories: Iterable[str]) -> list[Record]:
    """Every record the participant's database holds in ``categories``, oldest first within each kind."""
    categories = set(categories)
    records: list[Record] = []
    if "conversation_text" in categories:
        conversations = ConversationStore(db)
        for conversation in sorted(conversations.list(), key=lambda c: c.created_at):
            records += [message_record(m) for m in conversations.messages(conversation.id)
                        if m.status in FINISHED and m.role != "system"]  # arms only if kept
    if categories & {"attributes", "attribute_labels"}:
        memory = MemoryStore(db)
        for attribute in memory.list_attributes(include_deleted=True):
            if "attributes" in categories:
                records.append(attribute_record(attribute))
            if "attribute_labels" in categories:
                records += [attribute_label_record(label) for label in memory.labels(attribute.id)]
                records += [dismissal_record(d) for d in memory.dismissals(attribute.id)]
    if categories & {"ratings", "relevance_labels", "selections"}:
        comparisons = ComparisonStore(db)
        for comparison in comparisons.list():
            if comparison.state is None:
                continue  # still on screen: it becomes a record when it ends
            records += comparison_records(comparison, comparisons.relevance_labels(comparison.id),
                                          comparison_context(db, comparison))
            records += [verdict_record(v) for v in comparisons.verdicts(comparison.id)]
        for decision in ScheduleStore(db).list():
            records += _decision_records(db, decision)
        if "ratings" in categories:
            records += [memory_view_record(v) for v in MemoryStore(db).views()]
    if "question_answers" in categories:
        records += [r for ask in QuestionStore(db).list() if (r := question_answer_record(ask)) is not None]
    # Only the kinds of the categories asked for: a relevance label or selection must not ride along with a
    # ratings backfill into a category granted without earlier records.
    return [r for r in records if EVENT_KINDS[r[0]][0] in categories]


def backfill(collector: Collector, categories: Iterable[str]) -> int:
    """Offer the earlier records of ``categories`` to the collector; returns how many are queued."""
    records = earlier_records(collector.db, categories)
    if not records:
        return 0
    return sum(1 for event_id in collector.collect_many(records) if event_id is not None)
