"""Choose the model: the embedded offline model or an OpenAI-compatible endpoint.

The API key typed here goes to the OS keyring (studyapp.secrets), never to the database. Where there is no
keyring, the participant may tick "Keep the API key in a file" (a private file outside the data dir).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, RadioButton, RadioSet

from studyapp.llm.base import ChatParams
from studyapp.llm.config import LOCAL, ModelSettings, default_params


@dataclass
class SettingsResult:
    settings: ModelSettings
    api_key: str | None
    api_key_in_file: bool = False  # the participant chose the private file (no keyring on this computer)


class SettingsScreen(ModalScreen[SettingsResult | None]):
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, current: ModelSettings, *, keyring_hint: str = "") -> None:
        super().__init__(classes="dialog-screen")
        self.current = current
        self.keyring_hint = keyring_hint

    def compose(self) -> ComposeResult:
        remote = not self.current.is_local
        with VerticalScroll(classes="dialog settings"):
            yield Label("Model", classes="question")
            with RadioSet(id="kind"):
                yield RadioButton("Embedded offline model (SmolLM2-135M)", value=not remote, id="local")
                yield RadioButton("OpenAI-compatible server", value=remote, id="remote")
            yield Label("Base URL (e.g. http://127.0.0.1:8080/v1)")
            yield Input(self.current.base_url or "", id="base_url", disabled=not remote)
            yield Label("Model name")
            yield Input("" if self.current.is_local else self.current.model, id="model", disabled=not remote)
            if self.current.via_study:
                yield Label("The study's server provides this model: no API key is needed.", markup=False)
            yield Label("API key (kept in the OS keyring; leave empty to keep the saved one)")
            yield Input("", password=True, id="api_key", disabled=not remote)
            if self.keyring_hint:
                yield Label(self.keyring_hint, classes="warning", markup=False)
                # Offered only without a keyring: a file is the participant's explicit choice, never a fallback.
                yield Checkbox("Keep the API key in a file only I can read", id="api-key-in-file",
                               disabled=not remote)
            yield Label("Temperature (0-2)")
            yield Input(str(self.current.params.temperature), id="temperature")
            yield Label("Maximum reply tokens")
            yield Input(str(self.current.params.max_tokens or ""), id="max_tokens")
            yield Label("", id="settings-error", classes="error", markup=False)
            with Horizontal(classes="buttons"):
                yield Button("Save", variant="primary", id="save")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        # The first thing to decide is which model: start there rather than on the scrolling container.
        self.query_one("#kind", RadioSet).focus()

    def _base_params(self, remote: bool) -> ChatParams:
        """The parameters the chosen kind starts from: the current ones, or on a change of kind that kind's
        defaults (the embedded model's are for it only)."""
        if remote != (not self.current.is_local):
            return default_params("" if remote else LOCAL)
        return self.current.params

    @on(RadioSet.Changed, "#kind")
    def _kind_changed(self, event: RadioSet.Changed) -> None:
        remote = event.pressed.id == "remote"
        for field in ("#base_url", "#model", "#api_key"):
            self.query_one(field, Input).disabled = not remote
        for checkbox in self.query("#api-key-in-file").results(Checkbox):
            checkbox.disabled = not remote
        params = self._base_params(remote)
        self.query_one("#temperature", Input).value = str(params.temperature)
        self.query_one("#max_tokens", Input).value = str(params.max_tokens or "")

    def _error(self, text: str) -> None:
        self.query_one("#settings-error", Label).update(text)

    def _collect(self) -> SettingsResult | None:
        remote = self.query_one("#remote", RadioButton).value
        try:
            temperature = float(self.query_one("#temperature", Input).value or 0.7)
        except ValueError:
            self._error("Temperature must be a number between 0 and 2.")
            return None
        if not 0 <= temperature <= 2:
            self._error("Temperature must be between 0 and 2.")
            return None
        raw_max = self.query_one("#max_tokens", Input).value.strip()
        if raw_max and (not raw_max.isdigit() or int(raw_max) < 1):
            self._error("Maximum reply tokens must be a whole number of at least 1 (or empty for no limit).")
            return None
        params = replace(self._base_params(remote), temperature=temperature,
                         max_tokens=int(raw_max) if raw_max else None)
        if not remote:
            return SettingsResult(replace(self.current, model=LOCAL, params=params), None)
        base_url = self.query_one("#base_url", Input).value.strip()
        model = self.query_one("#model", Input).value.strip()
        if not base_url.startswith(("http://", "https://")):
            self._error("Base URL must start with http:// or https://, e.g. http://127.0.0.1:8080/v1")
            return None
        if not model or model == LOCAL:
            self._error("Enter the model name the server offers (for example llama3.1:8b or gpt-4o-mini).")
            return None
        api_key = self.query_one("#api_key", Input).value.strip() or None
        in_file = any(c.value for c in self.query("#api-key-in-file").results(Checkbox))
        base_url = base_url.rstrip("/")
        # The study's participant token goes only to the study's own server: another address is a direct endpoint.
        via_study = self.current.via_study if base_url == self.current.base_url and not api_key else None
        return SettingsResult(
            replace(self.current, model=model, base_url=base_url, params=params, via_study=via_study), api_key,
            in_file
        )

    @on(Button.Pressed, "#save")
    def _save(self) -> None:
        result = self._collect()
        if result is not None:
            self.dismiss(result)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)


__all__ = ["ChatParams", "SettingsResult", "SettingsScreen"]
