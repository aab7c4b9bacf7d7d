"""The study's models, provided by the researchers, end to end: an app enrolled with the real collection server
chats, extracts, selects, compares and judges through the server's model gateway with no API key of its own; the
server counts the use per role and keeps no content; a used-up budget and a withdrawal are refused in words.

Real parts throughout: the collection server under uvicorn (SQLite and PostgreSQL), a scripted OpenAI-compatible
upstream on 127.0.0.1 that only accepts the researchers' key, `studyapp enroll` and `studyapp withdraw` on the
command line, and the app's own Services (the object the screens call).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from studyapp.cli import cli
from studyapp.context import AppContext
from studyapp.privacy.consent import ConsentService
from studyapp.secrets import get_participant_token
from studyapp.server.cli import cli as server_cli
from studyapp.server.gateway import WITHDRAWN
from studyapp.study.comparison import RatingResult
from studyapp.study.current import current_study
from studyapp.study.roles import role_problems
from studyapp.tui.services import Services
from tests.server import live as f
from tests.server.live import LiveServer
from tests.support.keyring import MemoryKeyring
from tests.support.protocols import STUDY_ROUTES
from tests.support.scripted_llm import ScriptedLLM, run_scripted_llm

UPSTREAM_KEY = "sk-researchers-only-4fJ9qLx2"
KEY_ENV = "STUDYAPP_TEST_UPSTREAM_KEY"
# Words that must never reach the server's database: the participant's message and the model's answers.
SECRET_WORDS = ("Thessaloniki-marathon", "Chickpea-tagine", "Oat-porridge-bowl", "Lentil-soup-pot")


@pytest.fixture
def live_with_routes(server_db: Path | str) -> Iterator[LiveServer]:
    storage, token = f.new_storage(server_db, f.PROTOCOL + STUDY_ROUTES)
    try:
        with f.serve(storage) as base_url:
            yield LiveServer(base_url, storage, token)
    finally:
        storage.close()


@pytest.fixture
def upstream(monkeypatch: pytest.MonkeyPatch) -> Iterator[ScriptedLLM]:
    monkeypatch.setenv(KEY_ENV, UPSTREAM_KEY)
    with run_scripted_llm(api_key=UPSTREAM_KEY) as llm:
        yield llm


def enroll(live: LiveServer, data_dir: Path) -> None:
    result = CliRunner().invoke(cli, ["enroll", live.base_url, live.code(), "--data-dir", str(data_dir)])
    assert result.exit_code == 0, result.output
    assert "The chat now uses gpt-4o-mini via the study's server: no API key is needed for it." in result.output
    app_ctx = AppContext.create(data_dir)
    ConsentService(app_ctx.db).grant(current_study(app_ctx.db).protocol, f.ALL_CATEGORIES)
    app_ctx.close()
    # The gateway serves a participant once the server has their consent: the app's uploader sends it.
    result = CliRunner().invoke(cli, ["sync", "--data-dir", str(data_dir)])
    assert result.exit_code == 0, result.output


async def a_day_through_the_gateway(data_dir: Path, upstream: ScriptedLLM) -> None:
    services = Services(AppContext.create(data_dir))
    upstream.add_text(f"Try a {SECRET_WORDS[1]} tonight.")
    upstream.add_json({"attributes": [{"statement": "The user is vegetarian.", "reason": "they said so",
                                       "confidence": 0.9, "evidence": [1]}]})
    saved = services.chat.save_user_message(
        None, f"I am vegetarian and training for the {SECRET_WORDS[0]}. Dinner ideas?", memory_enabled=True)
    events = [event async for event in services.chat.reply(saved.conversation, saved.message)]
    assert events[-1].message.status == "complete", events[-1].message.error
    assert events[-1].message.content == f"Try a {SECRET_WORDS[1]} tonight."
    results = await services.extract(saved.conversation.id)
    assert "ok" in [r.status for r in results], results

    request = services.chat.store.add_message(saved.conversation.id, "user", "And breakfast?")
    upstream.add_json({"decisions": [{"id": 1, "use": True, "rationale": "Breakfast depends on diet."}]})
    selection = await services.select_for(saved.conversation, request)
    assert selection.error is None and len(selection.selected) == 1

    # Both arms of a comparison come through the gateway as the assistant.
    upstream.add_text(f"An {SECRET_WORDS[2]} with nuts.")
    upstream.add_text(f"A {SECRET_WORDS[3]} is hearty.")
    runner = services.comparison_runner()
    outcome = await runner.run(saved.conversation.id, request, selection.selected)
    assert outcome.comparison_id is not None
    runner.record_result(RatingResult(status="rated", comparison_id=outcome.comparison_id,
                                      personalized_side=outcome.personalized_side, shown_choice=2,
                                      chosen_side="left"))
    upstream.add_json({"rating": 2})
    upstream.add_json({"rating": 4})
    assert await services.judge_pending() == 2
    assert role_problems(services.app_ctx.db) == []
    await services.aclose()
    services.app_ctx.close()


def researchers_configure(live: LiveServer, upstream: ScriptedLLM) -> None:
    """The researchers' side: the study's model names, served by the upstream, the key in the server's environment."""
    for name in ("gpt-4o-mini", "small-model", "gpt-4o"):
        result = CliRunner().invoke(server_cli, ["models", "add", name, "--base-url", upstream.base_url,
                                                 "--upstream-model", upstream.model, "--api-key-env", KEY_ENV,
                                                 "--db", live.db_arg])
        assert result.exit_code == 0, result.output


def test_an_enrolled_app_uses_the_studys_models_through_its_server_with_no_api_key(
        live_with_routes: LiveServer, upstream: ScriptedLLM, memory_keyring: MemoryKeyring, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    live = live_with_routes
    monkeypatch.delenv("STUDYAPP_API_KEY", raising=False)
    researchers_configure(live, upstream)
    data_dir = tmp_path / "participant"
    enroll(live, data_dir)
    token = get_participant_token(f.STUDY_ID)
    assert token

    asyncio.run(a_day_through_the_gateway(data_dir, upstream))

    # The upstream saw only the researchers' key, and the upstream's own model name; never the participant's token.
    assert {h["authorization"] for h in upstream.request_headers} == {f"Bearer {UPSTREAM_KEY}"}
    assert {r["model"] for r in upstream.requests} == {upstream.model}
    assert not any(token in value for h in upstream.request_headers for value in h.values())
    # No API key was ever stored or asked for on the participant's side.
    assert not [name for name in memory_keyring.passwords if "api_key" in str(name)]

    # The server counted the use per role (chat + both arms as the assistant, the judge in both orders) ...
    by_role = {row["role"]: row["requests"] for row in live.storage.gateway_usage(("role",))}
    assert by_role == {"assistant": 3, "extractor": 1, "selector": 1, "judge": 2}
    # ... and kept none of what was written or answered.
    dump = live.dump()
    assert not [word for word in SECRET_WORDS if word in dump]
    usage = CliRunner().invoke(server_cli, ["usage", "--by", "role", "--db", live.db_arg])
    assert usage.exit_code == 0 and "assistant" in usage.output and "judge" in usage.output, usage.output


def test_over_budget_and_after_withdrawal_the_app_says_so_in_words(
        live_with_routes: LiveServer, upstream: ScriptedLLM, memory_keyring: MemoryKeyring, tmp_path: Path) -> None:
    live = live_with_routes
    researchers_configure(live, upstream)
    data_dir = tmp_path / "participant"
    enroll(live, data_dir)
    # A day's budget of one token: the first request is admitted (nothing used yet), its use exhausts the day.
    result = CliRunner().invoke(server_cli, ["models", "limits", "--daily-tokens", "1", "--db", live.db_arg])
    assert result.exit_code == 0, result.output

    async def two_messages() -> tuple[str, str]:
        services = Services(AppContext.create(data_dir))
        errors = []
        for text in ("First question?", "Second question?"):
            saved = services.chat.save_user_message(None, text, memory_enabled=False)
            events = [event async for event in services.chat.reply(saved.conversation, saved.message)]
            errors.append(events[-1].message.error or "")
        await services.aclose()
        services.app_ctx.close()
        return errors[0], errors[1]

    first, second = asyncio.run(two_messages())
    assert first == ""
    assert second.startswith("Today's model budget from the study is used up; it resets at "), second
    assert len(upstream.requests) == 1  # the refused request never reached the upstream

    token = get_participant_token(f.STUDY_ID)
    withdrawal = CliRunner().invoke(cli, ["withdraw", "--yes", "--data-dir", str(data_dir)])
    assert withdrawal.exit_code == 0, withdrawal.output
    # The app forgot its token; a copy of it (say, a stale process) is refused at once, in the contract's words.
    refused = httpx.post(f"{live.base_url}/llm/v1/chat/completions",
                         json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello?"}]},
                         headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert refused.status_code == 403
    assert refused.json()["detail"] == WITHDRAWN

    async def after_withdrawal() -> str:
        services = Services(AppContext.create(data_dir))
        saved = services.chat.save_user_message(None, "Still there?", memory_enabled=False)
        events = [event async for event in services.chat.reply(saved.conversation, saved.message)]
        await services.aclose()
        services.app_ctx.close()
        return events[-1].message.error or ""

    error = asyncio.run(after_withdrawal())
    assert error and "Traceback" not in error, error
    assert len(upstream.requests) == 1  # neither refused request reached the upstream
