"""The first start's offer: a model server already runs on this computer; chat with one of its models instead of
the embedded one (studyapp.llm.discover found it)."""

from __future__ import annotations

from collections.abc import Sequence

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, OptionList
from textual.widgets.option_list import Option

from studyapp.llm.discover import LocalServer


class LocalServerScreen(ModalScreen[tuple[str, str] | None]):
    """Dismissed with (model, base_url) to use, or None to keep the embedded model."""

    BINDINGS = [Binding("escape", "keep", "Keep the embedded model")]
    AUTO_FOCUS = "#local-models"

    def __init__(self, servers: Sequence[LocalServer]) -> None:
        super().__init__(classes="dialog-screen")
        self.choices = [(model, server.base_url) for server in servers for model in server.models]
        self.options = [Option(f"{model}  ({server.name}, {server.base_url})")
                        for server in servers for model in server.models]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("A model server is running on this computer. Its models answer far better than the small "
                        "embedded one. Chat with one of them? (You can change this later in Settings, Ctrl+O.)",
                        classes="question", markup=False)
            yield OptionList(*self.options, id="local-models")
            with Horizontal(classes="buttons"):
                yield Button("Use this model", variant="primary", id="use")
                yield Button("Keep the embedded model", id="keep")

    def on_mount(self) -> None:
        self.query_one("#local-models", OptionList).highlighted = 0  # Enter takes the first model at once

    @on(OptionList.OptionSelected, "#local-models")
    def _selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self.choices[event.option_index])

    @on(Button.Pressed, "#use")
    def _use(self) -> None:
        index = self.query_one("#local-models", OptionList).highlighted
        self.dismiss(self.choices[index or 0])

    @on(Button.Pressed, "#keep")
    def action_keep(self) -> None:
        self.dismiss(None)
