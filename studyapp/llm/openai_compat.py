"""ChatModel for any OpenAI-compatible chat-completions endpoint (OpenAI, Ollama, vLLM, llama.cpp, LM Studio ...).

Replies stream over Server-Sent Events with httpx. Structured answers ask for the strongest mechanism the
server accepts: ``response_format`` json_schema, then json_object, then a plain instruction in the prompt; the
mode that worked is remembered for the next call. Every failure becomes an ``LLMError`` subclass whose message
says what went wrong and what to do; the API key is sent only in the Authorization header and never appears in
messages, details or logs.

A model the study provides through its collection server (``study_role`` set) is the same client pointed at the
server's gateway (``{server}/llm/v1``) with the participant's token as the key and an ``X-Studyapp-Role`` header;
only its messages differ, in the study's words: a used-up budget says when it resets in the participant's local
time, a withdrawal or an unknown model shows the server's own sentence.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import json
import math
import re
import ssl
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from studyapp.llm.base import (
    ChatMessage,
    ChatParams,
    JSONResult,
    LLMError,
    MalformedResponse,
    ModelAuthError,
    ModelNotFound,
    ModelRateLimited,
    ModelServerError,
    ModelTimeout,
    ModelUnavailable,
    ModelUnreachable,
    parse_json_text,
)

# Tried in this order by complete_json: OpenAI-style json_schema; JSON mode with the schema attached
# (llama-cpp-python's server turns it into a grammar); plain JSON mode; "prompt" only asks in words.
JSON_MODES = ("json_schema", "json_object_schema", "json_object", "prompt")
_RESPONSE_FORMAT_WORDS = ("response_format", "json_schema", "json_object", "structured output", "grammar")
_DETAIL_LIMIT = 500
# What httpx raises for network and URL problems (InvalidURL is not an HTTPError).
_HTTPX_ERRORS = (httpx.HTTPError, httpx.InvalidURL)
# The study's server counts model use per role (assistant, extractor, selector, judge) from this header.
ROLE_HEADER = "X-Studyapp-Role"
_GATEWAY_SUFFIX = "/llm/v1"


class OpenAICompatModel:
    """A model behind an OpenAI-compatible ``/chat/completions`` endpoint.

    ``base_url`` is the API root including the version, e.g. ``http://127.0.0.1:8080/v1``.
    ``transport`` replaces the network (tests inject faults with ``httpx.MockTransport``).
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout_s: float = 60,
        transport: httpx.AsyncBaseTransport | None = None,
        *,
        study_role: str | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.name = model
        self.timeout_s = timeout_s
        self._api_key = api_key or None
        self._transport = transport
        # Set for a model the study provides through its server (the key is then the participant's token).
        self.study_role = study_role
        # httpx clients belong to one event loop; tests and workers may use the model from another.
        self._client: httpx.AsyncClient | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None
        self.json_mode: str | None = None

    def __repr__(self) -> str:
        # Never the key.
        via = f", study_role={self.study_role!r}" if self.via_study else ""
        return f"OpenAICompatModel(base_url={self.base_url!r}, model={self.model!r}{via})"

    @property
    def via_study(self) -> bool:
        return self.study_role is not None

    @property
    def study_server(self) -> str:
        """The study server's address (the gateway's base URL without /llm/v1), for messages."""
        return self.base_url.removesuffix(_GATEWAY_SUFFIX)

    # -- plumbing --------------------------------------------------------------------------------

    def _check_study_route(self) -> None:
        """Before any request through the study's server: is there a server, and a token to show it?"""
        if not self.base_url:
            raise ModelUnavailable(
                f"The study's model {self.model!r} comes through the study's server, and this install knows no "
                "server for the study. Enroll with `studyapp enroll URL CODE` (the address and code from the "
                "research team), or choose another model in Settings.")
        if not self._api_key:
            raise ModelAuthError(
                f"The study's model {self.model!r} comes through the study's server and is available once you are "
                "enrolled: run `studyapp enroll URL CODE` with the code from the research team (or choose another "
                "model in Settings).")

    def _get_client(self) -> httpx.AsyncClient:
        if self.via_study:
            self._check_study_route()
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop or self._client.is_closed:
            headers = {"Accept": "application/json"}
            if self._api_key:
                headers["Authorization"] = f"Bearer {self._api_key}"
            if self.study_role is not None:
                headers[ROLE_HEADER] = self.study_role
            self._client = httpx.AsyncClient(
                base_url=self.base_url + "/",
                headers=headers,
                # Reading may pause between tokens; a read timeout is the longest silence we accept.
                timeout=httpx.Timeout(self.timeout_s, connect=min(10.0, self.timeout_s)),
                transport=self._transport,
                verify=_tls_for(self.base_url),
            )
            self._client_loop = loop
        return self._client

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None and not client.is_closed:
            try:
                await client.aclose()
            except RuntimeError:
                # Closed from another event loop than the one that opened it: nothing left to release here.
                pass

    def _redact(self, text: str) -> str:
        if self._api_key and self._api_key in text:
            text = text.replace(self._api_key, "***")
        return text

    def _body(self, messages: list[ChatMessage], params: ChatParams | None, *, stream: bool) -> dict[str, Any]:
        params = params or ChatParams()
        body: dict[str, Any] = {"model": self.model, "messages": list(messages), "stream": stream}
        for key in ("temperature", "top_p", "max_tokens", "seed"):
            value = getattr(params, key)
            if value is not None:
                body[key] = value
        body.update(params.extra)
        return body

    # -- errors ----------------------------------------------------------------------------------

    def _transport_error(self, exc: Exception, *, during_stream: bool = False) -> LLMError:
        detail = self._redact(f"{type(exc).__name__}: {exc}")
        if self.via_study:
            return self._study_transport_error(exc, detail, during_stream=during_stream)
        url = self.base_url
        if isinstance(exc, httpx.TimeoutException):
            if isinstance(exc, httpx.ConnectTimeout):
                return ModelTimeout(
                    f"Connecting to the model server at {url} timed out. Is it running and reachable? "
                    "Check the base URL in Settings.", detail=detail)
            return ModelTimeout(
                f"The model server at {url} did not answer within {self.timeout_s:g} s. It may be busy or still "
                "loading the model; try again, or raise the timeout in Settings.", detail=detail)
        if isinstance(exc, httpx.ConnectError):
            return ModelUnreachable(
                f"Could not reach the model server at {url}. Is it running? Check the base URL in Settings.",
                detail=detail)
        if isinstance(exc, (httpx.UnsupportedProtocol, httpx.InvalidURL)):
            return ModelUnreachable(
                f"The base URL {url!r} is not a valid http(s) address. Check the base URL in Settings "
                "(for example http://127.0.0.1:8080/v1).", detail=detail)
        if isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)):
            if during_stream:
                return MalformedResponse(
                    f"The connection to the model server at {url} broke before the reply was complete. "
                    "The text received so far is kept; try again.", detail=detail)
            return MalformedResponse(
                f"The model server at {url} closed the connection without answering. Try again; if it keeps "
                "happening, check the server's logs.", detail=detail)
        return LLMError(f"The request to the model server at {url} failed ({type(exc).__name__}). Try again.",
                        detail=detail)

    def _study_transport_error(self, exc: Exception, detail: str, *, during_stream: bool) -> LLMError:
        where = f"the study's server at {self.study_server}"
        where_ = where[0].upper() + where[1:]  # to start a sentence
        if isinstance(exc, httpx.TimeoutException):
            if isinstance(exc, httpx.ConnectTimeout):
                return ModelTimeout(f"Connecting to {where} timed out. Check your internet connection; the study's "
                                    "models are reached through it. Try again later.", detail=detail)
            return ModelTimeout(f"{where_} did not answer within {self.timeout_s:g} s. "
                                "Try again; if it keeps happening, tell the research team.", detail=detail)
        if isinstance(exc, (httpx.ConnectError, httpx.UnsupportedProtocol, httpx.InvalidURL)):
            return ModelUnreachable(f"Could not reach {where}. Check your internet connection; the study's models "
                                    "are reached through it. Try again later.", detail=detail)
        if isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)):
            if during_stream:
                return MalformedResponse(f"The connection to {where} broke before the reply was complete. The text "
                                         "received so far is kept; try again.", detail=detail)
            return MalformedResponse(f"{where_} closed the connection without answering. "
                                     "Try again; if it keeps happening, tell the research team.", detail=detail)
        return LLMError(f"The request to {where} failed ({type(exc).__name__}). Try again.", detail=detail)

    def _study_http_error(self, response: httpx.Response, server_says: str, detail: str) -> LLMError:
        """The gateway's answers (docs/ARCHITECTURE.md, "Model roles"): its ``detail`` is written for people."""
        status = response.status_code
        where_ = f"The study's server at {self.study_server}"  # starts each sentence
        said = f" (the server said: {_short(server_says, 300)})" if server_says else ""
        if status == 401:
            return ModelAuthError(
                f"{where_} did not accept this install's participant token (HTTP 401), so the "
                "study's models cannot be used. If the research team re-enrolled you, enroll again with "
                "`studyapp enroll URL CODE`.", detail=detail)
        if status == 403:
            # E.g. "You have withdrawn from this study, so its models are no longer available to you."
            return ModelAuthError(server_says or f"{where_} refused to serve its models to "
                                  "this install (HTTP 403).", detail=detail)
        if status == 404:
            return ModelNotFound(server_says or f"The study's server has no model {self.model!r}. Ask the "
                                 "research team.", detail=detail)
        if status == 429:
            body = _json_of(response)
            retry_after = _retry_after(response.headers.get("retry-after"))
            return ModelRateLimited(
                study_limit_message(str(body.get("limit") or ""), _reset_time(body.get("reset_at")), retry_after),
                detail=detail, retry_after=retry_after)
        if status == 502:
            return ModelServerError(
                f"{where_} could not get an answer from the model {self.model!r} (HTTP 502)"
                f"{said}. Try again later; if it keeps happening, tell the research team.", detail=detail)
        if status == 504:
            return ModelTimeout(
                f"{where_} waited too long for the model {self.model!r} (HTTP 504){said}. "
                "Try again later; if it keeps happening, tell the research team.", detail=detail)
        if status >= 500:
            return ModelServerError(
                f"{where_} failed on its side (HTTP {status}){said}. Try again later; if it "
                "keeps happening, tell the research team.", detail=detail)
        return LLMError(
            f"The study's model {self.model!r} rejected the request (HTTP {status}){said}. If it keeps happening, "
            "tell the research team.", detail=detail)

    def _http_error(self, response: httpx.Response) -> LLMError:
        status = response.status_code
        server_says = self._redact(_error_message(response))
        detail = f"HTTP {status}: {server_says}" if server_says else f"HTTP {status}"
        if self.via_study:
            return self._study_http_error(response, server_says, detail)
        url = self.base_url
        said = f" (the server said: {_short(server_says)})" if server_says else ""
        if status in (401, 403):
            if self._api_key:
                what = f"The model server at {url} refused the API key (HTTP {status})."
            else:
                what = f"The model server at {url} needs an API key (HTTP {status}) and none is set."
            return ModelAuthError(
                f"{what} Enter the key in Settings (it is kept in the system keyring), or set STUDYAPP_API_KEY "
                "for this run.", detail=detail)
        if status == 404 or _mentions_missing_model(server_says):
            return ModelNotFound(
                f"The model {self.model!r} was not found at {url}{said}. Check the model name and the base URL "
                "(usually ending in /v1) in Settings; `studyapp doctor` shows what the server offers.",
                detail=detail)
        if status == 429:
            retry_after = _retry_after(response.headers.get("retry-after"))
            when = f"in {retry_after:g} s" if retry_after is not None else "in a little while"
            return ModelRateLimited(
                f"The model server at {url} is limiting requests (HTTP 429){said}. Try again {when}.",
                detail=detail, retry_after=retry_after)
        if status >= 500:
            return ModelServerError(
                f"The model server at {url} failed on its side (HTTP {status}){said}. Try again; if it keeps "
                "happening, check the server.", detail=detail)
        return LLMError(
            f"The model server at {url} rejected the request (HTTP {status}){said}. Check the model settings "
            "and parameters in Settings.", detail=detail)

    # -- ChatModel -------------------------------------------------------------------------------

    async def stream(self, messages: list[ChatMessage], params: ChatParams | None = None) -> AsyncIterator[str]:
        """Yield the reply's text deltas as they arrive.

        On a broken or garbled stream, the deltas already yielded stand and MalformedResponse is raised after.
        """
        body = self._body(messages, params, stream=True)
        answering = False
        try:
            client = self._get_client()
            async with client.stream("POST", "chat/completions", json=body,
                                     headers={"Accept": "text/event-stream"}) as response:
                if response.is_error:
                    await response.aread()
                    raise self._http_error(response)
                answering = True
                content_type = response.headers.get("content-type", "")
                if "text/event-stream" not in content_type and "json" in content_type:
                    # A server that ignored stream=true and answered in one piece.
                    await response.aread()
                    text = self._message_content(response)
                    if text:
                        yield text
                    return
                finished = False
                async for line in response.aiter_lines():
                    delta, done = self._parse_sse_line(line)
                    if delta:
                        yield delta
                    if done == "done":
                        return
                    if done == "finish":
                        finished = True
                if not finished:
                    raise MalformedResponse(
                        f"The model server at {self.base_url} ended the stream before the reply was complete. "
                        "The text received so far is kept; try again.", detail="stream ended without [DONE]")
        except _HTTPX_ERRORS as exc:
            raise self._transport_error(exc, during_stream=answering) from None

    def _parse_sse_line(self, line: str) -> tuple[str, str | None]:
        """One event-stream line: (text delta, "done" | "finish" | None)."""
        line = line.rstrip("\r")
        if not line or line.startswith(":"):
            return "", None  # blank separator or keep-alive comment
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field in ("event", "id", "retry"):
            return "", None
        if field != "data":
            raise MalformedResponse(
                f"The model server at {self.base_url} sent a stream this app cannot read. The text received so "
                "far is kept; check that the base URL points at an OpenAI-compatible API.",
                detail=f"unexpected line: {_short(line)}")
        if value.strip() == "[DONE]":
            return "", "done"
        try:
            event = json.loads(value)
        except ValueError:
            raise MalformedResponse(
                f"The model server at {self.base_url} sent a garbled stream event. The text received so far is "
                "kept; try again.", detail=f"not JSON: {_short(value)}") from None
        if not isinstance(event, dict):
            raise MalformedResponse(
                f"The model server at {self.base_url} sent an unexpected stream event. The text received so far "
                "is kept; try again.", detail=f"not an object: {_short(value)}")
        if "error" in event:
            message = self._redact(_message_of(event))
            raise ModelServerError(
                f"The model server at {self.base_url} reported an error while replying: {_short(message)}. "
                "The text received so far is kept; try again.", detail=message)
        text_parts: list[str] = []
        finished = False
        for choice in event.get("choices") or []:
            if not isinstance(choice, dict):
                continue
            delta = choice.get("delta") or {}
            content = delta.get("content") if isinstance(delta, dict) else None
            if isinstance(content, str):
                text_parts.append(content)
            if choice.get("finish_reason"):
                finished = True
        return "".join(text_parts), ("finish" if finished else None)

    def _message_content(self, response: httpx.Response) -> str:
        try:
            data = response.json()
            content = data["choices"][0]["message"].get("content")
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            raise MalformedResponse(
                f"The model server at {self.base_url} answered with something that is not a chat completion. "
                "Check that the base URL points at an OpenAI-compatible API.",
                detail=_short(self._redact(response.text))) from None
        return content if isinstance(content, str) else ""

    async def _post(self, body: dict[str, Any]) -> httpx.Response:
        try:
            client = self._get_client()
            response = await client.post("chat/completions", json=body)
            await response.aread()
        except _HTTPX_ERRORS as exc:
            raise self._transport_error(exc) from None
        return response

    async def complete(self, messages: list[ChatMessage], params: ChatParams | None = None) -> str:
        """The whole reply in one (non-streaming) request."""
        response = await self._post(self._body(messages, params, stream=False))
        if response.is_error:
            raise self._http_error(response)
        return self._message_content(response)

    async def complete_json(
        self,
        messages: list[ChatMessage],
        schema: dict[str, Any],
        params: ChatParams | None = None,
    ) -> JSONResult:
        modes = (self.json_mode,) if self.json_mode else JSON_MODES
        for mode in modes:
            body = self._body(_json_messages(messages, schema, mode), params, stream=False)
            if mode == "json_schema":
                body["response_format"] = {"type": "json_schema",
                                           "json_schema": {"name": _schema_name(schema), "schema": schema}}
            elif mode == "json_object_schema":
                body["response_format"] = {"type": "json_object", "schema": schema}
            elif mode == "json_object":
                body["response_format"] = {"type": "json_object"}
            response = await self._post(body)
            if mode != "prompt" and _rejects_response_format(response):
                continue
            if response.is_error:
                raise self._http_error(response)
            self.json_mode = mode
            raw = self._message_content(response)
            return JSONResult(parse_json_text(raw), raw)
        # Only reached when a remembered mode stopped working (e.g. the server changed): start over.
        self.json_mode = None
        return await self.complete_json(messages, schema, params)

    # -- diagnostics -----------------------------------------------------------------------------

    async def list_models(self) -> list[str]:
        """Model ids the server offers (GET /models)."""
        try:
            client = self._get_client()
            response = await client.get("models")
        except _HTTPX_ERRORS as exc:
            raise self._transport_error(exc) from None
        if response.is_error:
            raise self._http_error(response)
        try:
            return [str(m["id"]) for m in response.json().get("data", [])]
        except (ValueError, KeyError, TypeError, AttributeError):
            raise MalformedResponse(
                f"The model server at {self.base_url} answered /models with something unexpected. Check that the "
                "base URL points at an OpenAI-compatible API.", detail=_short(response.text)) from None

    async def ping(self) -> str:
        """A short line for `studyapp doctor`: does the model answer, and how fast. Raises LLMError."""
        started = time.perf_counter()
        text = await self.complete([{"role": "user", "content": "Say OK."}],
                                   ChatParams(temperature=0.0, max_tokens=8))
        elapsed = time.perf_counter() - started
        return f"{self.model} at {self.base_url} answered in {elapsed:.2f} s: {_short(text.strip(), 40)!r}"


# -- helpers -------------------------------------------------------------------------------------


@functools.cache
def _default_tls() -> ssl.SSLContext:
    # Loading the CA bundle costs 30-50 ms; build it once per process, not once per client.
    return ssl.create_default_context()


def _tls_for(base_url: str) -> ssl.SSLContext | bool:
    # Plain http has no TLS to verify (and redirects are not followed), so skip building a CA context.
    return False if base_url.lower().startswith("http://") else _default_tls()


def _json_messages(messages: list[ChatMessage], schema: dict[str, Any], mode: str) -> list[ChatMessage]:
    if mode == "json_schema":
        return list(messages)
    # JSON mode (OpenAI requires the word JSON in the prompt) and plain prompting need the schema in words.
    instruction = ("Answer with only a JSON value, no other text, that follows this JSON Schema:\n"
                   + json.dumps(schema, separators=(",", ":")))
    out = list(messages)
    if out and out[0].get("role") == "system":
        out[0] = {"role": "system", "content": f"{out[0]['content']}\n\n{instruction}"}
    else:
        out.insert(0, {"role": "system", "content": instruction})
    return out


def _schema_name(schema: dict[str, Any]) -> str:
    # OpenAI requires ^[a-zA-Z0-9_-]{1,64}$.
    name = re.sub(r"[^a-zA-Z0-9_-]", "_", str(schema.get("title") or "response"))
    return name[:64] or "response"


def _rejects_response_format(response: httpx.Response) -> bool:
    # Some servers (llama-cpp-python's among them) answer a request validation error with 500.
    if response.status_code not in (400, 415, 422, 500, 501):
        return False
    text = response.text.lower()
    return any(word in text for word in _RESPONSE_FORMAT_WORDS)


def _mentions_missing_model(text: str) -> bool:
    lowered = text.lower()
    return "model" in lowered and ("not found" in lowered or "does not exist" in lowered
                                   or "model_not_found" in lowered or "no such model" in lowered)


def _message_of(data: Any) -> str:
    if isinstance(data, dict):
        for key in ("error", "detail", "message"):
            if key in data:
                inner = data[key]
                if isinstance(inner, dict):
                    return _message_of(inner) or json.dumps(inner)
                if isinstance(inner, list):
                    return "; ".join(_message_of(i) if isinstance(i, dict) else str(i) for i in inner)
                return str(inner)
        if "msg" in data:
            return str(data["msg"])
    return ""


def _error_message(response: httpx.Response) -> str:
    try:
        message = _message_of(response.json())
    except ValueError:
        message = ""
    if not message:
        message = response.text.strip()
    return _short(message, _DETAIL_LIMIT)


def _json_of(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _reset_time(value: Any) -> datetime | None:
    """The gateway's ``reset_at`` (ISO 8601, UTC), or None when absent or unreadable."""
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _duration(seconds: float) -> str:
    """E.g. "3 h 12 min", "12 min", "40 s": how long until a limit resets."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    hours, minutes = divmod(seconds // 60, 60)
    if not hours:
        return f"{minutes} min"
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def study_limit_message(limit: str, reset_at: datetime | None, retry_after: float | None = None, *,
                        now: datetime | None = None) -> str:
    """The study's server said a limit is reached: which one, and when it lifts in the participant's local time.

    E.g. "Today's model budget from the study is used up; it resets at 01:00 (in 3 h 12 min)."
    """
    now = now or datetime.now(UTC)
    if reset_at is not None and not timedelta(0) <= reset_at - now <= timedelta(seconds=MAX_RETRY_AFTER_S):
        reset_at = None  # a reset time in the past or days away is not believed
    if reset_at is None and retry_after is not None and 0 <= retry_after <= MAX_RETRY_AFTER_S:
        reset_at = now + timedelta(seconds=retry_after)
    if limit == "daily_tokens":
        head = "Today's model budget from the study is used up"
    elif limit == "requests_per_minute":
        head = "The study's server allows only so many model requests a minute, and they are used up"
    else:
        head = "The study's server is limiting model requests for now"
    if reset_at is None:
        return f"{head}; try again later."
    local = reset_at.astimezone()  # the participant's time zone
    return f"{head}; it resets at {local:%H:%M} (in {_duration((reset_at - now).total_seconds())})."


# A server's Retry-After beyond this is not believed (nor are inf and NaN): the wait is said as "later".
MAX_RETRY_AFTER_S = 2 * 86400.0


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError, OverflowError):
            return None
    if not math.isfinite(seconds) or seconds > MAX_RETRY_AFTER_S:
        return None
    return max(0.0, seconds)


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
