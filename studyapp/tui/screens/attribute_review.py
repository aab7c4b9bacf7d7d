"""Asking the participant about attributes the assistant newly inferred: a few at a time, between replies.

Each attribute is shown with the assistant's reason; 1 / 2 / 3 label it *makes sense* / *maybe* /
*doesn't make sense* (the 2026 study's stage-1 scale); ``l`` leaves the rest for later. Dismisses with the
number of labels given.
"""

from __future__ import annotations

from collections.abc import Sequence

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static

from studyapp.personalize.memory import MemoryService
from studyapp.store.memory import Attribute

CHOICES = {"1": ("makes_sense", "Makes sense"), "2": ("maybe", "Maybe"), "3": ("doesnt_make_sense",
                                                                            "Doesn't make sense")}


class AttributeReviewScreen(ModalScreen[int]):
    BINDINGS = [
        Binding("1", "label('1')", "Makes sense"),
        Binding("2", "label('2')", "Maybe"),
        Binding("3", "label('3')", "Doesn't make sense"),
        Binding("l,escape", "later", "Later"),
    ]

    def __init__(self, attributes: Sequence[Attribute], memory: MemoryService) -> None:
        super().__init__(classes="dialog-screen")
        self.attributes = list(attributes)
        self.memory = memory
        self.index = 0
        self.labeled = 0

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog attribute-review"):
            yield Label("", id="review-progress", classes="question", markup=False)
            yield Label("The assistant now believes:", markup=False)
            yield Static("", id="review-text", classes="attribute-text", markup=False)
            yield Static("", id="review-reason", classes="attribute-reason", markup=False)
            yield Label("Does this make sense about you?", markup=False)
            with Horizontal(classes="buttons"):
                for key, (_, text) in CHOICES.items():
                    yield Button(f"{key} {text}", id=f"choice-{key}")
                yield Button("Later", id="later")

    def on_mount(self) -> None:
        self._show()

    def _show(self) -> None:
        attribute = self.attributes[self.index]
        self.query_one("#review-progress", Label).update(
            f"About you: {self.index + 1} of {len(self.attributes)}")
        self.query_one("#review-text", Static).update(attribute.text)
        reason = f"Why: {attribute.reason}" if attribute.reason else ""
        self.query_one("#review-reason", Static).update(f"{reason} (confidence {attribute.confidence:.0%})")

    def action_label(self, key: str) -> None:
        label, _ = CHOICES[key]
        self.memory.label(self.attributes[self.index].id, label)
        self.labeled += 1
        self.index += 1
        if self.index >= len(self.attributes):
            self.dismiss(self.labeled)
        else:
            self._show()

    def action_later(self) -> None:
        self.dismiss(self.labeled)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "later":
            self.action_later()
        elif event.button.id and event.button.id.startswith("choice-"):
            self.action_label(event.button.id.removeprefix("choice-"))
