"""Joining a study: the server address and the one-time code the research team gave the participant.

On a computer without a keyring the participant may tick "Keep the token in a file" (studyapp.secrets): an
explicit choice, never made for them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label

# Called as enroll(url, code, store_token_in_file=...), like Participation.enroll.
Enroll = Callable[..., Awaitable[Any]]


class EnrollScreen(ModalScreen[Any]):
    """Dismisses with whatever ``enroll`` returned, or None if the participant cancelled."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, enroll: Enroll) -> None:
        super().__init__(classes="dialog-screen")
        self._enroll = enroll

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog enroll"):
            yield Label("Join a study", classes="question")
            yield Label("Study server address (from the research team)", markup=False)
            yield Input(placeholder="https://study.example.org", id="url")
            yield Label("Enrollment code", markup=False)
            yield Input(placeholder="one-time code", id="code")
            yield Checkbox("Keep the token in a file only I can read (for computers without a keyring)",
                           id="token-in-file")
            yield Label("", id="enroll-error", classes="error", markup=False)
            with Horizontal(classes="buttons"):
                yield Button("Join", variant="primary", id="join")
                yield Button("Cancel", id="cancel")

    @on(Input.Submitted, "#url")
    def _next(self) -> None:
        self.query_one("#code", Input).focus()

    @on(Input.Submitted, "#code")
    @on(Button.Pressed, "#join")
    def _join(self) -> None:
        url = self.query_one("#url", Input).value.strip()
        code = self.query_one("#code", Input).value.strip()
        if not url or not code:
            self.query_one("#enroll-error", Label).update("Enter both the server address and the code.")
            return
        self.query_one("#join", Button).disabled = True
        self.query_one("#enroll-error", Label).update("Joining…")
        self.run_enroll(url, code, self.query_one("#token-in-file", Checkbox).value)

    @work(exclusive=True)
    async def run_enroll(self, url: str, code: str, store_token_in_file: bool) -> None:
        try:
            result = await self._enroll(url, code, store_token_in_file=store_token_in_file)
        except Exception as exc:  # every failure is shown in the dialog; the code may be tried again
            self.query_one("#enroll-error", Label).update(str(exc))
            self.query_one("#join", Button).disabled = False
            return
        self.dismiss(result)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
