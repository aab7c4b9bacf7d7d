"""The attribute labeling dialog in a small host app over a real database file: keys that arrive in its first
moment on screen never answer it, and no bare letter does."""

from __future__ import annotations

import pytest
from sqlite_utils import Database
from textual.app import App

from studyapp.domain import AttributeChange, NewAttribute
from studyapp.personalize.memory import MemoryService
from studyapp.store.memory import MemoryStore
from studyapp.tui.screens.labeling import LabelingScreen
from tests.support.fixtures import db  # noqa: F401

STATEMENTS = ["The user has a dog", "The user lives in a flat"]


class Host(App[None]):
    def __init__(self, review: LabelingScreen) -> None:
        super().__init__()
        self.review = review
        self.results: list[int | None] = []

    def on_mount(self) -> None:
        self.push_screen(self.review, self.results.append)


def ignore_view(opened_at: str, screen: str) -> None:
    """Memory views are the app's to record (tests/tui/test_memory_views.py)."""


@pytest.fixture
def memory(db: Database) -> MemoryService:
    store = MemoryStore(db)
    store.apply_changes([AttributeChange("add", "extracted", new=NewAttribute(t, "said so", 0.8, []))
                         for t in STATEMENTS], actor="model")
    return MemoryService(store)


def label_rows(memory: MemoryService) -> list[tuple[str, str]]:
    return memory.store.db.execute("SELECT label, source FROM attribute_labels ORDER BY labeled_at").fetchall()


async def test_keys_in_the_first_moment_never_answer(memory: MemoryService) -> None:
    review = LabelingScreen(memory.store.list_attributes(), memory, on_viewed=ignore_view, grace_s=3600)
    host = Host(review)
    async with host.run_test() as pilot:
        await pilot.pause()
        assert host.screen is review
        await pilot.press("1", "2", "3", "escape", "enter", "space")
        await pilot.click("#choice-1")
        await pilot.click("#later")
        await pilot.press("tab", "enter")  # a focused button, pressed by a stray Enter
        await pilot.pause()
        assert host.screen is review and review.index == 0
        assert host.results == []
    assert label_rows(memory) == []


async def test_after_the_grace_period_numbers_answer_and_escape_leaves_it_for_later(memory: MemoryService) -> None:
    review = LabelingScreen(memory.store.list_attributes(), memory, on_viewed=ignore_view, grace_s=0)
    host = Host(review)
    async with host.run_test() as pilot:
        await pilot.pause()
        await pilot.press(*"later")  # letters are typing, never an answer
        await pilot.press("enter")  # nothing is focused at first: Enter presses no button
        await pilot.pause()
        assert host.screen is review and review.index == 0
        await pilot.press("1")
        await pilot.pause()
        assert review.index == 1
        await pilot.press("escape")
        await pilot.pause()
        assert host.results == [1]
    assert label_rows(memory) == [("makes_sense", "label_prompt")]
    # The second attribute, on screen when Esc was pressed, was left for later.
    assert [a for a, _ in dismissal_rows(memory)] == [review.attributes[1].id]


def dismissal_rows(memory: MemoryService) -> list[tuple[str, str]]:
    return memory.store.db.execute("SELECT attribute_id, source FROM label_dismissals").fetchall()


async def test_later_records_a_dismissal_of_the_attribute_on_screen_only_after_the_grace_period(
        memory: MemoryService) -> None:
    attributes = memory.store.list_attributes()
    review = LabelingScreen(attributes, memory, on_viewed=ignore_view, grace_s=3600)
    host = Host(review)
    async with host.run_test() as pilot:
        await pilot.pause()
        await pilot.press("escape")  # within the grace period: meant for the screen before, not a "later"
        await pilot.click("#later")
        await pilot.pause()
        assert host.screen is review and dismissal_rows(memory) == []
        review.grace_s = 0
        await pilot.press("escape")
        await pilot.pause()
        assert host.results == [0]
    # Only the attribute on screen was seen and left; the one after it was never shown.
    assert dismissal_rows(memory) == [(attributes[0].id, "label_prompt")]
    assert label_rows(memory) == []
