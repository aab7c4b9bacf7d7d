"""Always-remove terms named at consent, and what the review screen shows was found in each item.

Driven with Textual's pilot on a real database file, with the real anonymizer: terms typed on the consent
screen are stored with the decision, remove names from what is queued after it and (re-scrub, in a worker)
from what already waits; the review screen lists each placeholder with the local value it stands for; none
of those values ever reaches an outbox payload or a log.
"""

from __future__ import annotations

import json
import logging

import pytest
from sqlite_utils import Database
from textual.widgets import DataTable, Input, Static

from studyapp.privacy.anonymize import Anonymizer
from studyapp.privacy.collect import Collector
from studyapp.privacy.consent import ConsentRecord, ConsentService
from studyapp.privacy.review import ReviewService, split_terms
from studyapp.store.outbox import OutboxStore
from studyapp.store.privacy import PrivacyStore
from studyapp.study.protocol import Protocol
from studyapp.tui.screens.consent import TERMS_HEADING, ConsentScreen, TermBox
from studyapp.tui.screens.review import FIX_HINT, ReviewScreen
from tests.privacy.conftest import make_protocol
from tests.privacy.test_collect import message
from tests.privacy.test_screens import UNSET, Host

SIZE = (120, 50)
CATEGORIES = ["ratings", "conversation_text"]


def payload_texts(db: Database) -> list[str]:
    """Every outbox payload as stored (the JSON text the upload sends)."""
    return [row[0] for row in db.execute("SELECT payload FROM outbox")]


def consent_screen(db: Database, consent: ConsentService, anonymizer: Anonymizer,
                   protocol: Protocol) -> tuple[Host, ReviewService]:
    review = ReviewService(db, protocol, anonymizer)
    return Host(ConsentScreen(protocol, consent, review)), review


def tick(screen: ConsentScreen, categories: list[str]) -> None:
    for name in categories:
        screen.query_one(f"#cat-{name}").value = True  # type: ignore[attr-defined]


async def test_terms_named_at_first_consent_remove_them_from_what_is_queued_after(
        db: Database, consent: ConsentService, anonymizer: Anonymizer) -> None:
    protocol = make_protocol()
    app, _review = consent_screen(db, consent, anonymizer, protocol)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()  # the screen's nested widgets are mounted
        screen = app.screen
        assert isinstance(screen, ConsentScreen)
        assert TERMS_HEADING in [str(label.render()) for label in screen.query(".heading")]
        assert list(screen.query(TermBox)) == []
        tick(screen, CATEGORIES)
        screen.query_one("#terms-input", Input).focus()
        await pilot.press(*"Jonas Becker,  Acme GmbH", "enter")
        await pilot.pause()
        assert [box.term for box in screen.query(TermBox)] == ["Jonas Becker", "Acme GmbH"]
        assert screen.query_one("#terms-input", Input).value == ""
        # Not stored until the participant agrees.
        assert PrivacyStore(db).terms() == []
        await pilot.press("ctrl+s")
        await app.workers.wait_for_complete()
        await pilot.pause()
    assert isinstance(app.result, ConsentRecord) and app.result.action == "grant"
    # The consent record is about the document text, as before: the terms change nothing of it.
    assert app.result.document_sha256 == protocol.current_consent.sha256
    assert PrivacyStore(db).terms() == ["Jonas Becker", "Acme GmbH"]

    collector = Collector(db, protocol, anonymizer, consent)
    event_id = collector.collect("message", message("Greetings from jonas becker and everyone at Acme GmbH"))
    assert event_id is not None
    content = OutboxStore(db).get(event_id).payload["content"]  # type: ignore[union-attr]
    assert "jonas" not in content.lower() and "Acme" not in content
    assert "<TERM_" in content
    assert all("Becker" not in text and "Acme" not in text for text in payload_texts(db))


async def test_terms_named_when_changing_categories_rescrub_waiting_items(
        db: Database, consent: ConsentService, anonymizer: Anonymizer) -> None:
    protocol = make_protocol(review_uploads=True)
    consent.grant(protocol, CATEGORIES)
    anonymizer.add_term("Oak Hill")
    event_id = Collector(db, protocol, anonymizer, consent).collect("message", message("I work at Brightwave"))
    assert event_id is not None
    app, _review = consent_screen(db, consent, anonymizer, protocol)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()  # the screen's nested widgets are mounted
        screen = app.screen
        assert isinstance(screen, ConsentScreen) and screen.changing
        # The terms already stored are shown, and unticking one stops removing it.
        [saved] = list(screen.query(TermBox))
        assert saved.term == "Oak Hill" and saved.value is True
        assert screen.query_one("#terms-note", Static).display
        saved.value = False
        # Typed but not yet moved into the list with Enter: still taken with the decision.
        screen.query_one("#terms-input", Input).value = "Brightwave"
        await pilot.click("#accept")
        await app.workers.wait_for_complete()
        await pilot.pause()
    assert isinstance(app.result, ConsentRecord) and app.result.action == "update"
    assert PrivacyStore(db).terms() == ["Brightwave"]
    event = OutboxStore(db).get(event_id)
    assert event is not None and event.status == "pending"
    assert event.payload["content"] == "I work at <TERM_1>"
    assert event.payload["replaced_entities"] == {"TERM": 1}


@pytest.mark.parametrize("typed", ["", "  ,  "])
async def test_an_empty_terms_field_changes_nothing(db: Database, consent: ConsentService, anonymizer: Anonymizer,
                                                    typed: str) -> None:
    protocol = make_protocol(review_uploads=True)
    consent.grant(protocol, CATEGORIES)
    Collector(db, protocol, anonymizer, consent).collect("message", message("I work at Brightwave"))
    before = payload_texts(db)
    app, _review = consent_screen(db, consent, anonymizer, protocol)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()  # the screen's nested widgets are mounted
        screen = app.screen
        assert isinstance(screen, ConsentScreen)
        screen.query_one("#terms-input", Input).value = typed
        await pilot.press("ctrl+s")
        await pilot.pause()
        # Nothing to apply: the screen closes at once, with no worker.
        assert isinstance(app.result, ConsentRecord)
        assert not screen.applying
    assert PrivacyStore(db).terms() == []
    # The outbox holds what it held, plus the record of this decision.
    assert payload_texts(db)[:len(before)] == before
    assert [r.action for r in consent.history("s1")] == ["grant", "update"]


async def test_declining_stores_no_term(db: Database, consent: ConsentService, anonymizer: Anonymizer) -> None:
    app, _review = consent_screen(db, consent, anonymizer, make_protocol())
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()  # the screen's nested widgets are mounted
        app.screen.query_one("#terms-input", Input).value = "Jonas Becker"
        await pilot.press("escape")
        await pilot.pause()
    assert app.result is None
    assert PrivacyStore(db).terms() == [] and consent.history("s1") == []


async def test_a_refused_choice_stores_no_term(db: Database, consent: ConsentService, anonymizer: Anonymizer) -> None:
    app, _review = consent_screen(db, consent, anonymizer, make_protocol())
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()  # the screen's nested widgets are mounted
        screen = app.screen
        screen.query_one("#terms-input", Input).value = "Jonas Becker"
        await pilot.press("ctrl+s")  # the required category is not ticked
        await pilot.pause()
        assert "requires ratings" in str(screen.query_one("#consent-error", Static).render())
        assert app.result is UNSET
    assert PrivacyStore(db).terms() == []


def _waiting_message(db: Database, consent: ConsentService, anonymizer: Anonymizer) -> tuple[ReviewService, str]:
    protocol = make_protocol(review_uploads=True)
    consent.grant(protocol, CATEGORIES)
    event_id = Collector(db, protocol, anonymizer, consent).collect(
        "message", message("I had lunch with Maria Lopez and met Maria Lopez again at Brightwave"))
    assert event_id is not None
    return ReviewService(db, protocol, anonymizer), event_id


async def test_review_screen_lists_what_was_found_with_the_local_values(
        db: Database, consent: ConsentService, anonymizer: Anonymizer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    review, event_id = _waiting_message(db, consent, anonymizer)
    app = Host(ReviewScreen(review))
    async with app.run_test(size=(140, 40)) as pilot:
        screen = app.screen
        table = screen.query_one(DataTable)
        table.move_cursor(row=table.get_row_index(event_id))
        await pilot.pause()
        found = str(screen.query_one("#review-found", Static).render())
        assert "<PERSON_1>  name ×2  = maria lopez" in found
        assert "Brightwave" not in found  # not found: the miss shows as plain text in the payload
        assert FIX_HINT.split(":")[0] in " ".join(found.split())
        # The payload exactly as sent, with each placeholder marked.
        preview = screen.query_one("#review-preview", Static).visual
        text = str(preview)
        assert '"content": "I had lunch with <PERSON_1> and met <PERSON_1> again at Brightwave"' in text
        marked = {text[span.start:span.end] for span in preview.spans}  # type: ignore[attr-defined]
        assert marked == {"<PERSON_1>"}

        # The miss is fixed from here: t, the term, and the item is re-scrubbed and listed.
        await pilot.press("t")
        await pilot.pause()
        await pilot.press(*"Brightwave", "enter")
        await app.workers.wait_for_complete()
        await pilot.pause()
        found = str(screen.query_one("#review-found", Static).render())
        assert "<TERM_1>    your term ×1  = brightwave" in found
    assert OutboxStore(db).get(event_id).payload["content"].endswith("at <TERM_1>")  # type: ignore[union-attr]
    # The values shown never reach an outbox payload or a log line.
    for value in ("maria lopez", "Maria Lopez", "brightwave", "Brightwave"):
        assert all(value not in text for text in payload_texts(db))
        assert all(value not in record.getMessage() for record in caplog.records)


async def test_review_screen_says_when_nothing_was_found_and_how_to_fix_a_miss(
        db: Database, consent: ConsentService, anonymizer: Anonymizer) -> None:
    protocol = make_protocol(review_uploads=True)
    consent.grant(protocol, CATEGORIES)
    event_id = Collector(db, protocol, anonymizer, consent).collect("message", message("soup recipes please"))
    app = Host(ReviewScreen(ReviewService(db, protocol, anonymizer)))
    async with app.run_test(size=(140, 40)) as pilot:
        table = app.screen.query_one(DataTable)
        table.move_cursor(row=table.get_row_index(event_id))
        await pilot.pause()
        found = " ".join(str(app.screen.query_one("#review-found", Static).render()).split())
        assert found.startswith("Nothing was replaced in this item.")
        assert "Press t" in found
        # The consent record has no free text to look at.
        consent_id = next(e.event_id for e in OutboxStore(db).list() if e.kind == "consent")
        table.move_cursor(row=table.get_row_index(consent_id))
        await pilot.pause()
        assert str(app.screen.query_one("#review-found", Static).render()) == "No free text in this item."


def test_found_counts_placeholders_and_reads_values_from_the_mapping(
        db: Database, consent: ConsentService, anonymizer: Anonymizer) -> None:
    review, event_id = _waiting_message(db, consent, anonymizer)
    review.add_term("Brightwave")
    event = OutboxStore(db).get(event_id)
    assert event is not None
    found = review.found(event)
    assert [(f.placeholder, f.entity_type, f.count, f.values) for f in found] == [
        ("<PERSON_1>", "PERSON", 2, ("maria lopez",)), ("<TERM_1>", "TERM", 1, ("brightwave",))]
    # Reading changes nothing that is sent.
    assert json.loads(payload_texts(db)[-1]) == OutboxStore(db).get(event_id).payload  # type: ignore[union-attr]


def test_save_terms_adds_skips_blanks_and_removes(db: Database, consent: ConsentService,
                                                  anonymizer: Anonymizer) -> None:
    review = ReviewService(db, make_protocol(), anonymizer)
    saved = review.save_terms(["Jonas  Becker", "", "Acme GmbH"])
    assert saved.added == ("Jonas Becker", "Acme GmbH") and saved.already == () and saved.removed == ()
    saved = review.save_terms(["Acme GmbH"], ["Jonas Becker"])
    assert saved.added == () and saved.already == ("Acme GmbH",) and saved.removed == ("Jonas Becker",)
    assert anonymizer.terms() == ["Acme GmbH"]
    assert split_terms(" Jonas Becker,Acme  GmbH, , Jonas Becker") == ["Jonas Becker", "Acme GmbH"]


async def test_a_term_with_brackets_is_shown_and_stored_as_typed(db: Database, consent: ConsentService,
                                                                anonymizer: Anonymizer) -> None:
    app, _review = consent_screen(db, consent, anonymizer, make_protocol())
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        screen = app.screen
        screen.query_one("#terms-input", Input).focus()
        await pilot.press(*"[b]Jo[/b]", "enter")
        await pilot.pause()
        [box] = list(screen.query(TermBox))
        assert str(box.label) == "[b]Jo[/b]"
        tick(screen, ["ratings"])
        await pilot.press("ctrl+s")
        await app.workers.wait_for_complete()
        await pilot.pause()
    assert PrivacyStore(db).terms() == ["[b]Jo[/b]"]
