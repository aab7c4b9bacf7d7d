"""Include earlier records: existing records offered again, queued once, only with the participant's say-so."""

from __future__ import annotations

from sqlite_utils import Database

from studyapp.privacy.anonymize import Anonymizer
from studyapp.privacy.collect import Collector, event_id_for
from studyapp.privacy.consent import ConsentService
from studyapp.privacy.intake import backfill, earlier_records
from studyapp.privacy.records import message_record
from studyapp.store.conversations import ConversationStore
from studyapp.store.outbox import OutboxStore
from tests.privacy.conftest import make_protocol


def test_backfill_needs_include_earlier_and_queues_each_record_once(db: Database, consent: ConsentService,
                                                                    anonymizer: Anonymizer) -> None:
    conversations = ConversationStore(db)
    chat = conversations.create("Lunch")
    conversations.add_message(chat.id, "user", "I had lunch with Maria Lopez")
    conversations.add_message(chat.id, "assistant", "That sounds nice!")
    conversations.add_message(chat.id, "assistant", "Still typi", status="streaming")
    protocol = make_protocol()
    consent.grant(protocol, ["ratings"])
    collector = Collector(db, protocol, anonymizer, consent)
    records = earlier_records(db, ["conversation_text"])
    assert [p["role"] for _, p in records] == ["user", "assistant"]  # the unfinished reply is not a record yet

    consent.change_categories(protocol, ["ratings", "conversation_text"])
    assert backfill(collector, ["conversation_text"]) == 0  # granted now: earlier messages stay out
    assert [e.kind for e in OutboxStore(db).list()] == ["consent", "consent"]

    consent.change_categories(protocol, ["ratings", "conversation_text"], include_earlier=["conversation_text"])
    assert backfill(collector, ["conversation_text"]) == 2
    assert backfill(collector, ["conversation_text"]) == 2  # offered again: the same events, not new ones
    messages = [e for e in OutboxStore(db).list() if e.kind == "message"]
    assert len(messages) == 2
    assert messages[0].payload["content"] == "I had lunch with <PERSON_1>"
    assert {e.event_id for e in messages} == {event_id_for(*r) for r in records}


def test_event_ids_follow_the_record() -> None:
    payload = {"attribute_id": "a1", "text": "t", "reason": "r", "confidence": 0.5, "origin": "model",
               "status": "active", "created_at": "2026-01-01", "updated_at": "2026-01-02"}
    assert event_id_for("attribute", payload) == event_id_for("attribute", dict(payload))
    assert event_id_for("attribute", payload) != event_id_for("attribute", payload | {"updated_at": "2026-01-03"})
    assert event_id_for("consent", {}) != event_id_for("consent", {})  # no key: random


def test_message_record_has_exactly_the_event_fields(db: Database) -> None:
    from studyapp.privacy.collect import check_payload

    conversations = ConversationStore(db)
    chat = conversations.create()
    kind, payload = message_record(conversations.add_message(chat.id, "user", "hello"))
    check_payload(kind, payload)


def test_after_consent_backfills_only_what_was_included(db: Database) -> None:
    from studyapp.privacy.services import PrivacyServices

    conversations = ConversationStore(db)
    chat = conversations.create()
    conversations.add_message(chat.id, "user", "an old message")
    protocol = make_protocol()
    services = PrivacyServices.create(db, protocol)
    assert services.after_consent(services.consent.grant(protocol, ["ratings", "conversation_text"])) == 0
    record = services.consent.change_categories(protocol, ["ratings", "conversation_text"], include_earlier=True)
    assert services.after_consent(record) == 1
