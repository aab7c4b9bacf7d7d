"""A model the study provides through its server (via = "study"), over real HTTP: the scripted server stands at the
gateway's path (``{server}/llm/v1``) and answers with the bodies the gateway contract gives (fault injection)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from studyapp.llm.base import (
    LLMError,
    ModelAuthError,
    ModelNotFound,
    ModelRateLimited,
    ModelServerError,
    ModelTimeout,
    ModelUnavailable,
)
from studyapp.llm.config import ModelSettings, gateway_url, resolve
from studyapp.llm.factory import make_model
from studyapp.llm.openai_compat import OpenAICompatModel, study_limit_message
from studyapp.secrets import set_api_key, set_participant_token
from tests.support.keyring import MemoryKeyring, memory_keyring  # noqa: F401
from tests.support.scripted_llm import ScriptedLLM, run_scripted_llm
from tests.support.timezone import machine_time_zone

TOKEN = "participant-token-abc"
STUDY = "s1"
MESSAGES = [{"role": "user", "content": "Hello"}]


@pytest.fixture
def gateway(memory_keyring: MemoryKeyring) -> Iterator[ScriptedLLM]:
    """The scripted model where a study server's gateway answers, accepting only the participant's token."""
    set_participant_token(STUDY, TOKEN)
    with run_scripted_llm(prefix="/llm", api_key=TOKEN) as llm:
        yield llm


def study_model(llm: ScriptedLLM, role: str = "assistant", model: str = "gpt-4o-mini") -> OpenAICompatModel:
    built = make_model(ModelSettings(model=model, base_url=gateway_url(llm.server_url), via_study=STUDY, role=role))
    assert isinstance(built, OpenAICompatModel)
    return built


async def failure(model: OpenAICompatModel) -> LLMError:
    with pytest.raises(LLMError) as info:
        async for _ in model.stream(MESSAGES):
            pass
    await model.aclose()
    return info.value


async def test_the_token_and_role_go_to_the_gateway_and_no_api_key_is_read(
        gateway: ScriptedLLM, monkeypatch: pytest.MonkeyPatch) -> None:
    # An API key the participant keeps for their own endpoints must never reach the study's server.
    monkeypatch.setenv("STUDYAPP_API_KEY", "sk-env-key")
    set_api_key("default", "sk-keyring-key")
    gateway.add_text("Hi there")
    gateway.add_json({"ok": True})
    chat = study_model(gateway)
    assert chat.base_url == f"{gateway.server_url}/llm/v1"
    assert "".join([d async for d in chat.stream(MESSAGES)]) == "Hi there"
    selector = study_model(gateway, role="selector")
    assert (await selector.complete_json(MESSAGES, {"type": "object"})).value == {"ok": True}
    await chat.aclose()
    await selector.aclose()
    assert [(h["authorization"], h["x-studyapp-role"]) for h in gateway.request_headers] == [
        (f"Bearer {TOKEN}", "assistant"), (f"Bearer {TOKEN}", "selector")]
    assert [r["model"] for r in gateway.requests] == ["gpt-4o-mini", "gpt-4o-mini"]
    assert not any("sk-" in value for h in gateway.request_headers for value in h.values())


async def test_without_a_token_nothing_is_sent_and_the_message_says_to_enroll(
        memory_keyring: MemoryKeyring) -> None:
    with run_scripted_llm(prefix="/llm") as llm:
        error = await failure(study_model(llm))
        assert isinstance(error, ModelAuthError)
        assert str(error) == ("The study's model 'gpt-4o-mini' comes through the study's server and is available "
                              "once you are enrolled: run `studyapp enroll URL CODE` with the code from the research "
                              "team (or choose another model in Settings).")
        assert llm.requests == []


async def test_without_a_server_the_message_says_to_enroll(memory_keyring: MemoryKeyring) -> None:
    set_participant_token(STUDY, TOKEN)
    model = make_model(ModelSettings(model="m", base_url=None, via_study=STUDY, role="extractor"))
    assert isinstance(model, OpenAICompatModel)
    with pytest.raises(ModelUnavailable, match=r"knows no server for the study\. Enroll with `studyapp enroll"):
        await model.complete_json(MESSAGES, {"type": "object"})


async def test_a_used_up_daily_budget_says_when_it_resets_in_local_time(gateway: ScriptedLLM) -> None:
    # Reset in 3 h 12 min and a half: the half minute keeps the rounding away from the minute boundary.
    reset = (datetime.now(UTC) + timedelta(hours=3, minutes=12, seconds=30)).replace(microsecond=0)
    gateway.add_error(429, {"detail": "The study's daily token budget for you is used up.", "limit": "daily_tokens",
                            "reset_at": reset.isoformat().replace("+00:00", "Z")},
                      headers={"Retry-After": str(int((reset - datetime.now(UTC)).total_seconds()))})
    # Nepal (UTC+5:45): the time shown is the participant's, not the server's.
    with machine_time_zone("NPT-5:45"):
        error = await failure(study_model(gateway))
        local = (reset + timedelta(hours=5, minutes=45)).strftime("%H:%M")
    assert isinstance(error, ModelRateLimited)
    assert str(error) == f"Today's model budget from the study is used up; it resets at {local} (in 3 h 12 min)."
    assert error.retry_after is not None and 3 * 3600 < error.retry_after < 4 * 3600


async def test_a_per_minute_limit_says_so(gateway: ScriptedLLM) -> None:
    reset = datetime.now(UTC) + timedelta(seconds=40)
    gateway.add_error(429, {"detail": "Too many requests.", "limit": "requests_per_minute",
                            "reset_at": reset.isoformat()}, headers={"Retry-After": "41"})
    with machine_time_zone("UTC"):
        error = await failure(study_model(gateway, role="extractor"))
    assert isinstance(error, ModelRateLimited) and error.retry_after == 41
    # The seconds left depend on when the message is made: exact wording is checked with a fixed clock below.
    assert str(error).startswith("The study's server allows only so many model requests a minute, and they are "
                                 f"used up; it resets at {reset:%H:%M} (in ")
    now = datetime(2026, 3, 1, 9, 30, 5, tzinfo=UTC)
    with machine_time_zone("UTC"):
        assert study_limit_message("requests_per_minute", now + timedelta(seconds=40), 41, now=now) == (
            "The study's server allows only so many model requests a minute, and they are used up; it resets at "
            "09:30 (in 40 s).")


def test_limit_messages_without_a_reset_time() -> None:
    now = datetime(2026, 3, 1, 22, 0, tzinfo=UTC)
    with machine_time_zone("UTC"):
        assert study_limit_message("daily_tokens", None, 7200, now=now) == (
            "Today's model budget from the study is used up; it resets at 00:00 (in 2 h).")
        assert study_limit_message("daily_tokens", None, None, now=now) == (
            "Today's model budget from the study is used up; try again later.")
        assert study_limit_message("", now + timedelta(minutes=5), None, now=now) == (
            "The study's server is limiting model requests for now; it resets at 22:05 (in 5 min).")


async def test_after_withdrawal_the_servers_sentence_is_shown_plainly(gateway: ScriptedLLM) -> None:
    detail = "You have withdrawn from this study, so its models are no longer available to you."
    gateway.add_error(403, {"detail": detail})
    error = await failure(study_model(gateway))
    assert isinstance(error, ModelAuthError)
    assert str(error) == detail


async def test_a_token_the_server_does_not_accept(memory_keyring: MemoryKeyring) -> None:
    set_participant_token(STUDY, "an-old-token")
    with run_scripted_llm(prefix="/llm", api_key=TOKEN) as llm:
        error = await failure(study_model(llm))
    assert isinstance(error, ModelAuthError)
    assert str(error).startswith(f"The study's server at {llm.server_url} did not accept this install's participant "
                                 "token (HTTP 401)")
    assert "an-old-token" not in str(error) and "an-old-token" not in (error.detail or "")


async def test_a_model_the_server_does_not_serve(gateway: ScriptedLLM) -> None:
    detail = "The study's server has no model 'gpt-5'; it serves: gpt-4o-mini. Ask the researchers."
    gateway.add_error(404, {"detail": detail})
    error = await failure(study_model(gateway, model="gpt-5"))
    assert isinstance(error, ModelNotFound)
    assert str(error) == detail


@pytest.mark.parametrize(("status", "kind", "detail", "expected"), [
    (502, ModelServerError,
     "The study's model server could not reach model 'gpt-4o-mini' (https://api.example.org/v1): "
     "ConnectError. Try again later.",
     "could not get an answer from the model 'gpt-4o-mini' (HTTP 502)"),
    (504, ModelTimeout,
     "The study's model server waited 60 s for model 'gpt-4o-mini' (https://api.example.org/v1). Try again later.",
     "waited too long for the model 'gpt-4o-mini' (HTTP 504)"),
    (500, ModelServerError, "Internal Server Error", "failed on its side (HTTP 500)"),
])
async def test_upstream_faults_read_like_a_direct_endpoints(gateway: ScriptedLLM, status: int, kind: type,
                                                            detail: str, expected: str) -> None:
    gateway.add_error(status, {"detail": detail})
    error = await failure(study_model(gateway, role="judge"))
    assert isinstance(error, kind) and error.retryable
    assert str(error) == (f"The study's server at {gateway.server_url} {expected} (the server said: {detail}). "
                          "Try again later; if it keeps happening, tell the research team.")


async def test_an_upstream_bad_request_is_passed_on_in_words(gateway: ScriptedLLM) -> None:
    gateway.add_error(400, {"error": {"message": "max_tokens is too large"}})
    error = await failure(study_model(gateway))
    assert type(error) is LLMError
    assert str(error) == ("The study's model 'gpt-4o-mini' rejected the request (HTTP 400) (the server said: "
                          "max_tokens is too large). If it keeps happening, tell the research team.")


async def test_an_unreachable_study_server(memory_keyring: MemoryKeyring) -> None:
    from tests.support.net import free_port

    set_participant_token(STUDY, TOKEN)
    server = f"http://127.0.0.1:{free_port()}"
    model = make_model(ModelSettings(model="m", base_url=gateway_url(server), via_study=STUDY))
    assert isinstance(model, OpenAICompatModel)
    error = await failure(model)
    assert str(error) == (f"Could not reach the study's server at {server}. Check your internet connection; the "
                          "study's models are reached through it. Try again later.")


def test_another_base_url_drops_the_study_route(monkeypatch: pytest.MonkeyPatch) -> None:
    # The participant's token goes only to the study's server: pointing the chat elsewhere makes it a direct model.
    stored = ModelSettings(model="m", base_url="https://study.example.org/llm/v1", via_study=STUDY).to_dict()
    assert resolve(stored).via_study == STUDY
    assert resolve(stored, model="other").via_study == STUDY
    assert resolve(stored, base_url="http://127.0.0.1:8080/v1").via_study is None
    monkeypatch.setenv("STUDYAPP_BASE_URL", "http://127.0.0.1:8080/v1")
    assert resolve(stored).via_study is None
    # Settings stored before routes existed read as direct.
    assert resolve({"model": "m", "base_url": "http://127.0.0.1:8080/v1"}).via_study is None


def test_a_retry_after_that_cannot_be_believed_is_said_as_later() -> None:
    from studyapp.llm.openai_compat import _retry_after

    for value in ("inf", "nan", "1e20", "-inf"):
        assert _retry_after(value) in (None, 0.0), value
    now = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
    assert study_limit_message("daily_tokens", None, float("1e20"), now=now).endswith("; try again later.")
    far = datetime(9999, 12, 31, 23, 0, tzinfo=UTC)
    assert study_limit_message("daily_tokens", far, None, now=now).endswith("; try again later.")


def test_choosing_another_address_for_the_chat_drops_the_study_route() -> None:
    # E.g. the first start's offer of a local server accepted after `studyapp enroll` took on the study's model.
    settings = ModelSettings(model="gpt-4o-mini", base_url="https://study.example.org/llm/v1", via_study="s1")
    assert settings.with_model("llama3", "http://127.0.0.1:11434/v1").via_study is None
    assert settings.with_model("gpt-4o", "https://study.example.org/llm/v1").via_study == "s1"
