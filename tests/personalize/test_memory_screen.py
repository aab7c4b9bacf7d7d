"""The memory screen driven with Textual's pilot in a small host app, over a real database file."""

from __future__ import annotations

import pytest
from textual.app import App
from textual.widgets import Input, Static

from studyapp.domain import AttributeChange, NewAttribute
from studyapp.personalize.memory import MemoryService
from studyapp.store.memory import MemoryStore
from studyapp.tui.screens.memory import AttributeDetailScreen, MemoryScreen
from studyapp.tui.widgets.memory_table import MemoryTable


class Host(App[None]):
    def __init__(self, service: MemoryService) -> None:
        super().__init__()
        self.service = service

    def on_mount(self) -> None:
        # Memory views are the app's to record (tests/tui/test_memory_views.py).
        self.push_screen(MemoryScreen(self.service, on_viewed=lambda opened_at, screen: None))


@pytest.fixture
def seeded(conversations, memory: MemoryStore):
    conv = conversations.create()
    evidence = conversations.add_message(conv.id, "user", "I just got back from my night shift at the ward.")
    model_attr = NewAttribute("The user works night shifts.", "Mentioned a night shift.", 0.8, [evidence.id])
    memory.apply_changes([AttributeChange(action="add", reason="new", new=model_attr)], actor="model")
    own = memory.add_participant_attribute("I am allergic to nuts.")
    return model_attr.id, own.id


def _cells(table: MemoryTable, key: str) -> list[str]:
    return [str(c) for c in table.get_row(key)]


async def test_lists_attributes_with_reason_confidence_origin_age(memory, seeded):
    model_id, own_id = seeded
    async with Host(MemoryService(memory)).run_test() as pilot:
        await pilot.pause()
        table = pilot.app.screen.query_one(MemoryTable)
        assert table.row_count == 2
        assert _cells(table, model_id) == ["The user works night shifts.", "Mentioned a night shift.", "0.80",
                                           "assistant", "just now", "–"]
        assert _cells(table, own_id)[3] == "you"
        assert not pilot.app.screen.query_one("#memory-empty").display


async def test_empty_memory_says_so(memory):
    async with Host(MemoryService(memory)).run_test() as pilot:
        await pilot.pause()
        assert pilot.app.screen.query_one("#memory-empty").display
        await pilot.press("1", "e", "f", "enter")  # nothing selected: nothing happens, nothing breaks
        assert isinstance(pilot.app.screen, MemoryScreen)


async def test_labels_are_stored_with_time(memory, seeded):
    model_id, _ = seeded
    async with Host(MemoryService(memory)).run_test() as pilot:
        await pilot.pause()
        await pilot.press("1")
        await pilot.press("3")
        table = pilot.app.screen.query_one(MemoryTable)
        assert _cells(table, model_id)[5] == "doesn't make sense"
    assert [label.label for label in memory.labels(model_id)] == ["makes_sense", "doesnt_make_sense"]
    assert all(label.labeled_at for label in memory.labels(model_id))
    sources = memory.db.execute("SELECT source FROM attribute_labels WHERE attribute_id = ?", [model_id]).fetchall()
    assert sources == [("memory_screen",), ("memory_screen",)]


async def test_opening_shows_evidence_messages(memory, seeded):
    async with Host(MemoryService(memory)).run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(pilot.app.screen, AttributeDetailScreen)
        text = "\n".join(str(s.render()) for s in pilot.app.screen.query(Static))
        assert "I just got back from my night shift at the ward." in text
        assert "Mentioned a night shift." in text
        await pilot.press("escape")
        assert isinstance(pilot.app.screen, MemoryScreen)


async def test_forget_asks_first_then_records_an_event(memory, seeded):
    model_id, own_id = seeded
    async with Host(MemoryService(memory)).run_test() as pilot:
        await pilot.pause()
        await pilot.press("f")
        await pilot.press("n")  # changed their mind
        assert memory.get(model_id).status == "active"
        await pilot.press("f")
        await pilot.press("y")
        await pilot.pause()
        assert pilot.app.screen.query_one(MemoryTable).row_count == 1
    assert memory.get(model_id).status == "deleted"
    assert [(e.action, e.actor) for e in memory.events(model_id)][-1] == ("delete", "participant")
    assert memory.get(own_id).status == "active"


async def test_edit_and_add(memory, seeded):
    model_id, _ = seeded
    async with Host(MemoryService(memory)).run_test() as pilot:
        await pilot.pause()
        await pilot.press("e")
        await pilot.pause()
        prompt_input = pilot.app.screen.query_one(Input)
        assert prompt_input.value == "The user works night shifts."
        prompt_input.value = "I work night shifts as a nurse."
        await pilot.press("enter")
        await pilot.pause()
        await pilot.press("a")
        await pilot.pause()
        pilot.app.screen.query_one(Input).value = "I prefer short answers."
        await pilot.press("enter")
        await pilot.pause()
        # An empty edit is refused with a message, the attribute stays as it was.
        await pilot.press("e")
        await pilot.pause()
        pilot.app.screen.query_one(Input).value = "   "
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(pilot.app.screen, MemoryScreen)
        assert pilot.app.screen.query_one(MemoryTable).row_count == 3
    assert memory.get(model_id).text == "I work night shifts as a nurse."
    texts = {a.text: a.origin for a in memory.list_attributes()}
    assert texts["I prefer short answers."] == "participant"
    assert [e.action for e in memory.events(model_id)] == ["add", "update"]


async def test_an_attribute_the_participant_edited_says_so_as_its_origin(memory, seeded):
    model_id, own_id = seeded
    async with Host(MemoryService(memory)).run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        table = pilot.app.screen.query_one(MemoryTable)
        assert _cells(table, model_id)[3] == "assistant"
        table.move_cursor(row=table.get_row_index(model_id))
        await pilot.press("e")
        await pilot.pause()
        pilot.app.screen.query_one(Input).value = "The user works night shifts at a hospital."
        await pilot.press("enter")
        await pilot.pause()
        assert _cells(table, model_id)[3] == "assistant, edited by you"
        assert _cells(table, own_id)[3] == "you"
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(pilot.app.screen, AttributeDetailScreen)
        meta = str(pilot.app.screen.query_one(".attribute-meta", Static).render())
        assert "from assistant, edited by you" in meta
