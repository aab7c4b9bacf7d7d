"""replaced_entities: every record with free text says which entity types anonymization replaced in it, and how
often, so analysts can account for changed text; never the replaced values themselves."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from studyapp.privacy.anonymize import Anonymizer
from studyapp.privacy.collect import Collector, check_payload
from studyapp.privacy.consent import ConsentService
from studyapp.privacy.review import ReviewService
from studyapp.store.conversations import ConversationStore
from studyapp.store.db import open_database
from studyapp.store.outbox import OutboxEvent, OutboxStore
from studyapp.store.util import new_id, now
from tests.privacy.conftest import make_protocol
from tests.privacy.test_collect import message
from tests.privacy.test_intake import pump_and_sync
from tests.server.live import LiveServer, live, sqlite_server_db  # noqa: F401
from tests.support.keyring import MemoryKeyring, memory_keyring  # noqa: F401
from tests.sync.helpers import enroll_and_consent

IDENTIFIED = "Hi, I'm Maria Lopez: write to maria.lopez@example.org or call +1 415-555-0132 tonight."
RAW_VALUES = ("Maria", "Lopez", "maria.lopez@example.org", "415-555-0132")
TYPE_OF_PLACEHOLDER = re.compile(r"<([A-Z][A-Z_]*)_\d+>")


def placeholders(*texts: str | None) -> dict[str, int]:
    """How many placeholders of each entity type the texts hold (read independently of the anonymizer)."""
    return dict(Counter(m.group(1) for t in texts if t for m in TYPE_OF_PLACEHOLDER.finditer(t)))


def collector_for(db: Database, consent: ConsentService, anonymizer: Anonymizer,
                  review: bool = False) -> Collector:
    protocol = make_protocol(review_uploads=review)
    consent.grant(protocol, ["ratings", "conversation_text", "attributes", "attribute_labels"])
    return Collector(db, protocol, anonymizer, consent)


def queued(db: Database, event_id: str | None) -> OutboxEvent:
    assert event_id is not None, "the record was refused by the gate"
    event = OutboxStore(db).get(event_id)
    assert event is not None
    return event


def comparison(prompt: str, generic: str, personalized: str, comment: str | None) -> dict[str, Any]:
    return {"comparison_id": new_id(), "conversation_id": "c1", "personalized_side": "left", "model": "m",
            "created_at": now(), "skipped": False, "prompt": prompt, "generic_response": generic,
            "personalized_response": personalized, "comment": comment, "rating": 4, "rated_at": now()}


def test_a_message_lists_the_types_it_replaced_with_counts_matching_its_placeholders(
        db: Database, consent: ConsentService, anonymizer: Anonymizer) -> None:
    event = queued(db, collector_for(db, consent, anonymizer).collect("message", message(IDENTIFIED)))
    content = event.payload["content"]
    assert event.payload["replaced_entities"] == {"PERSON": 1, "EMAIL_ADDRESS": 1, "PHONE_NUMBER": 1}
    assert event.payload["replaced_entities"] == placeholders(content)
    check_payload("message", event.payload)
    # Types and counts only: none of the replaced values is anywhere in the record.
    sent = json.dumps(event.payload)
    assert [raw for raw in RAW_VALUES if raw in sent] == []


def test_a_record_with_nothing_to_replace_says_so_with_an_empty_object(
        db: Database, consent: ConsentService, anonymizer: Anonymizer) -> None:
    collector = collector_for(db, consent, anonymizer)
    event = queued(db, collector.collect("message", message("a recipe for soup please")))
    assert event.payload["replaced_entities"] == {}
    check_payload("message", event.payload)
    # A kind without free text has nothing to count and no such field (the contract does not allow it).
    verdict = queued(db, collector.collect("judge_verdict", {"comparison_id": "k1", "judge_model": "local",
                                                             "personalized_side": "left", "rating": 4}))
    assert "replaced_entities" not in verdict.payload


def test_a_value_from_the_app_is_overwritten_by_the_gates_own_count(
        db: Database, consent: ConsentService, anonymizer: Anonymizer) -> None:
    collector = collector_for(db, consent, anonymizer)
    offered = message("a recipe for soup please") | {"replaced_entities": {"PERSON": 7}}
    event = queued(db, collector.collect("message", offered))
    assert event.payload["replaced_entities"] == {}


def test_a_comparisons_counts_sum_over_its_text_fields(db: Database, consent: ConsentService,
                                                       anonymizer: Anonymizer) -> None:
    collector = collector_for(db, consent, anonymizer)  # before the record: one made earlier is not collected
    record = comparison(prompt="What should I cook for Maria Lopez?",
                        generic="Pasta is a safe choice; mail maria.lopez@example.org for her diet.",
                        personalized="Call +1 415-555-0132 and ask what she likes.",
                        comment="Maria Lopez will love it")
    event = queued(db, collector.collect("comparison", record))
    texts = [event.payload[f] for f in ("prompt", "generic_response", "personalized_response", "comment")]
    assert event.payload["replaced_entities"] == {"PERSON": 2, "EMAIL_ADDRESS": 1, "PHONE_NUMBER": 1}
    assert event.payload["replaced_entities"] == placeholders(*texts)
    check_payload("comparison", event.payload)

    # A comparison with nothing to replace (and no comment) still says it was checked.
    bare = queued(db, collector.collect("comparison", comparison("Hello there", "Hi!", "Hi, good to see you.", None)))
    assert bare.payload["replaced_entities"] == {}


def test_counts_in_a_batch_stay_with_their_own_record(db: Database, consent: ConsentService,
                                                      anonymizer: Anonymizer) -> None:
    collector = collector_for(db, consent, anonymizer)
    ts = now()
    attribute = {"attribute_id": new_id(), "text": "Friend of Maria Lopez", "reason": "Said so on 12/03/1987",
                 "confidence": 0.8, "origin": "model", "status": "active", "created_at": ts, "updated_at": ts}
    ids = collector.collect_many(
        [("message", message("soup again")), ("attribute", attribute), ("message", message(IDENTIFIED))])
    first, attr, last = (queued(db, i) for i in ids)
    assert first.payload["replaced_entities"] == {}
    assert attr.payload["replaced_entities"] == {"PERSON": 1, "DATE_TIME": 1}
    assert attr.payload["replaced_entities"] == placeholders(attr.payload["text"], attr.payload["reason"])
    assert last.payload["replaced_entities"] == placeholders(last.payload["content"])
    for event in (first, attr, last):
        check_payload(event.kind, event.payload)


def test_a_rescrub_adds_what_the_new_term_replaced(db: Database, consent: ConsentService,
                                                   anonymizer: Anonymizer) -> None:
    collector = collector_for(db, consent, anonymizer, review=True)
    event_id = collector.collect("message", message("I had lunch with Maria Lopez. Brightwave and brightwave, "
                                                    "call +1 415-555-0132"))
    assert queued(db, event_id).payload["replaced_entities"] == {"PERSON": 1, "PHONE_NUMBER": 1}
    review = ReviewService(db, collector.protocol, anonymizer)

    assert review.add_term("Brightwave") == 1
    event = queued(db, event_id)
    assert event.payload["content"].count("<TERM_1>") == 2
    assert event.payload["replaced_entities"] == {"PERSON": 1, "PHONE_NUMBER": 1, "TERM": 2}
    assert event.payload["replaced_entities"] == placeholders(event.payload["content"])
    check_payload("message", event.payload)
    # Nothing new to replace: nothing changes, the counts are not added twice.
    assert review.rescrub() == 0
    assert queued(db, event_id).payload["replaced_entities"] == {"PERSON": 1, "PHONE_NUMBER": 1, "TERM": 2}


def test_a_term_with_a_known_name_counts_under_the_placeholder_it_gets(anonymizer: Anonymizer) -> None:
    assert anonymizer.anonymize_batch_counted(["Maria Lopez called"])[0].replaced == {"PERSON": 1}
    anonymizer.add_term("Maria Lopez")
    # The term reuses the person's placeholder (pseudonyms stay consistent), so it is counted as what the text shows.
    result = anonymizer.apply_terms_counted("Maria Lopez called again")
    assert result.text == "<PERSON_1> called again"
    assert result.replaced == {"PERSON": 1}


def test_a_rescrub_leaves_an_older_apps_payload_without_counts(db: Database, consent: ConsentService,
                                                                anonymizer: Anonymizer) -> None:
    protocol = make_protocol()
    consent.grant(protocol, ["ratings", "conversation_text"])
    # Queued before this version: its earlier replacements are unknown, so the terms alone are not counted.
    old = message("<PERSON_1> works at Brightwave")
    event_id = OutboxStore(db).add(study_id=protocol.id, kind="message", category="conversation_text", payload=old,
                                   consent_version="1", approved=True)
    assert ReviewService(db, protocol, anonymizer).add_term("Brightwave") == 1
    payload = queued(db, event_id).payload
    assert payload["content"] == "<PERSON_1> works at <TERM_1>"
    assert "replaced_entities" not in payload


async def test_the_counts_reach_the_exports_replaced_entities_column(live: LiveServer, tmp_path: Path,
                                                                     memory_keyring: MemoryKeyring) -> None:
    import pyarrow.parquet as pq

    from studyapp.server.export import export

    path = tmp_path / "studyapp.db"
    db = open_database(path)
    await enroll_and_consent(db, live)
    conversations = ConversationStore(db)
    conversation = conversations.create()
    identified = conversations.add_message(conversation.id, "user", IDENTIFIED)
    plain = conversations.add_message(conversation.id, "user", "a recipe for soup please")
    await pump_and_sync(db, path)
    assert live.storage.count_records("message") == 2

    export(live.storage, tmp_path / "out", "parquet", researcher="test")
    rows = {r["message_id"]: r for r in pq.read_table(tmp_path / "out" / "messages.parquet").to_pylist()}
    assert json.loads(rows[identified.id]["replaced_entities"]) == {"PERSON": 1, "EMAIL_ADDRESS": 1,
                                                                    "PHONE_NUMBER": 1}
    assert json.loads(rows[identified.id]["replaced_entities"]) == placeholders(rows[identified.id]["content"])
    # "Checked, nothing replaced" is an empty object, not an empty cell (which means an older app).
    assert rows[plain.id]["replaced_entities"] == "{}"
