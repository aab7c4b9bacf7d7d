"""Consent: append-only decisions, required categories, re-consent, withdrawal, earlier records."""

from __future__ import annotations

import hashlib
import sqlite3

import pytest

from studyapp.events import CONTRACT_VERSION
from studyapp.privacy.consent import BEGINNING, ConsentError, ConsentService
from studyapp.store.outbox import OutboxStore
from tests.privacy.conftest import CONSENT_TEXT, make_protocol


def test_grant_records_version_sha_of_shown_text_and_categories(consent: ConsentService) -> None:
    protocol = make_protocol()
    record = consent.grant(protocol, ["ratings", "attributes"], shown_text=CONSENT_TEXT)
    assert record.action == "grant"
    assert record.document_version == "1"
    assert record.document_sha256 == hashlib.sha256(CONSENT_TEXT.encode()).hexdigest()
    assert record.categories == ("attributes", "ratings")
    current = consent.current("s1")
    assert current is not None
    assert current.categories == {"ratings", "attributes"}
    assert current.version == "1"


def test_missing_required_category_is_refused_with_a_clear_message(consent: ConsentService) -> None:
    protocol = make_protocol(required=("ratings", "relevance_labels"), optional=("attributes",))
    with pytest.raises(ConsentError, match=r"requires relevance_labels.*decline"):
        consent.grant(protocol, ["ratings", "attributes"])
    assert consent.current("s1") is None
    assert consent.history("s1") == []


def test_unknown_category_names_what_the_study_asks_for(consent: ConsentService) -> None:
    protocol = make_protocol(optional=("attributes",))
    with pytest.raises(ConsentError, match=r"conversation_text.*does not ask for.*ratings, attributes"):
        consent.grant(protocol, ["ratings", "conversation_text"])
    with pytest.raises(ConsentError, match="Unknown category photos"):
        consent.grant(protocol, ["ratings", "photos"])


def test_text_other_than_the_document_cannot_be_agreed_to(consent: ConsentService) -> None:
    with pytest.raises(ConsentError, match="not the text of consent document version 1"):
        consent.grant(make_protocol(), ["ratings"], shown_text=CONSENT_TEXT + " (edited)")


def test_consent_events_are_append_only(consent: ConsentService) -> None:
    consent.grant(make_protocol(), ["ratings"])
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        consent.db.execute("UPDATE consent_events SET categories = '[]'")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        consent.db.execute("DELETE FROM consent_events")


def test_change_categories_appends_and_withholds_queued_events_of_a_dropped_category(
        consent: ConsentService) -> None:
    protocol = make_protocol()
    consent.grant(protocol, ["ratings", "attributes"])
    outbox = OutboxStore(consent.db)
    queued = outbox.add(study_id="s1", kind="attribute", category="attributes", payload={"text": "x"},
                        consent_version="1", approved=True)
    consent.change_categories(protocol, ["ratings"])
    assert [r.action for r in consent.history("s1")] == ["grant", "update"]
    current = consent.current("s1")
    assert current is not None and current.categories == {"ratings"}
    event = outbox.get(queued)
    assert event is not None and event.status == "withheld"
    assert event.reason and "attributes no longer granted" in event.reason
    assert {e.kind for e in outbox.ready("s1", 100)} == {"consent"}


def test_each_decision_queues_a_consent_event_that_is_always_sent(consent: ConsentService) -> None:
    protocol = make_protocol(review_uploads=True)
    grant = consent.grant(protocol, ["ratings"])
    update = consent.change_categories(protocol, ["ratings", "attributes"])
    ready = OutboxStore(consent.db).ready("s1", 10)
    assert [e.event_id for e in ready] == [grant.id, update.id]
    assert ready[1].payload == {"consent_version": "1", "consent_sha256": protocol.current_consent.sha256,
                                "categories": ["attributes", "ratings"], "action": "update",
                                "created_at": update.created_at, "contract_version": CONTRACT_VERSION}


def test_withdraw_empties_the_outbox_and_ends_consent(consent: ConsentService) -> None:
    protocol = make_protocol()
    consent.grant(protocol, ["ratings"])
    outbox = OutboxStore(consent.db)
    outbox.add(study_id="s1", kind="judge_verdict", category="ratings", payload={}, consent_version="1",
               approved=True)
    record = consent.withdraw("s1")
    assert record.action == "withdraw"
    assert consent.current("s1") is None
    assert consent.withdrawn("s1")
    assert outbox.list(study_id="s1") == []
    assert not consent.needs_consent(protocol)


def test_new_consent_document_needs_reconsent(consent: ConsentService) -> None:
    v1 = make_protocol()
    assert consent.needs_consent(v1) and not consent.needs_reconsent(v1)
    consent.grant(v1, ["ratings"])
    assert not consent.needs_consent(v1)
    new_version = make_protocol(version="2", consent_version="2", consent_text="A new text.\n")
    same_version_new_text = make_protocol(consent_text="Silently edited text.\n")
    assert consent.needs_reconsent(new_version)
    assert consent.needs_reconsent(same_version_new_text)
    with pytest.raises(ConsentError, match="new consent document"):
        consent.change_categories(new_version, ["ratings"])
    consent.grant(new_version, ["ratings"])
    assert not consent.needs_reconsent(new_version)
    assert consent.current("s1").version == "2"  # type: ignore[union-attr]


def test_a_later_grant_counts_from_its_time_unless_earlier_records_are_included(consent: ConsentService) -> None:
    protocol = make_protocol()
    first = consent.grant(protocol, ["ratings"])
    later = consent.change_categories(protocol, ["ratings", "attributes"])
    current = consent.current("s1")
    assert current is not None
    assert current.since == {"ratings": first.created_at, "attributes": later.created_at}
    consent.change_categories(protocol, ["ratings", "attributes", "conversation_text"],
                              include_earlier=["conversation_text"])
    current = consent.current("s1")
    assert current is not None
    assert current.since["conversation_text"] == BEGINNING
    assert current.since["attributes"] == later.created_at
    with pytest.raises(ConsentError, match="include_earlier names attribute_labels"):
        consent.change_categories(protocol, ["ratings"], include_earlier=["attribute_labels"])
