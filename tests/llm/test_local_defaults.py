"""The embedded model's own sampling defaults (issue 17): what reaches llama.cpp, and what a participant's own
settings or an OpenAI-compatible endpoint get instead."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from studyapp.context import AppContext
from studyapp.llm import config
from studyapp.llm.base import ChatParams
from studyapp.llm.config import LOCAL, LOCAL_PARAMS, LOCAL_SYSTEM_PROMPT, ModelSettings, resolve
from studyapp.llm.factory import make_model
from studyapp.llm.local import LocalModel
from tests.support.scripted_llm import ScriptedLLM

HELLO = [{"role": "user", "content": "Say hello."}]


@pytest.fixture
def app_ctx(tmp_path: Path) -> Iterator[AppContext]:
    ctx = AppContext.create(tmp_path / "data")
    yield ctx
    ctx.close()


@pytest.fixture(scope="module")
def recorded() -> Iterator[tuple[LocalModel, list[dict[str, Any]]]]:
    """The app's embedded model (built by the factory) on the real weights, its llama.cpp calls recorded."""
    model = make_model(resolve(None))
    assert isinstance(model, LocalModel)
    asyncio.run(model.load())
    calls: list[dict[str, Any]] = []
    real = model._llama.create_chat_completion

    def recording(**kwargs: Any) -> Any:
        calls.append(kwargs)
        return real(**kwargs)

    model._llama.create_chat_completion = recording
    yield model, calls
    asyncio.run(model.aclose())


async def first_call(recorded: tuple[LocalModel, list[dict[str, Any]]], params: ChatParams) -> dict[str, Any]:
    """Start a reply, stop it at its first delta (the call is made by then), and return what llama.cpp got."""
    model, calls = recorded
    calls.clear()
    stream = model.stream(HELLO, params)
    try:
        await anext(stream)
    finally:
        await stream.aclose()
        await model.idle()
    assert len(calls) == 1
    return calls[0]


def test_the_embedded_model_has_its_own_defaults() -> None:
    # Otherwise the tests below could not tell the two apart.
    assert LOCAL_PARAMS != ChatParams()
    assert resolve(None).params == LOCAL_PARAMS
    assert resolve({"model": "llama3", "base_url": "http://127.0.0.1:9/v1"}).params == ChatParams()


@pytest.mark.slow
async def test_the_embedded_model_sends_its_defaults_and_system_prompt(
        app_ctx: AppContext, recorded: tuple[LocalModel, list[dict[str, Any]]]) -> None:
    sent = await first_call(recorded, app_ctx.model_settings().params)
    assert sent["temperature"] == LOCAL_PARAMS.temperature
    assert sent["max_tokens"] == LOCAL_PARAMS.max_tokens
    for key, value in LOCAL_PARAMS.extra.items():
        assert sent[key] == value, key
    assert sent["messages"][0] == {"role": "system", "content": LOCAL_SYSTEM_PROMPT}
    assert sent["messages"][1:] == HELLO


@pytest.mark.slow
async def test_a_participants_own_settings_win(app_ctx: AppContext,
                                               recorded: tuple[LocalModel, list[dict[str, Any]]]) -> None:
    # As the Settings screen saves them: the form's temperature and maximum over the current parameters.
    current = app_ctx.model_settings()
    app_ctx.save_model_settings(replace(current, params=replace(current.params, temperature=1.2, max_tokens=40)))
    sent = await first_call(recorded, app_ctx.model_settings().params)
    assert (sent["temperature"], sent["max_tokens"]) == (1.2, 40)
    assert sent["repeat_penalty"] == LOCAL_PARAMS.extra["repeat_penalty"]
    # Settings saved before the embedded model had defaults of its own are the participant's too.
    app_ctx.settings.set(config.SETTINGS_KEY, {"model": LOCAL, "params": {"temperature": 0.7, "max_tokens": 512}})
    sent = await first_call(recorded, app_ctx.model_settings().params)
    assert (sent["temperature"], sent["max_tokens"]) == (0.7, 512)


async def test_an_endpoint_keeps_the_generic_defaults(scripted_llm: ScriptedLLM) -> None:
    settings = resolve({"model": scripted_llm.model, "base_url": scripted_llm.base_url})
    model = make_model(settings, api_key="")
    try:
        reply = "".join([d async for d in model.stream(HELLO, settings.params)])
    finally:
        await model.aclose()
    assert reply
    body = scripted_llm.requests[-1]
    assert (body["temperature"], body["max_tokens"]) == (0.7, 512)
    assert not {"min_p", "repeat_penalty"} & body.keys()
    assert body["messages"] == HELLO


def test_moving_between_the_embedded_model_and_an_endpoint_starts_from_the_new_kinds_defaults(
        monkeypatch: pytest.MonkeyPatch) -> None:
    local = resolve(None)
    remote = local.with_model("llama3", "http://127.0.0.1:9/v1")
    assert remote.params == ChatParams()
    assert remote.with_model(LOCAL, None).params == LOCAL_PARAMS
    tuned = replace(remote, params=ChatParams(temperature=0.1))
    assert tuned.with_model("other", "http://127.0.0.1:9/v1").params == ChatParams(temperature=0.1)
    # STUDYAPP_MODEL naming an endpoint: the generic defaults, not the embedded model's.
    monkeypatch.setenv(config.ENV_MODEL, "llama3")
    assert resolve(None).params == ChatParams()
    assert ModelSettings.from_dict({"model": LOCAL}).params == LOCAL_PARAMS
