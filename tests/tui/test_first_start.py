"""The first start: a one-line word on what the embedded model is for, and the offer of a model server that
already runs on this computer (a real server on 127.0.0.1, found through GET /v1/models)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from textual.widgets import OptionList

from studyapp.context import AppContext
from studyapp.llm.openai_compat import OpenAICompatModel
from studyapp.tui.app import StudyApp
from studyapp.tui.screens.chat import ChatScreen
from studyapp.tui.screens.local_server import LocalServerScreen
from tests.support.keyring import MemoryKeyring
from tests.support.net import bound_socket
from tests.support.scripted_llm import ScriptedLLM
from tests.tui.helpers import press_button, toasts, wait_for, wait_for_toast


def app_on(data_dir: Path, servers: Sequence[tuple[str, str]]) -> StudyApp:
    # No model_factory: the app builds its model from the saved settings, as it does for a participant.
    return StudyApp(AppContext.create(data_dir), extract_debounce_s=None, local_servers=servers)




def offered(app: StudyApp) -> bool:
    return isinstance(app.screen, LocalServerScreen) and bool(app.screen.query("#local-models"))


def welcomed(app: StudyApp) -> bool:
    return any("too small to judge answers by" in toast for toast in toasts(app))


async def test_the_first_start_offers_the_running_server_and_accepting_switches_the_model(
        tmp_path: Path, scripted_llm: ScriptedLLM, memory_keyring: MemoryKeyring) -> None:
    app = app_on(tmp_path / "data", [("llama.cpp server", scripted_llm.base_url)])
    async with app.run_test(notifications=True) as pilot:
        await wait_for_toast(pilot, lambda t: "too small to judge answers by" in t, what="the welcome")
        await wait_for(pilot, lambda: offered(app), what="the offer")
        listed = app.screen.query_one("#local-models", OptionList)
        assert [str(listed.get_option_at_index(i).prompt) for i in range(listed.option_count)] == [
            f"{scripted_llm.model}  (llama.cpp server, {scripted_llm.base_url})"]
        await press_button(pilot, "#use")
        await wait_for(pilot, lambda: not app.services.model_settings().is_local, what="the model to switch")
        settings = app.services.model_settings()
        assert (settings.model, settings.base_url) == (scripted_llm.model, scripted_llm.base_url)
        # The server's own generic parameters, not the embedded model's.
        assert "repeat_penalty" not in settings.params.extra
        assert isinstance(app.screen, ChatScreen)
        assert scripted_llm.model in str(app.screen.query_one("#status").render())
        await pilot.press(*"hello", "enter")
        await wait_for(pilot, lambda: len(scripted_llm.requests) == 1, what="the reply from the found server")
        assert scripted_llm.requests[0]["model"] == scripted_llm.model
        assert isinstance(app.services.chat.model, OpenAICompatModel)


async def test_declining_keeps_the_embedded_model(tmp_path: Path, scripted_llm: ScriptedLLM) -> None:
    app = app_on(tmp_path / "data", [("Ollama", scripted_llm.base_url)])
    async with app.run_test() as pilot:
        await wait_for(pilot, lambda: offered(app), what="the offer")
        await press_button(pilot, "#keep")
        await wait_for(pilot, lambda: isinstance(app.screen, ChatScreen), what="the offer to close")
        await app.workers.wait_for_complete()
        assert app.services.model_settings().is_local


async def test_no_offer_when_nothing_is_listening(tmp_path: Path) -> None:
    # Bound but not listening: a connection to it is refused while the test holds it.
    with bound_socket() as sock:
        port = sock.getsockname()[1]
        app = app_on(tmp_path / "data", [("Ollama", f"http://127.0.0.1:{port}/v1")])
        async with app.run_test(notifications=True) as pilot:
            await wait_for_toast(pilot, lambda t: "too small to judge answers by" in t, what="the welcome")
            await app.workers.wait_for_complete()
            await pilot.pause()
            assert isinstance(app.screen, ChatScreen)
            assert app.services.model_settings().is_local


async def test_no_welcome_and_no_offer_on_the_second_start(tmp_path: Path, scripted_llm: ScriptedLLM) -> None:
    servers = [("LM Studio", scripted_llm.base_url)]
    first = app_on(tmp_path / "data", servers)
    async with first.run_test() as pilot:
        await wait_for(pilot, lambda: offered(first), what="the first start's offer")
        await press_button(pilot, "#keep")
        await wait_for(pilot, lambda: isinstance(first.screen, ChatScreen), what="the offer to close")
    second = app_on(tmp_path / "data", servers)
    assert not second.services.first_start
    async with second.run_test(notifications=True) as pilot:
        await second.workers.wait_for_complete()
        await pilot.pause()
        assert isinstance(second.screen, ChatScreen)
        assert not welcomed(second)
