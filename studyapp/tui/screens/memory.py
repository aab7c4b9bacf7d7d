"""The participant's memory: every attribute the assistant holds, with what supports it, and their say on it.

A standalone screen: it gets a ``MemoryService`` (studyapp.personalize.memory) and never touches SQL.
Keys: Enter opens an attribute (evidence messages and history); 1 / 2 / 3 label it *makes sense* / *maybe* /
*doesn't make sense*; e edits, f forgets (after confirming), a adds one of the participant's own; Esc closes.
Seeing memory can change how the participant rates comparisons, so the screen reports when it was opened
once it is left (``on_viewed``; the app records it as a memory view).
"""

from __future__ import annotations

from collections.abc import Callable

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Footer, Label

from studyapp.domain import MemoryChangeError
from studyapp.personalize.memory import MemoryService
from studyapp.store.util import now
from studyapp.tui.screens.dialogs import ConfirmScreen, PromptScreen
from studyapp.tui.widgets.memory_detail import AttributeDetail
from studyapp.tui.widgets.memory_table import LABEL_TEXT, MemoryTable

HELP = ("Enter: open · 1 makes sense · 2 maybe · 3 doesn't make sense · e edit · f forget · a add · "
        "Esc close")
EMPTY = ("Nothing in memory yet. As you chat, the assistant notes things about you here; "
         "press a to add one yourself.")
# Called when the participant leaves a screen that showed their memory: (opened_at, screen).
ViewHook = Callable[[str, str], None]


class AttributeDetailScreen(ModalScreen[None]):
    CSS_PATH = "../styles/memory.tcss"
    BINDINGS = [Binding("escape", "close", "Close"), Binding("enter", "close", show=False)]

    def __init__(self, detail: AttributeDetail) -> None:
        super().__init__()
        self.detail = detail

    def compose(self) -> ComposeResult:
        yield self.detail

    def action_close(self) -> None:
        self.dismiss(None)


class MemoryScreen(Screen[None]):
    CSS_PATH = "../styles/memory.tcss"
    BINDINGS = [
        Binding("escape", "close", "Close"),
        Binding("enter", "open", "Open", show=False),
        # The labels are in the help line above the table: with them the footer is cut off at 80 columns.
        Binding("1", "label('makes_sense')", "Makes sense", show=False),
        Binding("2", "label('maybe')", "Maybe", show=False),
        Binding("3", "label('doesnt_make_sense')", "Doesn't make sense", show=False),
        Binding("e", "edit", "Edit"),
        Binding("f", "forget", "Forget"),
        Binding("a", "add", "Add"),
    ]

    def __init__(self, service: MemoryService, *, on_viewed: ViewHook) -> None:
        super().__init__()
        self.service = service
        self.on_viewed = on_viewed
        self.opened_at: str | None = None

    def compose(self) -> ComposeResult:
        yield Label("Your memory: what the assistant believes about you", id="memory-title")
        yield Label(HELP, id="memory-help")
        yield Label(EMPTY, id="memory-empty", markup=False)
        yield MemoryTable(id="memory-table")
        yield Footer()

    def on_mount(self) -> None:
        self.opened_at = now()
        self.refresh_rows()
        self.query_one(MemoryTable).focus()

    def on_unmount(self) -> None:
        # However it is left (Esc, or the app closing over it); its dialogs on top are part of the same look.
        if self.opened_at is not None:
            self.on_viewed(self.opened_at, "memory_screen")

    def on_screen_resume(self) -> None:
        # Back from a dialog or another screen: memory may have changed meanwhile (background extraction).
        self.refresh_rows()

    def refresh_rows(self) -> None:
        """Reload the attributes (the app calls this too after a background extraction changed memory)."""
        rows = self.service.attributes()
        self.query_one(MemoryTable).show_rows(rows)
        self.query_one("#memory-empty").display = not rows

    @property
    def current_id(self) -> str | None:
        return self.query_one(MemoryTable).current_id

    # -- actions -----------------------------------------------------------------------------

    @on(DataTable.RowSelected)
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_open()

    def action_open(self) -> None:
        attribute_id = self.current_id
        attribute = self.service.get(attribute_id) if attribute_id else None
        if attribute is None:
            return
        detail = AttributeDetail(attribute, self.service.evidence(attribute.id), self.service.history(attribute.id))
        self.app.push_screen(AttributeDetailScreen(detail))

    def action_label(self, label: str) -> None:
        attribute_id = self.current_id
        if attribute_id is None:
            return
        try:
            self.service.label(attribute_id, label, source="memory_screen")
        except MemoryChangeError as exc:
            self.notify(str(exc), severity="error")
            return
        self.refresh_rows()
        self.notify(f"Labeled: {LABEL_TEXT[label]}")

    def action_edit(self) -> None:
        attribute_id = self.current_id
        attribute = self.service.get(attribute_id) if attribute_id else None
        if attribute is None:
            return

        def done(text: str | None) -> None:
            if text is None or text.strip() == attribute.text:
                return
            try:
                self.service.edit(attribute.id, text)
            except MemoryChangeError as exc:
                self.notify(str(exc), severity="error")
                return
            self.refresh_rows()
            self.notify("Attribute changed.")

        self.app.push_screen(PromptScreen("Edit this attribute:", attribute.text), done)

    def action_forget(self) -> None:
        attribute_id = self.current_id
        attribute = self.service.get(attribute_id) if attribute_id else None
        if attribute is None:
            return

        def done(confirmed: bool | None) -> None:
            if not confirmed:
                return
            try:
                self.service.forget(attribute.id)
            except MemoryChangeError as exc:
                self.notify(str(exc), severity="error")
                return
            self.refresh_rows()
            self.notify("Forgotten: the assistant will not use it or note it again.")

        self.app.push_screen(
            ConfirmScreen(f"Forget “{attribute.text}”? The assistant will no longer use it.", "Forget"), done
        )

    def action_add(self) -> None:
        def done(text: str | None) -> None:
            if text is None:
                return
            try:
                self.service.add(text)
            except MemoryChangeError as exc:
                self.notify(str(exc), severity="error")
                return
            self.refresh_rows()
            self.notify("Added to your memory.")

        self.app.push_screen(PromptScreen("Something the assistant should know about you:"), done)

    def action_close(self) -> None:
        if len(self.app.screen_stack) > 1:
            self.app.pop_screen()
