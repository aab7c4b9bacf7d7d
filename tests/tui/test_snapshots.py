"""Snapshots of the main screens (pytest-textual-snapshot). Update with --snapshot-update after a deliberate change."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from studyapp.context import AppContext
from studyapp.store.conversations import ConversationStore
from studyapp.tui.app import StudyApp
from studyapp.tui.widgets.composer import Composer

SIZE = (100, 30)


def make_app(tmp_path: Path) -> StudyApp:
    app_ctx = AppContext.create(tmp_path / "data")
    store = ConversationStore(app_ctx.db)
    trip = store.create("Packing for Lisbon")
    store.add_message(trip.id, "user", "What should I pack for four days in Lisbon in March?")
    store.add_message(trip.id, "assistant",
                      "Lisbon in March is mild but changeable:\n\n- a light rain jacket\n- comfortable "
                      "shoes for the hills\n- layers for cool evenings")
    store.add_message(trip.id, "user", "And for a day trip to Sintra?")
    reply = store.add_message(trip.id, "assistant", "Bring a warmer layer: Sintra is", status="streaming")
    store.update_message(reply.id, status="interrupted")
    other = store.create("Sourdough starter")
    store.add_message(other.id, "user", "My starter smells of acetone.")
    # The open conversation is the most recent one.
    store.touch(trip.id)
    return StudyApp(app_ctx)


async def _settle(pilot: Any) -> None:
    await pilot.pause()
    pilot.app.screen.query_one(Composer).cursor_blink = False
    await pilot.pause()


def test_chat_screen(snap_compare: Any, tmp_path: Path) -> None:
    assert snap_compare(make_app(tmp_path), terminal_size=SIZE, run_before=_settle)


def test_search_screen(snap_compare: Any, tmp_path: Path) -> None:
    async def run_before(pilot: Any) -> None:
        await _settle(pilot)
        await pilot.press("ctrl+f", *"lisbon")
        pilot.app.screen.run_search("lisbon")
        pilot.app.screen.query_one("#query").cursor_blink = False
        await pilot.pause()

    assert snap_compare(make_app(tmp_path), terminal_size=SIZE, run_before=run_before)


def test_delete_confirmation(snap_compare: Any, tmp_path: Path) -> None:
    async def run_before(pilot: Any) -> None:
        await _settle(pilot)
        await pilot.press("ctrl+d")
        await pilot.pause()

    assert snap_compare(make_app(tmp_path), terminal_size=SIZE, run_before=run_before)


@pytest.mark.parametrize("size", [(100, 40), (80, 24)])
def test_settings_screen(snap_compare: Any, tmp_path: Path, size: tuple[int, int]) -> None:
    async def run_before(pilot: Any) -> None:
        await _settle(pilot)
        await pilot.press("ctrl+o")
        await pilot.pause()
        for field in pilot.app.screen.query("Input"):
            field.cursor_blink = False
        await pilot.pause()

    assert snap_compare(make_app(tmp_path), terminal_size=size, run_before=run_before)


def _privacy_db(tmp_path: Path) -> Any:
    from studyapp.store.db import open_database

    (tmp_path / "data").mkdir(exist_ok=True)
    return open_database(tmp_path / "data" / "studyapp.db")


def test_consent_screen_with_always_remove_terms(snap_compare: Any, tmp_path: Path) -> None:
    from studyapp.privacy.anonymize import Anonymizer
    from studyapp.privacy.consent import ConsentService
    from studyapp.privacy.review import ReviewService
    from studyapp.tui.screens.consent import ConsentScreen
    from tests.privacy.conftest import make_protocol
    from tests.privacy.test_screens import Host

    db = _privacy_db(tmp_path)
    protocol = make_protocol()
    anonymizer = Anonymizer(db)
    anonymizer.add_term("Oak Hill")
    app = Host(ConsentScreen(protocol, ConsentService(db), ReviewService(db, protocol, anonymizer)))

    async def run_before(pilot: Any) -> None:
        field = pilot.app.screen.query_one("#terms-input")
        field.cursor_blink = False
        field.focus()
        await pilot.press(*"Jonas Becker, Acme GmbH", "enter")
        await pilot.pause()

    assert snap_compare(app, terminal_size=(100, 40), run_before=run_before)


def test_review_screen_shows_what_was_found(snap_compare: Any, tmp_path: Path) -> None:
    from studyapp.privacy.anonymize import Anonymizer
    from studyapp.privacy.collect import Collector
    from studyapp.privacy.consent import ConsentService
    from studyapp.privacy.review import ReviewService
    from studyapp.tui.screens.review import ReviewScreen
    from tests.privacy.conftest import make_protocol
    from tests.privacy.test_screens import Host

    db = _privacy_db(tmp_path)
    protocol = make_protocol(review_uploads=True)
    consent, anonymizer = ConsentService(db), Anonymizer(db)
    # Earlier records included: the messages carry a fixed time before the grant.
    consent.grant(protocol, ["ratings", "conversation_text"], include_earlier=True)
    collector = Collector(db, protocol, anonymizer, consent)
    day = "2026-03-02T09:30:00+00:00"
    ids = [collector.collect("message", {"conversation_id": "c1", "message_id": f"m{n}", "role": "user",
                                         "content": text, "created_at": day, "status": "complete"})
           for n, text in enumerate(["I had lunch with Maria Lopez in Dublin and met Maria Lopez again at "
                                     "Brightwave", "soup recipes please"])]
    # Fixed times, so the list's days do not change with the day the test runs.
    db.execute("UPDATE outbox SET created_at = ?", [day])
    db.conn.commit()
    app = Host(ReviewScreen(ReviewService(db, protocol, anonymizer)))

    async def run_before(pilot: Any) -> None:
        table = pilot.app.screen.query_one("#review-table")
        table.move_cursor(row=table.get_row_index(ids[0]))
        await pilot.pause()

    assert snap_compare(app, terminal_size=(120, 34), run_before=run_before)


# The study's own questions at 80x24: the question waiting above the message box, and the survey screen ----------

def _asks(*questions: Any) -> list[Any]:
    from datetime import UTC, datetime

    from studyapp.study.asking import Ask

    asked_at = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
    return [Ask(f"ask-{n}", question, asked_at) for n, question in enumerate(questions, start=1)]


def test_question_waiting_above_the_message_box(snap_compare: Any, tmp_path: Path) -> None:
    from tests.tui.test_questions import CHOICE, YES_NO

    async def run_before(pilot: Any) -> None:
        await _settle(pilot)
        await pilot.press(*"a draft")
        await pilot.app.screen.ask_in_the_moment(_asks(CHOICE, YES_NO))
        await pilot.pause()

    assert snap_compare(make_app(tmp_path), terminal_size=(80, 24), run_before=run_before)


def test_text_question_answered_above_the_message_box(snap_compare: Any, tmp_path: Path) -> None:
    from tests.tui.test_questions import TEXT

    async def run_before(pilot: Any) -> None:
        await _settle(pilot)
        await pilot.app.screen.ask_in_the_moment(_asks(TEXT))
        await pilot.press("f5", *"clearer")
        pilot.app.screen.query_one("#question-prompt Input").cursor_blink = False
        await pilot.pause()

    assert snap_compare(make_app(tmp_path), terminal_size=(80, 24), run_before=run_before)


def test_survey_screen(snap_compare: Any, tmp_path: Path) -> None:
    from studyapp.tui.screens.survey import SurveyScreen
    from tests.tui.test_questions import LIKERT, TEXT, WEEKLY, YES_NO

    async def run_before(pilot: Any) -> None:
        await _settle(pilot)
        pilot.app.push_screen(SurveyScreen(_asks(WEEKLY, TEXT, YES_NO, LIKERT), title="Feeling understood",
                                           focus_first=True))
        await pilot.pause()
        await pilot.press("right", "right")
        for field in pilot.app.screen.query("Input"):
            field.cursor_blink = False
        await pilot.pause()

    assert snap_compare(make_app(tmp_path), terminal_size=(80, 24), run_before=run_before)
