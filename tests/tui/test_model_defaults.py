"""The Settings screen and the embedded model's own sampling defaults (issue 17): the form shows the defaults of
the kind of model chosen, and an endpoint chosen there does not inherit the embedded model's parameters."""

from __future__ import annotations

from textual.widgets import Button, Input

from studyapp.llm.base import ChatParams
from studyapp.llm.config import LOCAL_PARAMS
from studyapp.tui.screens.chat import ChatScreen
from studyapp.tui.screens.settings import SettingsScreen
from tests.support.keyring import MemoryKeyring
from tests.tui.helpers import MakeApp, wait_for


async def test_choosing_an_endpoint_in_settings_starts_from_its_generic_defaults(
        make_app: MakeApp, memory_keyring: MemoryKeyring) -> None:
    app = make_app()
    async with app.run_test(size=(110, 36)) as pilot:
        await pilot.press("ctrl+o")
        await wait_for(pilot, lambda: isinstance(app.screen, SettingsScreen), what="the settings")
        screen = app.screen
        temperature = screen.query_one("#temperature", Input)
        assert temperature.value == str(LOCAL_PARAMS.temperature)
        await pilot.click("#remote")
        await wait_for(pilot, lambda: temperature.value == str(ChatParams().temperature),
                       what="the endpoint's default temperature")
        assert screen.query_one("#max_tokens", Input).value == str(ChatParams().max_tokens)
        screen.query_one("#base_url", Input).value = "http://127.0.0.1:9/v1"
        screen.query_one("#model", Input).value = "llama3"
        screen.query_one("#save", Button).focus()
        await pilot.pause()
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ChatScreen), what="the settings to close")
        assert app.services.model_settings().params == ChatParams()
        assert app.services.chat.params == ChatParams()
