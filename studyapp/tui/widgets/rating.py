"""The rating bar: the study's 5-point comparative scale as buttons, each with its key (1-5).

Keys are bound by the screen; the bar shows the labels, accepts clicks and highlights the chosen point.
"""

from __future__ import annotations

from collections.abc import Sequence

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.message import Message
from textual.widgets import Button


class RatingBar(Horizontal):
    """One button per point on the scale; posts ``RatingBar.Chosen`` when one is clicked."""

    class Chosen(Message):
        def __init__(self, value: int) -> None:
            super().__init__()
            self.value = value

    def __init__(self, labels: Sequence[str], *, id: str | None = None) -> None:
        super().__init__(id=id, classes="rating-bar")
        self.labels = list(labels)
        self.value: int | None = None

    def compose(self) -> ComposeResult:
        for point, label in enumerate(self.labels, start=1):
            # Not focusable: keys 1-5 belong to the screen, and focus must not sit on one answer's side.
            button = Button(f"{point}  {label}", id=f"rate-{point}", classes="rating-point", compact=True)
            button.can_focus = False
            yield button

    def select(self, value: int) -> None:
        self.value = value
        for point in range(1, len(self.labels) + 1):
            self.query_one(f"#rate-{point}", Button).set_class(point == value, "-selected")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id and event.button.id.startswith("rate-"):
            self.post_message(self.Chosen(int(event.button.id.removeprefix("rate-"))))
