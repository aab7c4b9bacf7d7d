"""Each look at the participant's memory is recorded when they leave it (seeing memory can change how they rate):
F2 (the memory screen) and F4 (the label prompt) leave one memory_views row, written through the app's services,
and while enrolled a study record that the privacy gate is woken for."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from pytest import approx
from sqlite_utils import Database
from textual.pilot import Pilot
from textual.screen import Screen

from studyapp.context import AppContext
from studyapp.domain import AttributeChange, NewAttribute
from studyapp.participation import ParticipationState
from studyapp.privacy.consent import ConsentService
from studyapp.store.collect_queue import CollectQueue
from studyapp.store.outbox import OutboxStore
from studyapp.store.studies import StudyStore
from studyapp.store.util import now
from studyapp.study.current import save_enrollment
from studyapp.study.protocol import parse_protocol
from studyapp.tui.app import StudyApp
from studyapp.tui.screens.labeling import LabelingScreen
from studyapp.tui.screens.memory import MemoryScreen
from tests.support.keyring import MemoryKeyring
from tests.support.protocols import ratings_study
from tests.tui.helpers import MakeApp, wait_for
from tests.tui.test_chat_app import SIZE

OPENINGS = [pytest.param("f2", MemoryScreen, "memory_screen", id="memory_screen"),
            pytest.param("f4", LabelingScreen, "label_prompt", id="label_prompt")]

PROTOCOL = ratings_study("memory-views", "Memory views")

View = tuple[str, str, str, float, str]


def view_rows(db: Database) -> list[View]:
    return db.execute("SELECT id, opened_at, closed_at, duration_s, screen FROM memory_views").fetchall()


def with_attributes_to_label(app: StudyApp) -> None:
    """Attributes the assistant inferred, enough for the study to ask about them (F4 has something to show)."""
    app.services.memory.store.apply_changes(
        [AttributeChange("add", "extracted", new=NewAttribute(text, "said so", 0.8, []))
         for text in ("The user has a dog", "The user lives in a flat", "The user works from home")], actor="model")
    assert app.services.labeling_plan().due


async def open_and_leave(pilot: Pilot[None], app: StudyApp, key: str, screen_type: type[Screen[object]]) -> None:
    """Open the screen with ``key`` and leave it with Esc; returns once the view is recorded."""
    db = app.services.app_ctx.db
    chat = app.screen
    await pilot.press(key)
    await wait_for(pilot, lambda: isinstance(app.screen, screen_type), what=f"{key} to open its screen")
    await pilot.pause()
    assert view_rows(db) == [], "a view is recorded when the participant leaves the screen, not before"
    if isinstance(app.screen, LabelingScreen):
        app.screen.grace_s = 0  # Esc in the prompt's first moment is not a "later" (tests/tui/test_labeling.py)
    await pilot.press("escape")
    await wait_for(pilot, lambda: app.screen is chat and len(view_rows(db)) == 1, what="the view to be recorded")


@pytest.mark.parametrize(("key", "screen_type", "screen"), OPENINGS)
async def test_opening_and_leaving_records_one_view(make_app: MakeApp, key: str,
                                                   screen_type: type[Screen[object]], screen: str) -> None:
    app = make_app()
    with_attributes_to_label(app)
    db = app.services.app_ctx.db
    before = now()
    async with app.run_test(size=SIZE) as pilot:
        await open_and_leave(pilot, app, key, screen_type)
        after = now()
    # Still one once the app has closed: the look is recorded once.
    [(_, opened_at, closed_at, duration_s, where)] = view_rows(db)
    assert where == screen
    assert before <= opened_at <= closed_at <= after
    elapsed = (datetime.fromisoformat(closed_at) - datetime.fromisoformat(opened_at)).total_seconds()
    assert duration_s >= 0 and duration_s == approx(elapsed)
    assert [r.kind for r in CollectQueue(db).take(1000)] == [], "not enrolled: nothing is noted for a study"


@pytest.mark.parametrize(("key", "screen_type", "screen"), OPENINGS)
async def test_while_enrolled_each_view_is_noted_for_the_study(
    make_app: MakeApp, tmp_path: Path, key: str, screen_type: type[Screen[object]], screen: str
) -> None:
    # Enrolled as tests/privacy/test_intake.py does, in a study whose protocol the app cannot use: no gate runs,
    # so what the database notes for the study stays in its intake, where the test can see it.
    app_ctx = AppContext.create(tmp_path / "data")
    StudyStore(app_ctx.db).enroll("s1", {"study": {"id": "s1"}}, participant_id="p1")
    app_ctx.close()
    app = make_app()
    assert app.services.enrolled and app.services.participation.records is None
    with_attributes_to_label(app)
    db = app.services.app_ctx.db
    async with app.run_test(size=SIZE) as pilot:
        await open_and_leave(pilot, app, key, screen_type)
    [(view_id, *_, where)] = view_rows(db)
    assert where == screen
    noted = [r.source_id for r in CollectQueue(db).take(1000) if r.kind == "memory_view"]
    assert noted == [view_id]


def enrolled_app(make_app: MakeApp, data_dir: Path) -> StudyApp:
    """An app enrolled in PROTOCOL with the ratings category consented (no server: nothing is uploaded)."""
    app_ctx = AppContext.create(data_dir)
    protocol = parse_protocol(PROTOCOL)
    save_enrollment(app_ctx.db, protocol, participant_id="p1")
    ConsentService(app_ctx.db).grant(protocol, ["ratings"])
    app_ctx.close()
    app = make_app()
    assert app.services.participation.state is ParticipationState.ENROLLED
    return app


def sent_views(db: Database) -> list[tuple[str, str, float]]:
    return [(e.payload["view_id"], e.payload["screen"], e.payload["duration_s"])
            for e in OutboxStore(db).list(kind="memory_view")]


async def test_a_view_wakes_the_gate_and_reaches_the_outbox(
    make_app: MakeApp, tmp_path: Path, memory_keyring: MemoryKeyring
) -> None:
    app = enrolled_app(make_app, tmp_path / "data")
    participation = app.services.participation
    db = app.services.app_ctx.db
    async with app.run_test(size=SIZE) as pilot:
        # The gate's drain at start is over: from here on only a wake drains what the database notes.
        await participation.flush()
        await open_and_leave(pilot, app, "f2", MemoryScreen)
        await participation.flush()
        [(view_id, _, _, duration_s, _)] = view_rows(db)
        assert sent_views(db) == [(view_id, "memory_screen", duration_s)]
        assert CollectQueue(db).take(1000) == []


async def test_closing_the_app_over_the_memory_screen_records_the_view(
    make_app: MakeApp, tmp_path: Path, memory_keyring: MemoryKeyring
) -> None:
    app = enrolled_app(make_app, tmp_path / "data")
    db = app.services.app_ctx.db
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f2")
        await wait_for(pilot, lambda: isinstance(app.screen, MemoryScreen), what="the memory screen")
        assert view_rows(db) == []
    # The app closed with memory on screen: the look still counts, and reached the outbox before the gate closed.
    [(view_id, _, _, duration_s, screen)] = view_rows(db)
    assert screen == "memory_screen"
    assert sent_views(db) == [(view_id, "memory_screen", duration_s)]
