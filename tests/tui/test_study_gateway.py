"""An enrolled study whose models the researchers provide through its server (via = "study"): each role's calls go
to ``{enrolled server}/llm/v1`` with the participant's token and the role, no API key is asked for, and the status
line, `studyapp doctor` and the problem record say so. The scripted model stands where the gateway answers."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner
from textual.widgets import Static

from studyapp.cli import cli
from studyapp.context import AppContext
from studyapp.llm.openai_compat import OpenAICompatModel
from studyapp.privacy.consent import ConsentService
from studyapp.secrets import set_api_key, set_participant_token
from studyapp.study.current import current_study, save_enrollment
from studyapp.study.models import role_settings, study_server
from studyapp.study.protocol import parse_protocol
from studyapp.study.roles import role_problems
from studyapp.tui.app import StudyApp
from studyapp.tui.services import Services
from tests.support.keyring import MemoryKeyring
from tests.support.protocols import STUDY_ROUTES, ratings_study
from tests.support.scripted_llm import ScriptedLLM, run_scripted_llm
from tests.tui.helpers import wait_for

TOKEN = "participant-token-xyz"
STUDY = "gateway-study"
ROUTES = STUDY_ROUTES + '''
[[models.judge]]
model = "local"
'''
PROTOCOL = ratings_study(STUDY, "Gateway study", ROUTES)
SIZE = (160, 36)


@pytest.fixture
def gateway(memory_keyring: MemoryKeyring) -> Iterator[ScriptedLLM]:
    with run_scripted_llm(prefix="/llm", api_key=TOKEN) as llm:
        yield llm


def enroll(data_dir: Path, server_url: str | None, *, token: bool = True) -> None:
    """Enrolled as `studyapp enroll` leaves an install: the protocol and server in the database, the token in the
    keyring (here the in-memory one)."""
    app_ctx = AppContext.create(data_dir)
    protocol = parse_protocol(PROTOCOL)
    save_enrollment(app_ctx.db, protocol, participant_id="p1", server_url=server_url)
    ConsentService(app_ctx.db).grant(protocol, ["ratings"])
    app_ctx.close()
    if token:
        set_participant_token(STUDY, TOKEN)


async def test_every_role_goes_through_the_enrolled_server_with_the_token(
        tmp_path: Path, gateway: ScriptedLLM, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STUDYAPP_API_KEY", "sk-not-for-the-study")
    set_api_key("default", "sk-not-for-the-study-either")
    enroll(tmp_path, gateway.server_url)
    services = Services(AppContext.create(tmp_path))
    # The chat took on the study's assistant at start (the study was joined outside the app).
    settings = services.model_settings()
    assert (settings.model, settings.base_url, settings.via_study) == (
        "gpt-4o-mini", f"{gateway.server_url}/llm/v1", STUDY)

    gateway.add_text("Happy to help.")
    gateway.add_json({"attributes": []})
    gateway.add_json({"decisions": [{"id": 1, "use": True, "rationale": "It fits the request."}]})
    gateway.add_json({"rating": 3})

    saved = services.chat.save_user_message(None, "Any dinner ideas?", memory_enabled=True)
    events = [event async for event in services.chat.reply(saved.conversation, saved.message)]
    assert events[-1].message.content == "Happy to help." and events[-1].message.status == "complete"
    assert [r.status for r in await services.extract(saved.conversation.id)] == ["ok", "idle"]
    services.memory.add("The user is vegetarian.")
    selection = await services.select_for(saved.conversation, saved.message)
    assert selection.selected == ["The user is vegetarian."]
    study_judge, local_judge = services.judge_models()
    assert isinstance(study_judge, OpenAICompatModel) and not isinstance(local_judge, OpenAICompatModel)
    assert (await study_judge.complete_json([{"role": "user", "content": "Rate."}], {"type": "object"})).value == {
        "rating": 3}
    await services.aclose()

    assert [(h["authorization"], h["x-studyapp-role"]) for h in gateway.request_headers] == [
        (f"Bearer {TOKEN}", role) for role in ("assistant", "extractor", "selector", "judge")]
    assert [r["model"] for r in gateway.requests] == ["gpt-4o-mini", "gpt-4o-mini", "small-model", "gpt-4o"]
    assert not any("sk-" in value for h in gateway.request_headers for value in h.values())
    assert role_problems(services.app_ctx.db) == []


def test_the_enrolled_server_wins_over_the_protocols(tmp_path: Path) -> None:
    app_ctx = AppContext.create(tmp_path)
    protocol = parse_protocol(PROTOCOL.replace('duration_days = 7', 'duration_days = 7\nserver_url = '
                                                                    '"https://protocol.example.org"'))
    save_enrollment(app_ctx.db, protocol, participant_id="p1", server_url="https://enrolled.example.org")
    study = current_study(app_ctx.db)
    assert study_server(study) == "https://enrolled.example.org"
    settings = role_settings(study, "judge.2", protocol.judges[0])
    assert (settings.base_url, settings.via_study, settings.role) == (
        "https://enrolled.example.org/llm/v1", STUDY, "judge")
    # Enrolled without a server of its own (an older record): the protocol's.
    save_enrollment(app_ctx.db, protocol, participant_id="p1", server_url=None)
    assert study_server(current_study(app_ctx.db)) == "https://protocol.example.org"
    app_ctx.close()


def test_without_a_token_every_role_says_the_models_come_with_enrollment(
        tmp_path: Path, gateway: ScriptedLLM) -> None:
    enroll(tmp_path, gateway.server_url, token=False)

    async def chat_and_extract() -> None:
        services = Services(AppContext.create(tmp_path))
        saved = services.chat.save_user_message(None, "I run marathons.", memory_enabled=True)
        events = [event async for event in services.chat.reply(saved.conversation, saved.message)]
        reply = events[-1].message
        assert reply.status == "error"
        assert "comes through the study's server and is available once you are enrolled: run `studyapp enroll" in (
            reply.error or "")
        assert [r.status for r in await services.extract(saved.conversation.id)] == ["unavailable"]
        [problem] = role_problems(services.app_ctx.db)
        assert (problem.role, problem.model) == ("extractor", "gpt-4o-mini")
        assert "available once you are enrolled" in problem.error
        await services.aclose()
        services.app_ctx.close()

    asyncio.run(chat_and_extract())
    assert gateway.requests == [], "nothing reaches the study's server without the token"

    # `studyapp doctor` runs its own event loop (so this test is not async).
    doctor = CliRunner().invoke(cli, ["doctor", "--data-dir", str(tmp_path)])
    out = doctor.output
    assert "model:           gpt-4o-mini via the study's server" in out, out
    assert (f"role models:     assistant: gpt-4o-mini via the study's server ({gateway.server_url})\n"
            f"                 extractor: gpt-4o-mini via the study's server ({gateway.server_url})\n"
            f"                 selector: small-model via the study's server ({gateway.server_url})\n"
            f"                 judge: gpt-4o via the study's server ({gateway.server_url})\n"
            "                 judge.2: the embedded model on this computer\n"
            "                 no participant token in the keyring: the study's models are available once you are "
            "enrolled (`studyapp enroll URL CODE` with the code from the research team)") in out, out
    assert "model answers:   no: The study's model 'gpt-4o-mini' comes through the study's server" in out, out
    assert "study models:    extractor (gpt-4o-mini) failing since" in out, out
    assert doctor.exit_code == 1  # the model check failed, in words
    assert gateway.requests == []


def test_doctor_with_the_token_names_the_routes_and_asks_for_nothing(tmp_path: Path,
                                                                     memory_keyring: MemoryKeyring) -> None:
    with run_scripted_llm(prefix="/llm", api_key=TOKEN) as gateway:
        enroll(tmp_path, gateway.server_url)
        Services(AppContext.create(tmp_path)).app_ctx.close()  # the app started once: the chat took on the study's
        gateway.add_text("Hello")
        out = CliRunner().invoke(cli, ["doctor", "--data-dir", str(tmp_path)]).output
        assert "model:           gpt-4o-mini via the study's server" in out, out
        assert f"role models:     assistant: gpt-4o-mini via the study's server ({gateway.server_url})" in out
        assert "no participant token" not in out
        assert "model answers:   yes ('Hello')" in out, out
        assert gateway.request_headers[-1]["x-studyapp-role"] == "assistant"


async def test_the_status_line_names_the_study_route(tmp_path: Path, gateway: ScriptedLLM) -> None:
    enroll(tmp_path / "data", gateway.server_url)
    gateway.add_text("Through the study.")
    app = StudyApp(AppContext.create(tmp_path / "data"))

    def status() -> str:
        return str(app.screen.query_one("#status", Static).render())

    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "Model: gpt-4o-mini via the study's server" in status(), what="the route")
        assert "extractor, selector, judge via the study's server" in status()
        await pilot.press(*"hello", "enter")
        await wait_for(pilot, lambda: gateway.requests != [], what="the chat request")
    assert gateway.request_headers[0]["x-studyapp-role"] == "assistant"
    assert gateway.request_headers[0]["authorization"] == f"Bearer {TOKEN}"


async def test_settings_keep_the_study_route_only_for_the_studys_server(tmp_path: Path, gateway: ScriptedLLM) -> None:
    from textual.widgets import Input, Label

    from studyapp.tui.screens.chat import ChatScreen
    from studyapp.tui.screens.settings import SettingsScreen
    from tests.tui.helpers import press_button

    enroll(tmp_path / "data", gateway.server_url)
    app = StudyApp(AppContext.create(tmp_path / "data"))
    async with app.run_test(size=SIZE) as pilot:
        for temperature, base_url, via_study in (("0.2", None, STUDY), ("0.2", "http://127.0.0.1:9/v1", None)):
            await pilot.press("ctrl+o")
            await wait_for(pilot, lambda: isinstance(app.screen, SettingsScreen), what="the settings")
            screen = app.screen
            if via_study:
                assert any("no API key is needed" in str(label.render()) for label in screen.query(Label))
            screen.query_one("#temperature", Input).value = temperature
            if base_url:
                screen.query_one("#base_url", Input).value = base_url
            await press_button(pilot, "#save")
            await wait_for(pilot, lambda: isinstance(app.screen, ChatScreen), what="the settings to close")
            settings = app.services.model_settings()
            assert (settings.params.temperature, settings.via_study) == (0.2, via_study)
        # Pointed elsewhere, the chat is a direct model: the study's token is not sent there.
        assert settings.describe() == "gpt-4o-mini at http://127.0.0.1:9/v1"


async def test_a_failing_judge_through_the_study_is_noted_until_it_works_again(
        tmp_path: Path, gateway: ScriptedLLM) -> None:
    from studyapp.store.comparisons import ComparisonStore
    from studyapp.store.conversations import ConversationStore
    from tests.study.test_judge import rated_comparison

    one_judge = PROTOCOL.replace('\n[[models.judge]]\nmodel = "local"\n', "")
    assert one_judge != PROTOCOL
    app_ctx = AppContext.create(tmp_path)
    protocol = parse_protocol(one_judge)
    save_enrollment(app_ctx.db, protocol, participant_id="p1", server_url=gateway.server_url)
    set_participant_token(STUDY, TOKEN)
    services = Services(app_ctx)
    rated_comparison(ConversationStore(app_ctx.db), ComparisonStore(app_ctx.db))
    budget = {"detail": "Used up.", "limit": "daily_tokens", "reset_at": "2099-01-01T00:00:00Z"}
    gateway.add_error(429, budget, headers={"Retry-After": "3600"})
    gateway.add_error(429, budget, headers={"Retry-After": "3600"})
    assert await services.judge_pending() == 0
    [problem] = role_problems(app_ctx.db)
    assert (problem.role, problem.model) == ("judge", "gpt-4o")
    assert problem.error.startswith("Today's model budget from the study is used up; it resets at ")
    assert any(p.startswith("Model problem: judge (gpt-4o) failing since") for p in services.status_parts())
    gateway.add_json({"rating": 3})
    gateway.add_json({"rating": 3})
    assert await services.judge_pending() == 2
    assert role_problems(app_ctx.db) == []
    assert {h["x-studyapp-role"] for h in gateway.request_headers} == {"judge"}
    await services.aclose()
    app_ctx.close()


def test_the_token_follows_the_server_enrolled_with_now_not_the_address_saved(tmp_path: Path) -> None:
    """The study's server moved and the participant enrolled again with the same protocol: the saved chat settings
    still name the old address, but the token only ever goes to the server enrolled with now."""
    app_ctx = AppContext.create(tmp_path)
    protocol = parse_protocol(PROTOCOL)
    save_enrollment(app_ctx.db, protocol, participant_id="p1", server_url="http://old.example.org:8000")
    services = Services(app_ctx)
    assert services.model_settings().base_url == "http://old.example.org:8000/llm/v1"
    save_enrollment(app_ctx.db, protocol, participant_id="p2", server_url="https://new.example.org")
    settings = app_ctx.model_settings()
    assert (settings.base_url, settings.via_study) == ("https://new.example.org/llm/v1", STUDY)
    # Enrolled in another study since: no address at all for this study's route (the model says to enroll).
    other = parse_protocol(ratings_study("other-study", "Other", ROUTES))
    save_enrollment(app_ctx.db, other, participant_id="p3", server_url="https://other.example.org")
    stale = replace(app_ctx.model_settings(), via_study=STUDY)
    app_ctx.save_model_settings(stale)
    assert app_ctx.model_settings().base_url is None
    app_ctx.close()
