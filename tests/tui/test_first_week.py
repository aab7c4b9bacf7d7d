"""The rough edges a participant meets in their first week: what the screens say, and that they do it."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Input, RadioSet

from studyapp.context import AppContext
from studyapp.tui.app import StudyApp
from studyapp.tui.screens.chat import ChatScreen
from studyapp.tui.screens.settings import SettingsScreen
from studyapp.tui.widgets.message_view import MessageView
from tests.support.keyring import MemoryKeyring
from tests.support.scripted_llm import ScriptedLLM
from tests.tui.helpers import wait_for, wait_for_toast

SIZE = (110, 36)
SMALL = (80, 24)


async def press_button(pilot, selector: str) -> None:  # type: ignore[no-untyped-def]
    button = pilot.app.screen.query_one(selector)
    await wait_for(pilot, lambda: not button.has_class("-active"), what=f"{selector} to be ready")
    button.focus()
    await pilot.pause()
    await pilot.press("enter")
    await pilot.pause()


# Settings: the participant's choice wins over --model/--base-url for the rest of the run -------------------------

async def test_settings_choice_overrides_the_command_line_for_this_run(
    tmp_path: Path, scripted_llm: ScriptedLLM, memory_keyring: MemoryKeyring
) -> None:
    # Started as `studyapp --model gone --base-url http://127.0.0.1:9/v1`: nothing answers there.
    app_ctx = AppContext.create(tmp_path / "data", model="gone", base_url="http://127.0.0.1:9/v1")
    app = StudyApp(app_ctx, extract_debounce_s=None)
    scripted_llm.add_text("Hello from the chosen model.")
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await pilot.press("ctrl+o")
        await wait_for(pilot, lambda: isinstance(app.screen, SettingsScreen), what="the settings")
        screen = app.screen
        assert isinstance(screen.focused, RadioSet) and screen.focused.id == "kind", screen.focused
        screen.query_one("#base_url", Input).value = scripted_llm.base_url
        screen.query_one("#model", Input).value = scripted_llm.model
        await press_button(pilot, "#save")
        await wait_for(pilot, lambda: isinstance(app.screen, ChatScreen), what="the settings to close")
        notice = await wait_for_toast(pilot, lambda t: "Now chatting with" in t, what="the settings notice")
        assert f"{scripted_llm.model} at {scripted_llm.base_url}" in notice
        assert "--model" in notice and "rest of this run" in notice
        settings = app.services.model_settings()
        assert (settings.model, settings.base_url) == (scripted_llm.model, scripted_llm.base_url)
        await pilot.press(*"hi", "enter")
        await app.workers.wait_for_complete()
        await pilot.pause()
        replies = [v.message for v in app.screen.query(MessageView) if v.message.role == "assistant"]
        assert [(m.content, m.status) for m in replies] == [("Hello from the chosen model.", "complete")]
