"""Study records read back from the participant's database: the gate's intake, and "include earlier records".

``drain`` takes what the database noted in ``collect_queue`` (in the same transaction as each record; see
studyapp.store.collect_queue), builds each record from its source row, passes the batch through the
collector, and removes the handled rows in the same transaction that queues their events: a crash at any
point either leaves a row to be drained again at the next start, or has queued its event and removed it.

When the participant grants a category and chooses to include what was made before, ``backfill``
offers every existing record of that category to the collector again. The collector still decides
(consent in force, anonymization, review), and event ids are derived from the records, so a record
that was already queued or sent is not queued twice.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from sqlite_utils import Database

from studyapp.events import EVENT_KINDS
from studyapp.privacy.collect import CollectError, Collector, check_payload
from studyapp.store.collect_queue import CollectQueue, QueuedRecord
from studyapp.store.conversations import ConversationStore, Message
from studyapp.store.util import atomic

log = logging.getLogger(__name__)

# Messages still being written are not records yet.
FINISHED = ("complete", "interrupted", "error")
Record = tuple[str, dict[str, Any]]


def message_record(message: Message) -> Record:
    """A chat message as a ``message`` study record (category conversation_text)."""
    return ("message", {"conversation_id": message.conversation_id, "message_id": message.id,
                        "role": message.role, "content": message.content, "created_at": message.created_at,
                        "status": message.status})


def earlier_records(db: Database, categories: Iterable[str]) -> list[Record]:
    """Every record the participant's database holds in ``categories``, oldest first within each kind."""
    categories = set(categories)
    records: list[Record] = []
    if "conversation_text" in categories:
        conversations = ConversationStore(db)
        for conversation in sorted(conversations.list(), key=lambda c: c.created_at):
            records += [message_record(m) for m in conversations.messages(conversation.id)
                        if m.status in FINISHED and m.role != "system"]
    if categories & {"attributes", "attribute_labels"}:
        from studyapp.store.memory import MemoryStore

        memory = MemoryStore(db)
        for attribute in memory.list_attributes(include_deleted=True):
            if "attributes" in categories and (record := memory.attribute_record(attribute.id)) is not None:
                records.append(("attribute", record))
            if "attribute_labels" in categories:
                records += [("attribute_label", {"attribute_id": attribute.id, "label": label, "labeled_at": at})
                            for label, at in memory.labels(attribute.id)]
    if categories & {"ratings", "relevance_labels"}:
        from studyapp.store.comparisons import ComparisonStore

        comparisons = ComparisonStore(db)
        for comparison in comparisons.list(status="rated") + comparisons.list(status="skipped"):
            records += comparisons.rating_records(comparison.id)
            records += [("judge_verdict", v) for v in comparisons.verdict_events(comparison.id)]
    # Only the kinds of the categories asked for: a relevance label has no time of its own, so it must not
    # ride along with a ratings backfill into a category granted without earlier records.
    return [r for r in records if EVENT_KINDS[r[0]][0] in categories]


def backfill(collector: Collector, categories: Iterable[str]) -> int:
    """Offer the earlier records of ``categories`` to the collector; returns how many are queued."""
    records = earlier_records(collector.db, categories)
    if not records:
        return 0
    return sum(1 for event_id in collector.collect_many(records) if event_id is not None)


def build(db: Database, queued: QueuedRecord) -> list[Record]:
    """The study records a ``collect_queue`` row stands for; none if its source was deleted since."""
    if queued.payload is not None:
        return [(queued.kind, queued.payload)]
    if queued.kind == "message":
        message = ConversationStore(db).get_message(queued.source_id)
        return [message_record(message)] if message is not None else []
    if queued.kind == "attribute_label":
        from studyapp.store.memory import MemoryStore

        label = MemoryStore(db).label_record(queued.source_id)
        return [("attribute_label", label)] if label is not None else []
    if queued.kind == "comparison":
        from studyapp.store.comparisons import ComparisonStore

        comparisons = ComparisonStore(db)
        return comparisons.rating_records(queued.source_id) if comparisons.exists(queued.source_id) else []
    if queued.kind == "judge_verdict":
        from studyapp.store.comparisons import ComparisonStore

        verdict = ComparisonStore(db).verdict_event(queued.source_id)
        return [("judge_verdict", verdict)] if verdict is not None else []
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
