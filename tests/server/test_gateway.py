"""The model gateway (/llm/v1): a real collection server under uvicorn relays to a real scripted upstream
(tests/support/scripted_llm.py), with httpx as the participant's app; on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from studyapp.server.backend import open_storage
from studyapp.server.cli import cli
from studyapp.server.gateway import NO_CONSENT, WITHDRAWN
from studyapp.server.storage import Storage
from tests.server.live import LiveServer, consent, new_storage, serve
from tests.support.net import bound_socket, free_port, wait_until_http_ok
from tests.support.scripted_llm import ScriptedLLM, run_scripted_llm

KEY = "sk-upstream-Zq8vN3kT5wLm2pR7xY4c"
KEY_ENV = "STUDYAPP_TEST_GATEWAY_KEY"
MODEL = "study-chat"
PROMPT = "My neighbour Gwendolyn-Quixote keeps bees"
ANSWER = "Then ask Gwendolyn-Quixote for honey, perhaps"


@dataclass
class Gateway:
    live: LiveServer
    llm: ScriptedLLM
    participant_id: str
    token: str

    @property
    def url(self) -> str:
        return f"{self.live.base_url}/llm/v1"

    def headers(self, role: str | None = "assistant", token: str | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {token or self.token}"}
        if role is not None:
            headers["X-Studyapp-Role"] = role
        return headers

    def chat(self, content: str = PROMPT, *, role: str | None = "assistant", token: str | None = None,
             model: str = MODEL, **fields: Any) -> httpx.Response:
        body = {"model": model, "messages": [{"role": "user", "content": content}], **fields}
        return httpx.post(f"{self.url}/chat/completions", json=body, headers=self.headers(role, token), timeout=30)

    def stream(self, client: httpx.Client, content: str = PROMPT, **fields: Any) -> Any:
        body = {"model": MODEL, "messages": [{"role": "user", "content": content}], "stream": True, **fields}
        return client.stream("POST", f"{self.url}/chat/completions", json=body, headers=self.headers(),
                              timeout=httpx.Timeout(30.0))

    def usage(self, by: tuple[str, ...] = ("participant", "role", "day", "model")) -> list[dict[str, Any]]:
        return self.live.storage.gateway_usage(by)


@pytest.fixture
def llm() -> Iterator[ScriptedLLM]:
    with run_scripted_llm(api_key=KEY) as llm:
        yield llm


@pytest.fixture
def gw(live: LiveServer, llm: ScriptedLLM, monkeypatch: pytest.MonkeyPatch) -> Gateway:
    monkeypatch.setenv(KEY_ENV, KEY)
    live.storage.add_gateway_model(name=MODEL, base_url=llm.base_url, upstream_model=llm.model,
                                   api_key_env=KEY_ENV, api_key_file=None)
    participant_id, token = live.enroll_consented()
    return Gateway(live, llm, participant_id, token)


def data_lines(lines: Iterator[str], n: int) -> list[str]:
    """The next ``n`` SSE data lines (blank separator lines skipped)."""
    found = []
    for line in lines:
        if line.startswith("data:"):
            found.append(line)
            if len(found) == n:
                break
    return found


def contents(lines: list[str]) -> str:
    text = ""
    for line in lines:
        payload = line[len("data:"):].strip()
        if payload != "[DONE]":
            for choice in json.loads(payload)["choices"]:
                text += choice["delta"].get("content") or ""
    return text


def today() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d")


# -- relaying ----------------------------------------------------------------------------------------


def test_a_stream_reaches_the_participant_chunk_by_chunk(gw: Gateway) -> None:
    # The upstream stops after two words until released: if the gateway buffered, nothing would arrive before that.
    reply = gw.llm.add_text("one two three four five", hold_after=2)
    with httpx.Client() as client, gw.stream(client, temperature=0.2, seed=7) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.iter_lines()
        first = data_lines(lines, 3)  # the role chunk, "one", " two"
        assert contents(first) == "one two"
        reply.wait_held()
        assert not reply.finished.is_set()  # the upstream has not sent the rest: the chunks came as they arrived
        reply.release()
        rest = data_lines(lines, 5)  # " three", " four", " five", the finish chunk, [DONE]
    assert contents(first + rest) == "one two three four five"
    assert rest[-1] == "data: [DONE]"
    sent = gw.llm.last_request
    # The model is the upstream's; every other field is unchanged; the upstream's key replaces the participant's.
    assert sent == {"model": gw.llm.model, "messages": [{"role": "user", "content": PROMPT}], "stream": True,
                    "temperature": 0.2, "seed": 7}
    upstream_headers = gw.llm.request_headers[-1]
    assert upstream_headers["authorization"] == f"Bearer {KEY}"
    assert gw.token not in json.dumps(upstream_headers)
    assert "x-studyapp-role" not in upstream_headers


def test_non_streaming_and_structured_output_pass_through(gw: Gateway) -> None:
    schema = {"type": "json_schema", "json_schema": {"name": "attrs", "schema": {"type": "object"}}}
    gw.llm.add_json({"attributes": ["keeps bees"]})
    response = gw.chat(response_format=schema, temperature=0, max_tokens=50, tools=[])
    assert response.status_code == 200
    answer = response.json()
    assert json.loads(answer["choices"][0]["message"]["content"]) == {"attributes": ["keeps bees"]}
    assert answer["usage"] == {"prompt_tokens": 1, "completion_tokens": 3, "total_tokens": 4}
    assert gw.llm.last_request == {"model": gw.llm.model, "messages": [{"role": "user", "content": PROMPT}],
                                   "response_format": schema, "temperature": 0, "max_tokens": 50, "tools": []}
    [row] = gw.usage()
    assert (row["role"], row["model"], row["requests"], row["prompt_tokens"], row["completion_tokens"],
            row["errors"], row["estimated"]) == ("assistant", MODEL, 1, 1, 3, 0, 0)


def test_models_lists_the_configured_names(gw: Gateway) -> None:
    gw.live.storage.add_gateway_model(name="judge-large", base_url=gw.llm.base_url, upstream_model="big",
                                      api_key_env=None, api_key_file=None)
    response = httpx.get(f"{gw.url}/models", headers=gw.headers())
    assert response.json() == {"object": "list", "data": [
        {"id": "judge-large", "object": "model", "owned_by": "study"},
        {"id": MODEL, "object": "model", "owned_by": "study"}]}
    assert KEY_ENV not in response.text and gw.llm.base_url not in response.text


def test_an_unknown_model_is_404_naming_the_served_ones(gw: Gateway) -> None:
    response = gw.chat(model="gpt-9")
    assert response.status_code == 404
    assert response.json() == {"detail": f"The study's server has no model 'gpt-9'; it serves: {MODEL}. "
                                         "Ask the researchers."}
    assert gw.llm.requests == []
    # A request for no model uses none of the participant's budget.
    assert gw.live.sql("SELECT count(*) FROM gateway_rate WHERE participant_id = ?", [gw.participant_id]) == [(0,)]


def test_a_model_name_with_a_control_character_is_an_unknown_model_on_both_backends(gw: Gateway) -> None:
    # PostgreSQL cannot compare a NUL: asking for it must not become a server error.
    for name in ("\x00", "gpt\x00-4o-mini", "x" * 201):
        response = gw.chat(model=name)
        assert response.status_code == 404, response.text
        assert "has no model" in response.json()["detail"]
    assert gw.llm.requests == []


def test_a_body_that_names_no_model_is_400(gw: Gateway) -> None:
    url = f"{gw.url}/chat/completions"
    not_json = httpx.post(url, content=b"{not json", headers={**gw.headers(), "Content-Type": "application/json"})
    assert not_json.status_code == 400 and "not valid JSON" in not_json.json()["detail"]
    no_model = httpx.post(url, json={"messages": []}, headers=gw.headers())
    assert no_model.status_code == 400 and "'model'" in no_model.json()["detail"]
    a_list = httpx.post(url, json=[MODEL], headers=gw.headers())
    assert a_list.status_code == 400
    assert gw.llm.requests == []


def test_a_missing_or_unknown_token_is_401(gw: Gateway) -> None:
    no_token = httpx.post(f"{gw.url}/chat/completions", json={"model": MODEL, "messages": []})
    assert no_token.status_code == 401
    assert gw.chat(token="not-a-token").status_code == 401
    assert httpx.get(f"{gw.url}/models", headers=gw.headers(token="not-a-token")).status_code == 401
    assert gw.llm.requests == []


def test_no_model_call_passes_before_the_server_has_the_participants_consent(gw: Gateway) -> None:
    _, token = gw.live.enroll()  # enrolled, no consent record sent yet
    response = gw.chat(token=token)
    assert response.status_code == 403
    assert response.json()["detail"] == NO_CONSENT
    assert gw.llm.requests == []
    # Listing the study's model names carries nothing of the participant's: it is allowed.
    assert httpx.get(f"{gw.url}/models", headers=gw.headers(token=token)).status_code == 200
    gw.live.upload(token, [consent()]).raise_for_status()
    assert gw.chat(token=token).status_code == 200
    assert len(gw.llm.requests) == 1


def test_withdrawal_revokes_access_at_once_and_deletes_the_usage(gw: Gateway) -> None:
    assert gw.chat().status_code == 200
    assert gw.live.sql("SELECT count(*) FROM gateway_usage WHERE participant_id = ?", [gw.participant_id]) == [(1,)]
    withdrawn = httpx.post(f"{gw.live.base_url}/v1/withdraw", headers=gw.headers())
    assert withdrawn.status_code == 200
    response = gw.chat()
    assert response.status_code == 403
    assert response.json() == {"detail": WITHDRAWN}
    assert httpx.get(f"{gw.url}/models", headers=gw.headers()).status_code == 403
    assert gw.live.sql("SELECT count(*) FROM gateway_usage WHERE participant_id = ?", [gw.participant_id]) == [(0,)]
    assert gw.live.sql("SELECT count(*) FROM gateway_rate WHERE participant_id = ?", [gw.participant_id]) == [(0,)]
    assert len(gw.llm.requests) == 1


# -- budgets and accounting ------------------------------------------------------------------------------


def test_over_the_daily_token_budget_is_429_until_midnight_utc(gw: Gateway) -> None:
    gw.live.storage.set_gateway_limits(daily_tokens=5)
    gw.llm.add_text("a b c d e f")  # the upstream counts 1 prompt + 6 completion tokens
    assert gw.chat().status_code == 200
    response = gw.chat()
    assert response.status_code == 429
    body = response.json()
    assert body["limit"] == "daily_tokens"
    assert "5 tokens" in body["detail"] and "00:00 UTC" in body["detail"]
    reset = datetime.fromisoformat(body["reset_at"])
    midnight = (datetime.now(UTC) + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    assert reset == midnight and body["reset_at"].endswith("Z")
    assert 1 <= int(response.headers["Retry-After"]) <= 24 * 3600
    assert len(gw.llm.requests) == 1
    # Another participant has a budget of its own.
    _, other = gw.live.enroll_consented()
    assert gw.chat(token=other).status_code == 200


def test_over_the_request_rate_is_429_until_the_next_minute(gw: Gateway) -> None:
    gw.live.storage.set_gateway_limits(requests_per_minute=1)
    # Three quick requests cross at most one minute boundary, so two of them share a minute: one is refused.
    answers = [gw.chat() for _ in range(3)]
    refused = [r for r in answers if r.status_code == 429]
    assert [r.status_code for r in answers].count(200) + len(refused) == 3
    assert 1 <= len(refused) <= 2
    body = refused[0].json()
    assert body["limit"] == "requests_per_minute"
    reset = datetime.fromisoformat(body["reset_at"])
    assert reset.second == 0 and timedelta(0) < reset - datetime.now(UTC) <= timedelta(minutes=1)
    assert 1 <= int(refused[0].headers["Retry-After"]) <= 60
    assert len(gw.llm.requests) == 3 - len(refused)


def test_usage_is_counted_per_role_with_exact_or_estimated_tokens(gw: Gateway) -> None:
    gw.llm.add_text("one two three")
    assert gw.chat(role="extractor").status_code == 200
    gw.llm.add_text("four five")
    assert gw.chat(role="not-a-role").status_code == 200
    gw.llm.add_text("six")
    assert gw.chat(role=None).status_code == 200
    # A stream that asked for usage: the upstream's usage chunk reaches the participant and is counted.
    gw.llm.add_text("seven eight")
    with httpx.Client() as client, gw.stream(client, stream_options={"include_usage": True}) as response:
        lines = [line for line in response.iter_lines() if line.startswith("data:")]
    assert any('"usage"' in line for line in lines)
    # A stream without usage: tokens estimated from the text (4 characters a token).
    gw.llm.add_text("abcdefgh ijkl")
    with httpx.Client() as client, gw.stream(client, content="x" * 40) as response:
        assert not any('"usage"' in line for line in response.iter_lines())
    by_role = {r["role"]: r for r in gw.usage(("role",))}
    assert set(by_role) == {"extractor", "other", "assistant"}
    assert (by_role["extractor"]["requests"], by_role["extractor"]["completion_tokens"]) == (1, 3)
    assert (by_role["other"]["requests"], by_role["other"]["completion_tokens"]) == (2, 3)
    assistant = by_role["assistant"]
    assert assistant["requests"] == 2 and assistant["estimated"] == 1
    assert assistant["prompt_tokens"] == 1 + 10 and assistant["completion_tokens"] == 2 + 4
    [day] = gw.usage(("day",))
    assert day["day"] == today() and day["requests"] == 5 and day["errors"] == 0
    assert day["latency_ms_max"] >= day["latency_ms_mean"] >= 0


# -- faults ----------------------------------------------------------------------------------------------


def add_model(gw: Gateway, name: str, base_url: str) -> None:
    gw.live.storage.add_gateway_model(name=name, base_url=base_url, upstream_model="m", api_key_env=None,
                                      api_key_file=None)


def test_an_unreachable_upstream_is_502(gw: Gateway) -> None:
    add_model(gw, "nowhere", f"http://127.0.0.1:{free_port()}/v1")
    response = gw.chat(model="nowhere")
    assert response.status_code == 502
    detail = response.json()["detail"]
    assert detail.startswith("The study's model server could not reach model 'nowhere' (")
    assert detail.endswith("Try again later.")
    assert "127.0.0.1" not in detail  # the upstream's address is the researchers' business
    [row] = gw.usage(("model",))
    assert (row["model"], row["requests"], row["errors"]) == ("nowhere", 1, 1)


def test_an_upstream_5xx_is_502_and_a_4xx_passes_through(gw: Gateway) -> None:
    gw.llm.add_error(500)
    response = gw.chat()
    assert response.status_code == 502
    assert "could not reach model 'study-chat'" in response.json()["detail"]
    assert "HTTP 500" in response.json()["detail"]
    bad = {"error": {"message": "messages: too long", "type": "invalid_request_error", "code": "context_length"}}
    gw.llm.add_error(400, bad)
    response = gw.chat()
    assert response.status_code == 400
    assert response.json() == bad
    gw.llm.add_error(429, {"error": {"message": "slow down"}}, headers={"Retry-After": "3"})
    response = gw.chat()
    assert response.status_code == 429 and response.headers["Retry-After"] == "3"
    [row] = gw.usage(("model",))
    assert (row["requests"], row["errors"]) == (3, 3)


def test_an_upstream_refusing_the_studys_key_is_502_in_the_gateways_words(
        gw: Gateway, caplog: pytest.LogCaptureFixture) -> None:
    # The upstream's 401 body quotes the key's end; a 401 reaching the app would read as its own token refused.
    for status in (401, 403, 404):
        gw.llm.add_error(status, {"error": {"message": f"Incorrect API key provided: sk-...{KEY[-4:]}"}})
        with caplog.at_level(logging.WARNING):
            response = gw.chat()
        assert response.status_code == 502
        detail = response.json()["detail"]
        assert f"could not use model '{MODEL}' (HTTP {status} from its server)" in detail
        assert KEY[-4:] not in response.text and "Incorrect API key" not in response.text
    assert "refused by its server: HTTP 404" in caplog.text


@pytest.fixture
def silent_upstream() -> Iterator[str]:
    """An upstream that accepts connections and never answers (the slowest model), as a base URL."""
    sock = bound_socket()
    sock.listen(16)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    finally:
        sock.close()


@pytest.mark.sqlite_only("the read timeout is the relay's own; the database plays no part")
def test_an_upstream_that_does_not_answer_in_time_is_504(tmp_path: Path, silent_upstream: str) -> None:
    storage, _ = new_storage(tmp_path / "server.db")
    storage.add_gateway_model(name="slow", base_url=silent_upstream, upstream_model="m", api_key_env=None,
                              api_key_file=None)
    try:
        with serve(storage, gateway_read_timeout_s=0.5) as base_url:
            live = LiveServer(base_url, storage, "")
            _, token = live.enroll_consented()
            response = httpx.post(f"{base_url}/llm/v1/chat/completions", json={"model": "slow", "messages": []},
                                  headers={"Authorization": f"Bearer {token}"}, timeout=30)
    finally:
        storage.close()
    assert response.status_code == 504
    detail = response.json()["detail"]
    assert detail.startswith("The study's model server waited too long for model 'slow' (no answer within 0.5 s)")
    assert detail.endswith("Try again later.")


def test_a_stream_the_upstream_cuts_is_cut_for_the_participant(gw: Gateway) -> None:
    gw.llm.add_disconnect("Partial answer that never")
    seen: list[str] = []
    with httpx.Client() as client, gw.stream(client) as response:
        assert response.status_code == 200
        with pytest.raises(httpx.RemoteProtocolError):
            for line in response.iter_lines():
                seen.append(line)
    assert "data: [DONE]" not in seen
    assert contents([s for s in seen if s.startswith("data:")]) == "Partial answer that never"
    [row] = gw.usage(("model",))
    assert (row["requests"], row["errors"]) == (1, 1)


def test_the_participant_leaving_cancels_the_upstream_request(gw: Gateway) -> None:
    reply = gw.llm.add_text("one two three four five six", hold_after=2)
    with httpx.Client() as client, gw.stream(client) as response:
        assert contents(data_lines(response.iter_lines(), 3)) == "one two"
    # The participant's connection is closed; the upstream's connection must be closed too.
    client_closed = reply.client_closed.wait(10)
    reply.release()
    assert client_closed or reply.client_closed.wait(10)
    assert not reply.finished.is_set()


# -- privacy -----------------------------------------------------------------------------------------------


def _grep_files(folder: Path, needle: str) -> list[str]:
    """Files under ``folder`` holding ``needle``, searched by grep in its own process (a read in this process
    beside its open SQLite connections would drop their locks)."""
    found = subprocess.run(["grep", "-r", "-l", "-a", "-F", needle, str(folder)], capture_output=True, text=True)
    return found.stdout.split()


def test_no_prompt_answer_or_key_is_stored_logged_or_sent(gw: Gateway, caplog: pytest.LogCaptureFixture,
                                                         tmp_path: Path) -> None:
    caplog.set_level(logging.DEBUG)
    gw.llm.add_text(ANSWER)
    answer = gw.chat()
    gw.llm.add_text(ANSWER)
    with httpx.Client() as client, gw.stream(client) as response:
        streamed = response.read().decode()
    gw.llm.add_error(500)
    failed = gw.chat()
    models = httpx.get(f"{gw.url}/models", headers=gw.headers())
    assert ANSWER in answer.text and "Gwendolyn-Quixote" in streamed
    dump = gw.live.dump()
    assert "Gwendolyn-Quixote" not in dump and "honey" not in dump and "bees" not in dump
    assert KEY not in dump
    logs = caplog.text
    assert "Gwendolyn-Quixote" not in logs and KEY not in logs
    for response in (answer, failed, models):
        assert KEY not in response.text and KEY not in str(response.headers)
    assert KEY not in streamed
    if isinstance(gw.live.storage, Storage):
        gw.live.storage.checkpoint(reason="the test")
        assert _grep_files(tmp_path, "Gwendolyn-Quixote") == []
        assert _grep_files(tmp_path, KEY) == []


def test_a_key_file_must_be_private_to_the_server(gw: Gateway, tmp_path: Path) -> None:
    key_file = tmp_path / "upstream.key"
    key_file.write_text(KEY + "\n")
    key_file.chmod(0o644)
    runner = CliRunner()
    args = ["models", "add", "private", "--base-url", gw.llm.base_url, "--upstream-model", gw.llm.model,
            "--api-key-file", str(key_file), "--db", gw.live.db_arg]
    refused = runner.invoke(cli, args)
    assert refused.exit_code != 0
    assert "can be read by other users" in refused.output and "chmod 600" in refused.output
    assert gw.live.storage.gateway_model("private") is None
    key_file.chmod(0o600)
    added = runner.invoke(cli, args)
    assert added.exit_code == 0, added.output
    assert KEY not in added.output
    assert gw.chat(model="private").status_code == 200
    assert gw.llm.request_headers[-1]["authorization"] == f"Bearer {KEY}"
    # Loosened after it was added: the server refuses to use it, and says why in its log only.
    key_file.chmod(0o640)
    response = gw.chat(model="private")
    assert response.status_code == 502
    assert KEY not in response.text
    assert len(gw.llm.requests) == 1
    key_file.chmod(0o620)  # others cannot read it, but could swap it
    writable = runner.invoke(cli, [*args[:2], "private-2", *args[3:]])
    assert writable.exit_code != 0 and "can be changed by other users" in writable.output


def test_a_missing_key_variable_is_502_without_reaching_the_upstream(gw: Gateway,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV)
    response = gw.chat()
    assert response.status_code == 502
    assert "cannot read its API key" in response.json()["detail"]
    assert gw.llm.requests == []


# -- the researchers' CLI ----------------------------------------------------------------------------------


def test_models_add_list_remove_and_limits(live: LiveServer, llm: ScriptedLLM,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    runner = CliRunner()
    db = ["--db", live.db_arg]
    added = runner.invoke(cli, ["models", "add", llm.model, "--base-url", llm.base_url, "--api-key-env", KEY_ENV,
                                *db])
    assert added.exit_code == 0, added.output
    model = live.storage.gateway_model(llm.model)
    assert model is not None
    # The upstream model defaults to NAME; only the variable's name is stored.
    assert (model["upstream_model"], model["api_key_env"], model["api_key_file"]) == (llm.model, KEY_ENV, None)
    again = runner.invoke(cli, ["models", "add", llm.model, "--base-url", llm.base_url, *db])
    assert again.exit_code != 0 and "already serves" in again.output
    bad_url = runner.invoke(cli, ["models", "add", "x", "--base-url", "localhost:8080", *db])
    assert bad_url.exit_code != 0 and "is not an http(s) URL" in bad_url.output
    key_as_var = runner.invoke(cli, ["models", "add", "x", "--base-url", llm.base_url, "--api-key-env", KEY, *db])
    assert key_as_var.exit_code != 0 and "NAME of an environment variable" in key_as_var.output
    assert KEY not in live.dump()
    listed = runner.invoke(cli, ["models", "list", *db])
    assert llm.model in listed.output and f"${KEY_ENV}" in listed.output and KEY not in listed.output
    assert "200000 tokens per UTC day, 30 requests per minute" in listed.output

    _, token = live.enroll_consented()
    answer = httpx.post(f"{live.base_url}/llm/v1/chat/completions", headers={"Authorization": f"Bearer {token}"},
                        json={"model": llm.model, "messages": [{"role": "user", "content": "hi"}]})
    assert answer.status_code == 200
    assert llm.last_request["model"] == llm.model

    limits = runner.invoke(cli, ["models", "limits", "--daily-tokens", "1000", "--requests-per-minute", "5", *db])
    assert limits.exit_code == 0
    assert "1000 tokens per UTC day, 5 requests per minute" in limits.output
    assert live.storage.gateway_limits().requests_per_minute == 5
    shown = runner.invoke(cli, ["models", "limits", "--requests-per-minute", "7", *db])
    assert "1000 tokens per UTC day, 7 requests per minute" in shown.output

    removed = runner.invoke(cli, ["models", "remove", llm.model, *db])
    assert removed.exit_code == 0
    assert live.storage.gateway_models() == []
    gone = runner.invoke(cli, ["models", "remove", llm.model, *db])
    assert gone.exit_code != 0 and "serves no model" in gone.output
    after = httpx.post(f"{live.base_url}/llm/v1/chat/completions", headers={"Authorization": f"Bearer {token}"},
                       json={"model": llm.model, "messages": []})
    assert after.status_code == 404


def test_usage_prints_a_table_or_csv(gw: Gateway) -> None:
    gw.llm.add_text("one two")
    assert gw.chat(role="judge").status_code == 200
    gw.llm.add_text("three")
    assert gw.chat(role="selector").status_code == 200
    runner = CliRunner()
    db = ["--db", gw.live.db_arg]
    table = runner.invoke(cli, ["usage", "--by", "role", *db])
    assert table.exit_code == 0, table.output
    header, *rows = table.output.splitlines()
    assert header.split()[:4] == ["role", "requests", "prompt_tokens", "completion_tokens"]
    assert [r.split()[:4] for r in rows] == [["judge", "1", "1", "2"], ["selector", "1", "1", "1"]]
    csv_out = runner.invoke(cli, ["usage", "--by", "participant", "--by", "day", "--format", "csv", *db])
    lines = csv_out.output.splitlines()
    assert lines[0] == ("participant_id,day,requests,prompt_tokens,completion_tokens,errors,estimated,"
                        "latency_ms_mean,latency_ms_max")
    assert lines[1].startswith(f"{gw.participant_id},{today()},2,2,3,0,0,")
    assert "Gwendolyn" not in table.output + csv_out.output


def test_usage_with_no_use_yet(live: LiveServer) -> None:
    result = CliRunner().invoke(cli, ["usage", "--db", live.db_arg])
    assert result.exit_code == 0 and "No use of the study's models yet." in result.output



def test_the_dashboard_shows_the_usage_without_content(gw: Gateway) -> None:
    gw.llm.add_text(ANSWER)
    assert gw.chat(role="extractor").status_code == 200
    with httpx.Client(base_url=gw.live.base_url, timeout=60) as http:
        assert http.post("/dashboard/login", data={"token": gw.live.researcher_token}).status_code == 303
        page = http.get("/dashboard").text
    [row] = re.findall(r'<table id="usage">.*?<tbody>\s*(<tr>.*?</tr>)', page, re.S)
    cells = dict(re.findall(r'<td data-col="(\w+)" class="[^"]*">([^<]*)</td>', row))
    assert (cells["day"], cells["role"], cells["model"], cells["requests"], cells["errors"]) == (
        today(), "extractor", MODEL, "1", "0")
    assert "200000 tokens per UTC day, 30 requests per minute" in page
    assert "Gwendolyn" not in page


# -- budgets across processes --------------------------------------------------------------------------------


def test_the_rate_is_counted_in_the_database_across_processes(live: LiveServer, server_db: Path | str) -> None:
    # Two storages on one database stand for two worker processes (each has its own connections): the requests of
    # one minute are counted once, whichever admits them, and concurrent admissions never exceed the limit.

    _, token = live.enroll_consented()
    live.storage.set_gateway_limits(requests_per_minute=5)
    other = open_storage(server_db, migrate=False)
    try:
        storages = [live.storage, other]
        with ThreadPoolExecutor(8) as pool:
            admitted = list(pool.map(lambda i: storages[i % 2].gateway_admit(token, day="2026-11-29",
                                                                             minute="2026-11-29T10:00"),
                                     range(20)))
        assert [a.refused for a in admitted].count(None) == 5
        assert {a.refused for a in admitted} == {None, "requests_per_minute"}
        # The next minute starts a new count, on either storage.
        assert other.gateway_admit(token, day="2026-11-29", minute="2026-11-29T10:01").refused is None
        assert live.storage.gateway_admit("no-such-token", day="2026-11-29", minute="2026-11-29T10:01").refused \
            == "unknown"
    finally:
        other.close()


def test_budgets_and_withdrawal_hold_on_every_worker(pg_url: str, llm: ScriptedLLM) -> None:
    """`serve --workers 2` on PostgreSQL: a budget used up through one worker and a withdrawal are seen by both."""
    storage, _ = new_storage(pg_url)
    storage.add_gateway_model(name=MODEL, base_url=llm.base_url, upstream_model=llm.model, api_key_env=KEY_ENV,
                              api_key_file=None)
    storage.set_gateway_limits(daily_tokens=5)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "studyapp.server.cli", "serve", "--workers", "2", "--port",
                             str(port)], env={**os.environ, "STUDYAPP_SERVER_DB": pg_url, KEY_ENV: KEY},
                            stderr=subprocess.PIPE)
    try:
        wait_until_http_ok(f"{base}/health", timeout=60, alive=lambda: proc.poll() is None)
        live = LiveServer(base, storage, "")
        _, spender = live.enroll_consented()
        _, leaver = live.enroll_consented()

        def chat(token: str) -> httpx.Response:
            return httpx.post(f"{base}/llm/v1/chat/completions", headers={"Authorization": f"Bearer {token}"},
                              json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}, timeout=30)

        llm.add_text("a b c d e f")  # 1 + 6 tokens: over the budget of 5 after one request
        assert chat(spender).status_code == 200
        assert httpx.post(f"{base}/v1/withdraw", headers={"Authorization": f"Bearer {leaver}"}).status_code == 200

        def answers_from_both_workers(token: str) -> dict[str, set[int]]:
            """Statuses per worker, asking until both workers answered (the kernel picks one per connection)."""
            seen: dict[str, set[int]] = {}
            with ThreadPoolExecutor(8) as pool:
                for _ in range(50):
                    for response in pool.map(lambda _: chat(token), range(8)):
                        seen.setdefault(response.headers["X-Studyapp-Worker"], set()).add(response.status_code)
                    if len(seen) >= 2:
                        break
            return seen

        over = answers_from_both_workers(spender)
        gone = answers_from_both_workers(leaver)
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=30)
        storage.close()
    assert len(over) == 2 and all(statuses == {429} for statuses in over.values()), over
    assert len(gone) == 2 and all(statuses == {403} for statuses in gone.values()), gone
    assert len(llm.requests) == 1
    assert b"Traceback" not in stderr and KEY.encode() not in stderr


@pytest.mark.sqlite_only("a pilot's SQLite database is the source of the move")
def test_migrate_to_postgres_moves_the_gateway_settings_and_counts(live: LiveServer, pg_url: str) -> None:
    participant_id, token = live.enroll_consented()
    live.storage.add_gateway_model(name=MODEL, base_url="http://127.0.0.1:9/v1", upstream_model="m",
                                   api_key_env=KEY_ENV, api_key_file=None)
    live.storage.set_gateway_limits(daily_tokens=1234, requests_per_minute=9)
    assert live.storage.gateway_admit(token, day=today(), minute="2026-11-29T10:00").refused is None
    live.storage.record_gateway_usage(participant_id, day=today(), role="judge", model=MODEL, prompt_tokens=3,
                                      completion_tokens=4, error=False, estimated=True, latency_ms=12)
    result = CliRunner().invoke(cli, ["migrate-to-postgres", "--from", live.db_arg, "--to", pg_url])
    assert result.exit_code == 0, result.output
    for table in ("gateway_models", "gateway_limits", "gateway_usage", "gateway_rate"):
        assert table in result.output
    moved = open_storage(pg_url)
    try:
        assert moved.gateway_models() == live.storage.gateway_models()
        assert moved.gateway_limits() == live.storage.gateway_limits()
        assert moved.gateway_usage() == live.storage.gateway_usage()
        # The rate window moved too: this minute's one request is counted on PostgreSQL.
        moved.set_gateway_limits(requests_per_minute=1)
        assert moved.gateway_admit(token, day=today(), minute="2026-11-29T10:00").refused == "requests_per_minute"
    finally:
        moved.close()
