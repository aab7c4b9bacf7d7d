"""Fault injection for OpenAICompatModel with httpx.MockTransport (and a closed port for connection refused).

Each test checks the error class a caller branches on, and that the message tells the participant what to do.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from studyapp.llm.base import (
    LLMError,
    MalformedResponse,
    ModelAuthError,
    ModelNotFound,
    ModelRateLimited,
    ModelServerError,
    ModelTimeout,
    ModelUnreachable,
)
from studyapp.llm.openai_compat import OpenAICompatModel, parse_json_text
from tests.support.net import free_port

MESSAGES = [{"role": "user", "content": "Hi"}]
SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}}
BASE = "http://model.test/v1"


def chunk(content: str | None, finish: str | None = None) -> str:
    delta = {} if content is None and finish else {"content": content}
    event = {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return f"data: {json.dumps(event)}\n\n"


class BrokenStream(httpx.AsyncByteStream):
    """Sends some bytes, then fails the way a dropped connection does."""

    def __init__(self, parts: list[str], error: Exception) -> None:
        self.parts, self.error = parts, error

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for part in self.parts:
            yield part.encode()
        raise self.error


def model_with(handler: Callable[[httpx.Request], httpx.Response], **kwargs: object) -> OpenAICompatModel:
    return OpenAICompatModel(BASE, "test-model", transport=httpx.MockTransport(handler), **kwargs)  # type: ignore[arg-type]


def sse(body: str, status: int = 200) -> Callable[[httpx.Request], httpx.Response]:
    return lambda request: httpx.Response(status, text=body, headers={"content-type": "text/event-stream"})


async def drain(model: OpenAICompatModel) -> tuple[list[str], LLMError | None]:
    received: list[str] = []
    try:
        async for delta in model.stream(MESSAGES):
            received.append(delta)
    except LLMError as exc:
        return received, exc
    finally:
        await model.aclose()
    return received, None


async def test_stream_parses_sse_details() -> None:
    body = (": keep-alive\n\n" + "event: message\nid: 1\n" + chunk(None) + chunk("Hel") + "data:" + json.dumps(
        {"choices": [{"delta": {"content": "lo"}}]}) + "\r\n\r\n" + chunk(None, "stop") + "data: [DONE]\n\n")
    received, error = await drain(model_with(sse(body)))
    assert error is None
    assert received == ["Hel", "lo"]


async def test_stream_without_done_but_with_finish_reason_is_complete() -> None:
    received, error = await drain(model_with(sse(chunk("ok") + chunk(None, "stop"))))
    assert (received, error) == (["ok"], None)


async def test_truncated_stream_keeps_text_then_raises() -> None:
    received, error = await drain(model_with(sse(chunk("Part") + chunk(" of it"))))
    assert received == ["Part", " of it"]
    assert isinstance(error, MalformedResponse) and "kept" in str(error)


async def test_garbage_sse_after_text() -> None:
    received, error = await drain(model_with(sse(chunk("Good") + "data: {oops\n\n" + chunk(" never"))))
    assert received == ["Good"]
    assert isinstance(error, MalformedResponse) and "garbled" in str(error)


async def test_html_instead_of_stream() -> None:
    received, error = await drain(model_with(sse("<html>Welcome to nginx</html>\n")))
    assert received == []
    assert isinstance(error, MalformedResponse) and "OpenAI-compatible" in str(error)


async def test_error_event_mid_stream() -> None:
    body = chunk("Start") + 'data: {"error": {"message": "CUDA out of memory"}}\n\n'
    received, error = await drain(model_with(sse(body)))
    assert received == ["Start"]
    assert isinstance(error, ModelServerError) and "CUDA out of memory" in str(error)


async def test_disconnect_mid_stream_yields_partial_then_raises() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        stream = BrokenStream([chunk("Half"), chunk(" a reply")], httpx.RemoteProtocolError("peer closed"))
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=stream)

    received, error = await drain(model_with(handler))
    assert received == ["Half", " a reply"]
    assert isinstance(error, MalformedResponse) and "broke before the reply was complete" in str(error)


async def test_server_ignoring_stream_flag_still_works() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"choices": [{"message": {"role": "assistant", "content": "Whole"}}]})

    assert await drain(model_with(handler)) == (["Whole"], None)


@pytest.mark.parametrize(
    ("status", "body", "headers", "error_type", "words"),
    [
        (500, {"error": {"message": "boom"}}, {}, ModelServerError, ["HTTP 500", "boom", "Try again"]),
        (502, "Bad Gateway", {}, ModelServerError, ["HTTP 502"]),
        (429, {"error": {"message": "Too many"}}, {"Retry-After": "12"}, ModelRateLimited, ["12 s"]),
        (429, {"error": "slow"}, {}, ModelRateLimited, ["a little while"]),
        (401, {"error": {"message": "Incorrect API key provided: sk-abc"}}, {}, ModelAuthError,
         ["API key", "keyring", "STUDYAPP_API_KEY"]),
        (403, {"detail": "forbidden"}, {}, ModelAuthError, ["API key"]),
        (404, {"error": {"message": "model 'test-model' not found"}}, {}, ModelNotFound, ["'test-model'", "/v1"]),
        (400, {"error": {"message": "The model `test-model` does not exist"}}, {}, ModelNotFound, ["'test-model'"]),
        (400, {"error": {"message": "temperature must be <= 2"}}, {}, LLMError, ["HTTP 400", "temperature"]),
    ],
)
async def test_http_errors_are_mapped(status: int, body: object, headers: dict[str, str],
                                      error_type: type[LLMError], words: list[str]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if isinstance(body, str):
            return httpx.Response(status, text=body, headers=headers)
        return httpx.Response(status, json=body, headers=headers)

    received, error = await drain(model_with(handler, api_key="sk-abc"))
    assert received == []
    assert type(error) is error_type
    for word in words:
        assert word in str(error)
    assert "sk-abc" not in str(error) and "sk-abc" not in (error.detail or "")
    # The same mapping holds for structured completions.
    structured = model_with(handler)
    with pytest.raises(error_type):
        await structured.complete_json(MESSAGES, SCHEMA)
    await structured.aclose()


async def test_retry_after_as_http_date() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})

    _, error = await drain(model_with(handler))
    assert isinstance(error, ModelRateLimited) and error.retry_after == 0 and error.retryable


async def test_timeout() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    _, error = await drain(model_with(handler, timeout_s=5))
    assert isinstance(error, ModelTimeout) and "5 s" in str(error) and error.retryable


async def test_timeout_over_real_http(scripted_llm) -> None:  # type: ignore[no-untyped-def]
    # The server sends the first chunk then goes silent for longer than the read timeout.
    reply = scripted_llm.add_text("slow reply here", hold_after=1)
    model = OpenAICompatModel(scripted_llm.base_url, "m", timeout_s=0.5)
    received, error = await drain(model)
    reply.release()
    assert received == ["slow"]
    assert isinstance(error, ModelTimeout)


async def test_connection_refused_on_a_closed_port() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    model = OpenAICompatModel(url, "m")
    _, error = await drain(model)
    assert isinstance(error, ModelUnreachable)
    assert str(error) == (f"Could not reach the model server at {url}. Is it running? "
                          "Check the base URL in Settings.")
    with pytest.raises(ModelUnreachable):
        await model.ping()
    await model.aclose()


async def test_unknown_host() -> None:
    _, error = await drain(OpenAICompatModel("http://no-such-host.invalid/v1", "m"))
    assert isinstance(error, ModelUnreachable)


@pytest.mark.parametrize("url", ["localhost:8080/v1", "http://[bad/v1"])
async def test_unusable_base_url(url: str) -> None:
    _, error = await drain(OpenAICompatModel(url, "m"))
    assert isinstance(error, ModelUnreachable) and "Check the base URL in Settings" in str(error)
    if "://" not in url:
        assert "not a valid http(s) address" in str(error)
    with pytest.raises(ModelUnreachable):
        await OpenAICompatModel(url, "m").complete_json(MESSAGES, SCHEMA)


async def test_non_json_completion_body() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text="<html>proxy login</html>")

    with pytest.raises(MalformedResponse, match="not a chat completion"):
        await model_with(handler).complete_json(MESSAGES, SCHEMA)


async def test_remembered_json_mode_starts_over_if_rejected_later() -> None:
    accepted = {"json_schema"}

    def handler(request: httpx.Request) -> httpx.Response:
        kind = (json.loads(request.content).get("response_format") or {}).get("type")
        if kind not in accepted and kind is not None:
            return httpx.Response(400, json={"error": {"message": f"response_format {kind} unsupported"}})
        return httpx.Response(200, json={"choices": [{"message": {"content": '{"n": 1}'}}]})

    model = model_with(handler)
    assert (await model.complete_json(MESSAGES, SCHEMA)).value == {"n": 1}
    assert model.json_mode == "json_schema"
    accepted.clear()
    assert (await model.complete_json(MESSAGES, SCHEMA)).value == {"n": 1}
    assert model.json_mode == "prompt"


@pytest.mark.parametrize(
    ("raw", "value"),
    [('{"a": 1}', {"a": 1}), ('```json\n{"a": 1}\n```', {"a": 1}), ('Sure! {"a": [1]} Hope it helps', {"a": [1]}),
     ("[1, 2]", [1, 2]), ("nothing here", None), ("{broken", None)],
)
def test_parse_json_text(raw: str, value: object) -> None:
    assert parse_json_text(raw) == value
