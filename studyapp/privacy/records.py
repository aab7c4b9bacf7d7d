"""Study records read back from the participant's database, for "include earlier records".

When the participant grants a category and chooses to include what was made before, ``backfill``
offers every existing record of that category to the collector again. The collector still decides
(consent in force, anonymization, review), and event ids are derived from the records, so a record
that was already queued or sent is not queued twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlite_utils import Database

from studyapp.events import EVENT_KINDS
from studyapp.privacy.collect import Collector
from studyapp.store.conversations import ConversationStore, Message

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
