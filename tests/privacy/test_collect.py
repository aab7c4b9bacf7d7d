"""The collector: the one gate into the outbox."""

from __future__ import annotations

import pytest
from sqlite_utils import Database

from studyapp.privacy.anonymize import Anonymizer
from studyapp.privacy.collect import CollectError, Collector
from studyapp.privacy.consent import ConsentService
from studyapp.store.outbox import OutboxStore
from studyapp.store.util import new_id, now
from tests.privacy.conftest import make_protocol

RAW = "Hi, I'm Maria Lopez (maria.lopez@example.org), I live at 42 Elm Street."


def message(content: str = RAW, created_at: str | None = None, conversation_id: str = "c1") -> dict:
    return {"conversation_id": conversation_id, "message_id": new_id(), "role": "user", "content": content,
            "created_at": created_at or now(), "status": "complete"}


def attribute(text: str, reason: str) -> dict:
    ts = now()
    return {"attribute_id": new_id(), "text": text, "reason": reason, "confidence": 0.8, "origin": "model",
            "status": "active", "created_at": ts, "updated_at": ts}


def test_nothing_is_collected_before_consent(db: Database, consent: ConsentService, anonymizer: Anonymizer) -> None:
    collector = Collector(db, make_protocol(), anonymizer, consent)
    assert collector.collect("message", message()) is None
    assert "agree to the consent" in (collector.last_skip or "")
    assert OutboxStore(db).list() == []


def test_consented_text_is_anonymized_before_it_is_queued(db: Database, consent: ConsentService,
                                                          anonymizer: Anonymizer) -> None:
    protocol = make_protocol()
    consent.grant(protocol, ["ratings", "conversation_text", "attributes"])
    collector = Collector(db, protocol, anonymizer, consent)
    event_id = collector.collect("message", message())
    assert event_id is not None
    event = OutboxStore(db).get(event_id)
    assert event is not None
    assert event.status == "approved" and event.consent_version == "1" and event.category == "conversation_text"
    content = event.payload["content"]
    for raw in ("Maria", "Lopez", "maria.lopez@example.org", "Elm Street"):
        assert raw not in content
    assert "<PERSON_1>" in content and "<EMAIL_ADDRESS_1>" in content
    # Attributes and their reasons go through the same scrubber with the same placeholders.
    attr_id = collector.collect("attribute", attribute("Friend of Maria Lopez", "Said Maria Lopez is a friend"))
    attr = OutboxStore(db).get(attr_id)  # type: ignore[arg-type]
    assert attr is not None
    assert attr.payload["text"] == "Friend of <PERSON_1>"
    assert attr.payload["reason"] == "Said <PERSON_1> is a friend"


def test_a_category_not_consented_is_not_queued(db: Database, consent: ConsentService,
                                                anonymizer: Anonymizer) -> None:
    protocol = make_protocol()
    consent.grant(protocol, ["ratings"])
    collector = Collector(db, protocol, anonymizer, consent)
    assert collector.collect("message", message()) is None
    assert collector.last_skip == "message: category 'conversation_text' is not consented"
    label = {"attribute_id": "a1", "label": "maybe", "labeled_at": now()}
    assert collector.collect("attribute_label", label) is None
    verdict = {"comparison_id": "k1", "judge_model": "local", "personalized_side": "left", "rating": 4}
    assert collector.collect("judge_verdict", verdict) is not None
    assert {e.kind for e in OutboxStore(db).list()} == {"consent", "judge_verdict"}


def test_review_studies_queue_events_pending(db: Database, consent: ConsentService, anonymizer: Anonymizer) -> None:
    protocol = make_protocol(review_uploads=True)
    consent.grant(protocol, ["ratings", "conversation_text"])
    event_id = Collector(db, protocol, anonymizer, consent).collect("message", message())
    outbox = OutboxStore(db)
    assert outbox.get(event_id).status == "pending"  # type: ignore[arg-type, union-attr]
    assert event_id not in [e.event_id for e in outbox.ready("s1", 100)]


def test_malformed_records_are_refused_with_the_field_named(db: Database, consent: ConsentService,
                                                            anonymizer: Anonymizer) -> None:
    protocol = make_protocol()
    consent.grant(protocol, ["ratings", "conversation_text"])
    collector = Collector(db, protocol, anonymizer, consent)
    with pytest.raises(CollectError, match="unknown fields notes"):
        collector.collect("message", message() | {"notes": "Maria Lopez's private notes"})
    with pytest.raises(CollectError, match="needs content"):
        collector.collect("message", {k: v for k, v in message().items() if k != "content"})
    with pytest.raises(CollectError, match="Unknown event kind 'diary'"):
        collector.collect("diary", {})
    assert [e.kind for e in OutboxStore(db).list()] == ["consent"]


def test_study_requiring_ner_queues_nothing_without_it(db: Database, consent: ConsentService) -> None:
    protocol = make_protocol(require_ner=True)
    consent.grant(protocol, ["ratings", "conversation_text"])
    patterns_only = Anonymizer(db, model_name="en_core_web_missing_model")
    collector = Collector(db, protocol, patterns_only, consent)
    status = collector.status()
    assert not status.can_queue and "requires name recognition (NER)" in status.message
    assert collector.collect("message", message()) is None
    assert [e.kind for e in OutboxStore(db).list()] == ["consent"]
    # The same study with a working NER collects.
    assert Collector(db, protocol, Anonymizer(db), consent).collect("message", message()) is not None


def test_new_consent_document_stops_collection_until_agreed(db: Database, consent: ConsentService,
                                                            anonymizer: Anonymizer) -> None:
    consent.grant(make_protocol(), ["ratings", "conversation_text"])
    updated = make_protocol(version="2", consent_version="2", consent_text="New terms.\n")
    collector = Collector(db, updated, anonymizer, consent)
    assert collector.collect("message", message()) is None
    assert "new consent document" in (collector.last_skip or "")
    consent.grant(updated, ["ratings", "conversation_text"])
    event_id = collector.collect("message", message())
    assert OutboxStore(db).get(event_id).consent_version == "2"  # type: ignore[arg-type, union-attr]


def test_records_older_than_a_grant_need_include_earlier(db: Database, consent: ConsentService,
                                                         anonymizer: Anonymizer) -> None:
    protocol = make_protocol()
    consent.grant(protocol, ["ratings"])
    old = message("An old message about Maria Lopez", created_at=now())
    consent.change_categories(protocol, ["ratings", "conversation_text"])
    collector = Collector(db, protocol, anonymizer, consent)
    assert collector.collect("message", old) is None
    assert "made before 'conversation_text' was granted" in (collector.last_skip or "")
    assert collector.collect("message", message("A new message")) is not None
    consent.change_categories(protocol, ["ratings", "conversation_text"], include_earlier=True)
    event_id = collector.collect("message", old)
    assert event_id is not None
    assert OutboxStore(db).get(event_id).payload["content"] == "An old message about <PERSON_1>"  # type: ignore[union-attr]


def test_collect_many_anonymizes_in_one_batch_and_skips_per_record(db: Database, consent: ConsentService,
                                                                   anonymizer: Anonymizer) -> None:
    protocol = make_protocol()
    consent.grant(protocol, ["ratings", "conversation_text"])
    label = {"attribute_id": "a1", "label": "maybe", "labeled_at": now()}
    ids = Collector(db, protocol, anonymizer, consent).collect_many(
        [("message", message("Maria Lopez")), ("attribute_label", label), ("message", message("Paris, 1987"))])
    assert ids[0] is not None and ids[1] is None and ids[2] is not None
    outbox = OutboxStore(db)
    assert outbox.get(ids[0]).payload["content"] == "<PERSON_1>"  # type: ignore[arg-type, union-attr]
    assert outbox.get(ids[2]).payload["content"] == "<LOCATION_1>, <DATE_TIME_1>"  # type: ignore[arg-type, union-attr]


def test_failing_anonymizer_queues_nothing(db: Database, consent: ConsentService, anonymizer: Anonymizer,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    protocol = make_protocol()
    consent.grant(protocol, ["ratings", "conversation_text"])

    def broken(texts: list[str]) -> list[str]:
        raise RuntimeError("model crashed")

    monkeypatch.setattr(anonymizer, "anonymize_batch_counted", broken)
    collector = Collector(db, protocol, anonymizer, consent)
    assert collector.collect("message", message()) is None
    assert "anonymization failed (model crashed)" in (collector.last_skip or "")
    assert [e.kind for e in OutboxStore(db).list()] == ["consent"]


def test_privacy_services_share_one_anonymizer(db: Database) -> None:
    from studyapp.privacy.services import PrivacyServices

    protocol = make_protocol()
    services = PrivacyServices.create(db, protocol)
    services.consent.grant(protocol, ["ratings", "conversation_text"])
    assert services.collector.anonymizer is services.review.anonymizer is services.anonymizer
    event_id = services.collector.collect("message", message("Maria Lopez"))
    assert [e.event_id for e in services.review.waiting() if e.kind == "message"] == [event_id]


def test_a_labels_attribute_text_needs_the_attributes_category_too(db: Database, consent: ConsentService,
                                                                   anonymizer: Anonymizer) -> None:
    protocol = make_protocol()
    consent.grant(protocol, ["ratings", "attribute_labels"])
    label = {"attribute_id": "a1", "label": "maybe", "labeled_at": now(), "source": "label_prompt",
             "attribute_text": "Friend of Maria Lopez", "confidence": 0.8, "age_s": 30.0}
    collector = Collector(db, protocol, anonymizer, consent)
    # Declining the attributes category keeps their text at home, also as a label's snapshot.
    event = OutboxStore(db).get(collector.collect("attribute_label", label) or "")
    assert event is not None and event.payload["attribute_text"] is None
    assert (event.payload["label"], event.payload["confidence"], event.payload["age_s"]) == ("maybe", 0.8, 30.0)
    consent.grant(protocol, ["ratings", "attribute_labels", "attributes"])
    event = OutboxStore(db).get(collector.collect("attribute_label", label | {"labeled_at": now()}) or "")
    assert event is not None and event.payload["attribute_text"] == "Friend of <PERSON_1>"
