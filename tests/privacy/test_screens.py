"""The consent and review screens, driven with Textual's pilot in a small host app."""

from __future__ import annotations

from typing import Any

from sqlite_utils import Database
from textual.app import App
from textual.screen import Screen
from textual.widgets import Checkbox, DataTable, Markdown, Static

from studyapp.privacy.anonymize import Anonymizer
from studyapp.privacy.collect import Collector
from studyapp.privacy.consent import ConsentRecord, ConsentService
from studyapp.privacy.review import ReviewService
from studyapp.store.outbox import OutboxStore
from studyapp.tui.screens.consent import ConsentScreen
from studyapp.tui.screens.review import ReviewScreen
from tests.privacy.conftest import CONSENT_TEXT, make_protocol
from tests.privacy.test_collect import message

UNSET = object()


class Host(App[None]):
    """Pushes one screen and keeps what it dismissed with."""

    def __init__(self, screen: Screen[Any]) -> None:
        super().__init__()
        self.screen_under_test = screen
        self.result: Any = UNSET

    def on_mount(self) -> None:
        self.push_screen(self.screen_under_test, self.done)

    def done(self, result: Any) -> None:
        self.result = result


async def test_consent_screen_shows_text_marks_required_and_records_choices(consent: ConsentService) -> None:
    protocol = make_protocol(required=("ratings",), optional=("attributes", "conversation_text"))
    app = Host(ConsentScreen(protocol, consent))
    async with app.run_test(size=(100, 40)) as pilot:
        screen = app.screen
        assert isinstance(screen, ConsentScreen)
        assert screen.query_one(Markdown).source == CONSENT_TEXT
        assert str(screen.query_one("#cat-ratings", Checkbox).label) == "Your ratings of answers (required)"
        assert screen.query_one("#cat-ratings", Checkbox).has_class("required")
        # Accepting without the required category explains and stays.
        await pilot.click("#accept")
        await pilot.pause()
        error = screen.query_one("#consent-error", Static)
        assert "requires ratings" in str(error.render())
        assert app.result is UNSET and consent.current("s1") is None
        screen.query_one("#cat-ratings", Checkbox).value = True
        screen.query_one("#cat-attributes", Checkbox).value = True
        # The key binding (a second click would land within the button's press animation and be ignored).
        await pilot.press("ctrl+s")
        await pilot.pause()
    assert isinstance(app.result, ConsentRecord)
    assert app.result.categories == ("attributes", "ratings")
    assert app.result.document_sha256 == protocol.current_consent.sha256
    assert consent.current("s1").categories == {"ratings", "attributes"}  # type: ignore[union-attr]


async def test_consent_screen_decline_records_nothing(consent: ConsentService) -> None:
    app = Host(ConsentScreen(make_protocol(), consent))
    async with app.run_test() as pilot:
        await pilot.press("escape")
        await pilot.pause()
    assert app.result is None
    assert consent.history("s1") == []


async def test_consent_screen_changes_categories_when_consent_is_in_force(consent: ConsentService) -> None:
    protocol = make_protocol()
    consent.grant(protocol, ["ratings", "attributes"])
    app = Host(ConsentScreen(protocol, consent))
    async with app.run_test(size=(100, 40)) as pilot:
        screen = app.screen
        assert screen.query_one("#cat-attributes", Checkbox).value is True
        screen.query_one("#cat-attributes", Checkbox).value = False
        screen.query_one("#cat-conversation_text", Checkbox).value = True
        screen.query_one("#include-earlier", Checkbox).value = True
        await pilot.click("#accept")
        await pilot.pause()
    assert isinstance(app.result, ConsentRecord)
    assert app.result.action == "update"
    assert app.result.include_earlier == ("conversation_text", "ratings")
    assert consent.current("s1").categories == {"ratings", "conversation_text"}  # type: ignore[union-attr]


def _review_setup(db: Database, consent: ConsentService, anonymizer: Anonymizer) -> tuple[ReviewService, list[str]]:
    protocol = make_protocol(review_uploads=True)
    consent.grant(protocol, ["ratings", "conversation_text"])
    collector = Collector(db, protocol, anonymizer, consent)
    ids = [collector.collect("message", message("I had lunch with Maria Lopez at Brightwave", conversation_id="c1")),
           collector.collect("message", message("soup recipes please", conversation_id="c1")),
           collector.collect("message", message("how do I fix a tap", conversation_id="c2"))]
    return ReviewService(db, protocol, anonymizer), [i for i in ids if i]


async def test_review_screen_previews_exact_payload_and_approves_withholds(
        db: Database, consent: ConsentService, anonymizer: Anonymizer) -> None:
    review, ids = _review_setup(db, consent, anonymizer)
    outbox = OutboxStore(db)
    app = Host(ReviewScreen(review))
    async with app.run_test(size=(140, 40)) as pilot:
        screen = app.screen
        assert isinstance(screen, ReviewScreen)
        table = screen.query_one(DataTable)
        assert table.row_count == 4  # three messages and the consent record
        table.move_cursor(row=table.get_row_index(ids[0]))
        await pilot.pause()
        shown = str(screen.query_one("#review-preview", Static).render())
        assert '"content": "I had lunch with <PERSON_1> at Brightwave"' in shown
        await pilot.press("a")
        await pilot.pause()
        assert outbox.get(ids[0]).status == "approved"  # type: ignore[union-attr]
        table.move_cursor(row=table.get_row_index(ids[2]))
        await pilot.press("w")
        await pilot.pause()
        assert outbox.get(ids[2]).status == "withheld"  # type: ignore[union-attr]
        table.move_cursor(row=table.get_row_index(ids[1]))
        await pilot.press("c")
        await pilot.pause()
        assert outbox.get(ids[0]).status == "withheld"  # type: ignore[union-attr]
        assert outbox.get(ids[1]).status == "withheld"  # type: ignore[union-attr]
        assert table.row_count == 1
        await pilot.press("escape")
        await pilot.pause()
    assert app.result["withheld"] == 3


async def test_review_screen_adds_a_term_and_rescrubs(db: Database, consent: ConsentService,
                                                      anonymizer: Anonymizer) -> None:
    review, ids = _review_setup(db, consent, anonymizer)
    app = Host(ReviewScreen(review))
    async with app.run_test(size=(140, 40)) as pilot:
        await pilot.press("t")
        await pilot.pause()
        await pilot.press(*"Brightwave", "enter")
        await app.workers.wait_for_complete()
        await pilot.pause()
        payload = OutboxStore(db).get(ids[0]).payload  # type: ignore[union-attr]
        assert payload["content"] == "I had lunch with <PERSON_1> at <TERM_1>"
        table = app.screen.query_one(DataTable)
        table.move_cursor(row=table.get_row_index(ids[0]))
        await pilot.pause()
        assert "<TERM_1>" in str(app.screen.query_one("#review-preview", Static).render())
    assert review.anonymizer.terms() == ["Brightwave"]
