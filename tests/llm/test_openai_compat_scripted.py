"""OpenAICompatModel over real HTTP against the scripted server: streaming, JSON modes, error mapping."""

from __future__ import annotations

import pytest

from studyapp.llm.base import (
    ChatModel,
    ChatParams,
    MalformedResponse,
    ModelAuthError,
    ModelNotFound,
    ModelRateLimited,
    ModelServerError,
)
from studyapp.llm.openai_compat import OpenAICompatModel
from tests.support.scripted_llm import ScriptedLLM, run_scripted_llm

MESSAGES = [{"role": "user", "content": "Hello"}]
SCHEMA = {"title": "Answer", "type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}


async def collect(model: OpenAICompatModel, params: ChatParams | None = None) -> list[str]:
    return [delta async for delta in model.stream(MESSAGES, params)]


async def test_stream_yields_deltas_and_sends_parameters(scripted_llm: ScriptedLLM) -> None:
    scripted_llm.add_text("Hello there, participant.", keepalive=True)
    model = OpenAICompatModel(scripted_llm.base_url, "scripted-model")
    assert isinstance(model, ChatModel) and model.name == "scripted-model"
    try:
        deltas = await collect(model, ChatParams(temperature=0.2, max_tokens=16, seed=7))
    finally:
        await model.aclose()
    assert deltas == ["Hello", " there,", " participant."]
    sent = scripted_llm.last_request
    assert sent["stream"] is True
    assert sent["messages"] == MESSAGES
    assert (sent["model"], sent["temperature"], sent["max_tokens"], sent["seed"]) == ("scripted-model", 0.2, 16, 7)


async def test_api_key_goes_only_in_the_authorization_header() -> None:
    with run_scripted_llm(api_key="sk-secret-123") as llm:
        llm.add_text("fine")
        model = OpenAICompatModel(llm.base_url, "scripted-model", api_key="sk-secret-123")
        assert "sk-secret" not in repr(model)
        assert await collect(model) == ["fine"]
        assert llm.request_headers[-1]["authorization"] == "Bearer sk-secret-123"
        wrong = OpenAICompatModel(llm.base_url, "scripted-model", api_key="sk-wrong-456")
        with pytest.raises(ModelAuthError) as caught:
            await collect(wrong)
        await model.aclose()
        await wrong.aclose()
    assert "API key" in str(caught.value) and "STUDYAPP_API_KEY" in str(caught.value)
    assert "sk-wrong-456" not in str(caught.value) and "sk-wrong-456" not in (caught.value.detail or "")


async def test_missing_key_says_none_is_set() -> None:
    with run_scripted_llm(api_key="sk-secret-123") as llm:
        model = OpenAICompatModel(llm.base_url, "scripted-model")
        with pytest.raises(ModelAuthError, match="none is set"):
            await collect(model)
        await model.aclose()


async def test_unknown_model_names_the_model() -> None:
    with run_scripted_llm(known_models=["real-model"]) as llm:
        model = OpenAICompatModel(llm.base_url, "no-such-model")
        with pytest.raises(ModelNotFound, match="no-such-model"):
            await collect(model)
        assert await model.list_models() == ["real-model"]
        await model.aclose()


async def test_json_schema_used_when_supported(scripted_llm: ScriptedLLM) -> None:
    scripted_llm.add_json({"ok": True})
    model = OpenAICompatModel(scripted_llm.base_url, "scripted-model")
    result = await model.complete_json(MESSAGES, SCHEMA, ChatParams(max_tokens=32))
    await model.aclose()
    assert result.value == {"ok": True}
    assert result.raw == '{"ok": true}'
    sent = scripted_llm.last_request
    assert sent["stream"] is False
    assert sent["response_format"] == {"type": "json_schema", "json_schema": {"name": "Answer", "schema": SCHEMA}}
    assert model.json_mode == "json_schema"


async def test_falls_back_to_json_object_then_remembers() -> None:
    with run_scripted_llm(supported_response_formats={"text", "json_object"}) as llm:
        llm.add_json({"ok": False})
        llm.add_json({"ok": True})
        model = OpenAICompatModel(llm.base_url, "scripted-model")
        first = await model.complete_json(MESSAGES, SCHEMA)
        second = await model.complete_json(MESSAGES, SCHEMA)
        await model.aclose()
    assert (first.value, second.value) == ({"ok": False}, {"ok": True})
    kinds = [(r.get("response_format") or {}).get("type") for r in llm.requests]
    # One rejected json_schema attempt, then json_object (with the schema attached), then straight to it.
    assert kinds == ["json_schema", "json_object", "json_object"]
    assert llm.requests[1]["response_format"]["schema"] == SCHEMA
    assert "JSON Schema" in llm.requests[1]["messages"][0]["content"]
    assert model.json_mode == "json_object_schema"


async def test_falls_back_to_plain_prompt() -> None:
    with run_scripted_llm(supported_response_formats={"text"}) as llm:
        llm.add_raw_content('```json\n{"ok": true}\n```')
        model = OpenAICompatModel(llm.base_url, "scripted-model")
        result = await model.complete_json([{"role": "system", "content": "Be brief."}, *MESSAGES], SCHEMA)
        await model.aclose()
    assert result.value == {"ok": True}
    kinds = [r.get("response_format", {}).get("type") for r in llm.requests]
    assert kinds == ["json_schema", "json_object", "json_object", None]
    system = llm.requests[-1]["messages"][0]
    assert system["role"] == "system" and system["content"].startswith("Be brief.") and '"ok"' in system["content"]
    assert model.json_mode == "prompt"


async def test_unparseable_json_gives_none_with_raw(scripted_llm: ScriptedLLM) -> None:
    scripted_llm.add_raw_content("{not json")
    model = OpenAICompatModel(scripted_llm.base_url, "scripted-model")
    result = await model.complete_json(MESSAGES, SCHEMA)
    await model.aclose()
    assert result.value is None and result.raw == "{not json"


async def test_disconnect_mid_stream_keeps_partial_text(scripted_llm: ScriptedLLM) -> None:
    scripted_llm.add_disconnect("The first half")
    model = OpenAICompatModel(scripted_llm.base_url, "scripted-model")
    received: list[str] = []
    with pytest.raises(MalformedResponse, match="received so far is kept"):
        async for delta in model.stream(MESSAGES):
            received.append(delta)
    await model.aclose()
    assert "".join(received) == "The first half"


async def test_error_statuses_over_http(scripted_llm: ScriptedLLM) -> None:
    scripted_llm.add_error(429, {"error": {"message": "Rate limit reached"}}, headers={"Retry-After": "7"})
    scripted_llm.add_error(503, "upstream overloaded")
    model = OpenAICompatModel(scripted_llm.base_url, "scripted-model")
    with pytest.raises(ModelRateLimited) as limited:
        await collect(model)
    with pytest.raises(ModelServerError, match="upstream overloaded") as failed:
        await model.complete_json(MESSAGES, SCHEMA)
    await model.aclose()
    assert limited.value.retry_after == 7 and "7 s" in str(limited.value)
    assert failed.value.retryable


async def test_stopping_early_closes_the_request(scripted_llm: ScriptedLLM) -> None:
    reply = scripted_llm.add_text("one two three four five", hold_after=2)
    model = OpenAICompatModel(scripted_llm.base_url, "scripted-model")
    stream = model.stream(MESSAGES)
    assert await anext(stream) == "one"
    await stream.aclose()
    await model.aclose()
    reply.release()
    assert reply.client_closed.wait(10)
    assert not reply.finished.is_set()
    # The model still works after an abandoned stream.
    scripted_llm.add_text("again")
    model2 = OpenAICompatModel(scripted_llm.base_url, "scripted-model")
    assert await collect(model2) == ["again"]
    await model2.aclose()


async def test_api_key_never_reaches_the_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    with run_scripted_llm(api_key="sk-right-789") as llm:
        llm.add_text("hello")
        good = OpenAICompatModel(llm.base_url, "scripted-model", api_key="sk-right-789")
        bad = OpenAICompatModel(llm.base_url, "scripted-model", api_key="sk-wrong-000")
        assert await collect(good) == ["hello"]
        with pytest.raises(ModelAuthError):
            await bad.complete_json(MESSAGES, SCHEMA)
        await good.aclose()
        await bad.aclose()
    assert "POST" in caplog.text or "chat/completions" in caplog.text  # the requests were logged ...
    assert "sk-right-789" not in caplog.text and "sk-wrong-000" not in caplog.text  # ... without the keys
