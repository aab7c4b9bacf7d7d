"""Asking the participant about attributes the assistant newly inferred: a few at a time, when they choose to.

The participant opens this dialog themselves (F4 on the chat screen, the command palette, or a click on the
status line); the app never pushes it while they may be typing. Each attribute is shown with the assistant's
reason; 1 / 2 / 3 label it *makes sense* / *maybe* / *doesn't make sense* (the 2026 study's stage-1 scale);
Esc leaves the rest for later. A label is research data, so nothing answers the dialog during its first
moment on screen (``grace_s``): a keystroke that arrives then was meant for what was there before it.
Dismisses with the number of labels given.

"Later" is research data too: it records one dismissal, for the attribute on screen, the only unanswered one
the participant has seen (the ones after it were never shown, so they stay plain unlabeled). Like an answer, it
counts only after the grace period.

Seeing what the assistant believes can change how the participant rates comparisons, so the dialog reports
when it was opened once it is left (``on_viewed``; the app records it as a memory view).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static

from studyapp.domain import Attribute
from studyapp.personalize.memory import MemoryService
from studyapp.store.util import now
from studyapp.tui.screens.memory import ViewHook

CHOICES = {"1": ("makes_sense", "Makes sense"), "2": ("maybe", "Maybe"), "3": ("doesnt_make_sense",
                                                                            "Doesn't make sense")}
# Long enough for typing that was under way when the dialog appeared to stop; short enough not to be noticed.
GRACE_S = 0.6
HELP = "1, 2 or 3 to answer · Esc: later"


class LabelingScreen(ModalScreen[int]):
    # No button is focused at first, so a stray Enter or space never presses an answer.
    AUTO_FOCUS = ""
    BINDINGS = [
        Binding("1", "label('1')", "Makes sense"),
        Binding("2", "label('2')", "Maybe"),
        Binding("3", "label('3')", "Doesn't make sense"),
        # Not a letter: a letter would collide with typing.
        Binding("escape", "later", "Later"),
    ]

    def __init__(self, attributes: Sequence[Attribute], memory: MemoryService, *, on_viewed: ViewHook,
                 grace_s: float = GRACE_S) -> None:
        super().__init__(classes="dialog-screen")
        self.attributes = list(attributes)
        self.memory = memory
        self.on_viewed = on_viewed
        self.opened_at: str | None = None
        self.index = 0
        self.labeled = 0
        self.grace_s = grace_s
        # When the dialog last came to the front (time.monotonic()); None until it has been shown.
        self.shown_at: float | None = None

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog labeling"):
            yield Label("", id="labeling-progress", classes="question", markup=False)
            yield Label("The assistant now believes:", markup=False)
            yield Static("", id="labeling-text", classes="attribute-text", markup=False)
            yield Static("", id="labeling-reason", classes="attribute-reason", markup=False)
            yield Label("Does this make sense about you?", markup=False)
            with Horizontal(classes="buttons"):
                for key, (_, text) in CHOICES.items():
                    yield Button(f"{key} {text}", id=f"choice-{key}")
                yield Button("Later (Esc)", id="later")
            yield Label(HELP, classes="labeling-help", markup=False)

    def on_mount(self) -> None:
        self.opened_at = now()
        self._show()

    def on_unmount(self) -> None:
        if self.opened_at is not None:
            self.on_viewed(self.opened_at, "label_prompt")

    def on_screen_resume(self) -> None:
        # The grace period restarts whenever the dialog comes (back) to the front.
        self.shown_at = time.monotonic()

    @property
    def accepts_answers(self) -> bool:
        """Whether the dialog has been on screen long enough for a key press to be an answer to it."""
        return self.shown_at is not None and time.monotonic() - self.shown_at >= self.grace_s

    def _show(self) -> None:
        attribute = self.attributes[self.index]
        self.query_one("#labeling-progress", Label).update(
            f"About you: {self.index + 1} of {len(self.attributes)}")
        self.query_one("#labeling-text", Static).update(attribute.text)
        reason = f"Why: {attribute.reason}" if attribute.reason else ""
        self.query_one("#labeling-reason", Static).update(f"{reason} (confidence {attribute.confidence:.0%})")

    def action_label(self, key: str) -> None:
        if not self.accepts_answers:
            return
        label, _ = CHOICES[key]
        self.memory.label(self.attributes[self.index].id, label, source="label_prompt")
        self.labeled += 1
        self.index += 1
        if self.index >= len(self.attributes):
            self.dismiss(self.labeled)
        else:
            self._show()

    def action_later(self) -> None:
        if not self.accepts_answers:
            return
        if self.index < len(self.attributes):
            self.memory.dismiss(self.attributes[self.index].id, source="label_prompt")
        self.dismiss(self.labeled)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "later":
            self.action_later()
        elif event.button.id and event.button.id.startswith("choice-"):
            self.action_label(event.button.id.removeprefix("choice-"))
