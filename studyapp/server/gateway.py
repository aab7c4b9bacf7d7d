"""The model gateway: the study's models, relayed for enrolled participants (OpenAI-compatible chat completions).

Participants have no API keys: their apps call ``{server}/llm/v1`` with their participant token, and the gateway
relays each request to the upstream the researchers configured (``studyapp-server models add``), with the
upstream's key, which only the server reads (from an environment variable or a file only its user can read) and
which is never stored, logged or sent to a participant. The contract is in docs/ARCHITECTURE.md ("Model
gateway"); in short:

- ``model`` names a gateway model; the gateway puts the upstream's model name in its place and passes every other
  field unchanged. Streams are passed through chunk by chunk as they arrive (nothing is buffered); when the
  participant's connection closes, the upstream request is closed too; when the upstream cuts a stream, the
  participant's stream is cut (never ended cleanly).
- Budgets per participant (tokens per UTC day, requests per minute) are counted in the database, so they hold across
  every worker process; over budget is 429 with Retry-After and ``reset_at``.
- Only counts and timings are kept, per participant, role, UTC day and model: never a prompt or an answer. Tokens
  come from the upstream's ``usage`` where it sends one (the gateway reads the chunks it passes on, and never asks
  for one the participant did not); otherwise they are estimated from the text length and counted as estimated.
"""

# No "from __future__ import annotations": FastAPI must see the endpoints' dependency annotations as objects.
import json
import logging
import math
import os
import stat
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import anyio
import httpx
from fastapi import Depends, FastAPI, HTTPException, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from studyapp.server.shared_storage import Admission

log = logging.getLogger(__name__)

# Connecting to the upstream should take milliseconds; reading may wait for a long generation between two chunks.
CONNECT_TIMEOUT_S = 5.0
DEFAULT_READ_TIMEOUT_S = 120.0
ROLES = frozenset({"assistant", "extractor", "selector", "judge"})
OTHER_ROLE = "other"
# Characters per token when a count must be estimated (no ``usage`` from the upstream): the usual rule of thumb
# for English text with OpenAI-style tokenizers.
CHARS_PER_TOKEN = 4
# A non-streaming answer is read for its ``usage`` up to this size (answers are far smaller); beyond it, estimated.
MAX_TALLIED_BODY = 4 * 1024 * 1024
WITHDRAWN = "You have withdrawn from this study, so its models are no longer available to you."
NO_CONSENT = ("The study's models are available once this server has received your consent: agree to the consent "
              "document in the app (Ctrl+P, Study consent) or with `studyapp consent`; the app then sends it within "
              "a minute.")


class GatewayProblem(BaseModel):
    detail: str = Field(description="What was wrong and what to do about it.")


class BudgetProblem(BaseModel):
    detail: str = Field(description="Which budget the participant used up, in words.")
    limit: Literal["daily_tokens", "requests_per_minute"] | None = Field(
        default=None, description="The budget used up (absent when too many failed authentications came from this "
                                  "address).")
    reset_at: str | None = Field(default=None, description="When it resets (ISO 8601, UTC).")


def _problem(description: str) -> dict[str, Any]:
    return {"model": GatewayProblem, "description": description}


PROBLEMS: dict[int | str, dict[str, Any]] = {
    401: _problem("Missing or unknown participant token."),
    403: _problem("The participant has withdrawn from the study."),
    429: {"model": BudgetProblem, "description": "Over a budget (see Retry-After and reset_at), or too many failed "
                                                 "authentications from this address."},
    503: _problem("The server's database is busy or unavailable; retry later."),
}
CHAT_PROBLEMS: dict[int | str, dict[str, Any]] = {
    **PROBLEMS,
    400: _problem("The body is not a JSON object naming a model; or the upstream's own 4xx, passed through."),
    404: _problem("The study's server has no such model."),
    413: _problem("The request body is larger than the server accepts."),
    502: _problem("The upstream could not be reached, answered 5xx, or its key cannot be read."),
    504: _problem("The upstream did not answer in time."),
}
# The request body as OpenAI's chat completions take it: only model is read (and replaced), the rest is relayed.
CHAT_REQUEST = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "required": ["model", "messages"], "additionalProperties": True,
    "properties": {"model": {"type": "string", "description": "A model of GET /llm/v1/models."},
                   "messages": {"type": "array", "items": {"type": "object"}},
                   "stream": {"type": "boolean"}}}}}}}
CHAT_ANSWER = {"description": "The upstream's answer, relayed: a chat completion, or an event stream when the "
                              "request streams.",
               "content": {"application/json": {"schema": {"type": "object"}},
                           "text/event-stream": {"schema": {"type": "string"}}}}


class ModelEntry(BaseModel):
    id: str
    object: Literal["model"]
    owned_by: Literal["study"]


class ModelList(BaseModel):
    object: Literal["list"]
    data: list[ModelEntry]


class KeyUnavailable(Exception):
    """The upstream's API key cannot be read (the message says why, never the key)."""


def key_file_problem(path: Path) -> str | None:
    """Why ``path`` may not hold an API key (missing, not a file, readable by group or others), or None."""
    try:
        info = path.stat()
    except OSError as exc:
        return f"the key file {path} cannot be read ({exc.strerror})"
    if not stat.S_ISREG(info.st_mode):
        return f"the key file {path} is not a regular file"
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        # Read access gives the key away; write access lets another user swap it.
        how = "read" if info.st_mode & (stat.S_IRGRP | stat.S_IROTH) else "changed"
        return (f"the key file {path} can be {how} by other users (mode {stat.S_IMODE(info.st_mode):04o}); "
                f"make it readable only by the server's user: chmod 600 {path}")
    return None


def read_api_key(model: dict[str, Any]) -> str | None:
    """The upstream's API key for a gateway model, read now (so a rotated key takes effect at once), or None when
    the model needs none. Raises KeyUnavailable naming the variable or file, never the key."""
    if model.get("api_key_env"):
        value = os.environ.get(model["api_key_env"], "").strip()
        if not value:
            raise KeyUnavailable(f"the environment variable {model['api_key_env']} holding its key is not set "
                                 "for the server")
        return value
    if model.get("api_key_file"):
        path = Path(model["api_key_file"])
        problem = key_file_problem(path)
        if problem:
            raise KeyUnavailable(problem)
        try:
            value = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise KeyUnavailable(f"the key file {path} cannot be read ({type(exc).__name__})") from None
        if not value:
            raise KeyUnavailable(f"the key file {path} is empty")
        return value
    return None


def role_of(header: str | None) -> str:
    role = (header or "").strip().lower()
    return role if role in ROLES else OTHER_ROLE


def estimate_tokens(chars: int) -> int:
    return math.ceil(chars / CHARS_PER_TOKEN)


def _text_chars(value: Any) -> int:
    """Characters of message text in a request's ``messages`` (strings, or OpenAI content parts with text)."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        return sum(_text_chars(v) for v in value)
    if isinstance(value, dict):
        return _text_chars(value.get("content")) + _text_chars(value.get("text"))
    return 0


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Tally:
    """What the gateway learns from the answer it passes on: the upstream's ``usage`` if any, else the number of
    characters of answer text (for an estimate). Reads the bytes as they go by and keeps no text."""

    streaming: bool
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    answer_chars: int = 0
    _pending: bytes = b""
    _body: bytearray | None = None

    def feed(self, chunk: bytes) -> None:
        if not self.streaming:
            if self._body is None:
                self._body = bytearray()
            if len(self._body) + len(chunk) <= MAX_TALLIED_BODY:
                self._body += chunk
            return
        lines = (self._pending + chunk).split(b"\n")
        self._pending = lines.pop()  # an unfinished line waits for the next chunk
        for line in lines:
            if line.startswith(b"data:"):
                self._event(line[5:].strip())

    def finish(self) -> None:
        if self.streaming:
            if self._pending.startswith(b"data:"):
                self._event(self._pending[5:].strip())
            self._pending = b""
            return
        try:
            data = json.loads(bytes(self._body or b""))
        except ValueError:
            return
        if isinstance(data, dict):
            self._usage(data.get("usage"))
            for choice in data.get("choices") or []:
                if isinstance(choice, dict):
                    self.answer_chars += _text_chars(choice.get("message"))
        self._body = None

    def _event(self, data: bytes) -> None:
        if not data or data == b"[DONE]":
            return
        try:
            event = json.loads(data)
        except ValueError:
            return
        if not isinstance(event, dict):
            return
        self._usage(event.get("usage"))
        for choice in event.get("choices") or []:
            if isinstance(choice, dict) and isinstance(choice.get("delta"), dict):
                self.answer_chars += _text_chars(choice["delta"].get("content"))

    def _usage(self, usage: Any) -> None:
        if isinstance(usage, dict):
            prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
            if isinstance(prompt, int) and isinstance(completion, int):
                self.prompt_tokens, self.completion_tokens = prompt, completion


@dataclass
class Outcome:
    """How one relayed request ended, for the usage counts."""

    error: bool = False
    tally: Tally | None = None


class GatewayRefusal(Exception):
    """A request over the participant's budget (answered 429 with Retry-After and reset_at)."""

    def __init__(self, detail: str, limit: str, reset_at: str, retry_after: int) -> None:
        super().__init__(detail)
        self.detail = detail
        self.limit = limit
        self.reset_at = reset_at
        self.retry_after = retry_after


def _problem_body(detail: str) -> bytes:
    return json.dumps({"detail": detail}, ensure_ascii=True).encode("ascii")


class Relay(Response):
    """The ASGI response that relays one admitted request to the upstream and the answer back.

    The upstream request is sent from here rather than from the endpoint, so that everything from connecting to
    the last chunk runs under a watch on the participant's connection: when it closes, the relay is cancelled
    and the upstream connection closed (the upstream sees the request end and stops generating)."""

    def __init__(self, *, client: httpx.AsyncClient, request: httpx.Request, model: str, streaming: bool,
                 on_done: Callable[[Outcome], Any]) -> None:
        # No Response.__init__: there is no body to render; status and headers come from the upstream.
        self.background = None
        self.status_code = 200
        self.client = client
        self.request = request
        self.model = model
        self.streaming = streaming
        self.on_done = on_done

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        outcome = Outcome()
        self._recorded = False
        try:
            async with anyio.create_task_group() as group:
                async def watch() -> None:
                    # The body was read already: the next message is the participant's connection closing.
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    outcome.error = True
                    group.cancel_scope.cancel()

                group.start_soon(watch)
                await self._relay(send, outcome)
                group.cancel_scope.cancel()
        finally:
            await self._record(outcome)  # the participant left mid-way (or the server stops)

    async def _record(self, outcome: Outcome) -> None:
        """Count the request, once. Called before the participant sees the end of the answer, so a request that
        follows it is already measured against the budget with this one's tokens."""
        if self._recorded:
            return
        self._recorded = True
        with anyio.CancelScope(shield=True):
            await self.on_done(outcome)

    async def _problem(self, send: Send, status: int, detail: str, outcome: Outcome) -> None:
        await self._record(outcome)
        body = _problem_body(detail)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    def _unreachable(self, reason: str, what: str) -> str:
        # The upstream's address stays out: it may name a machine of the research team's network.
        return f"The study's model server could not reach model '{self.model}' ({reason}): {what}. Try again later."

    async def _relay(self, send: Send, outcome: Outcome) -> None:
        """Relay the request and its answer, or answer the fault."""
        try:
            response = await self.client.send(self.request, stream=True)
        except httpx.TimeoutException as exc:
            outcome.error = True
            log.warning("gateway: model %r timed out before answering (%s)", self.model, type(exc).__name__)
            waited = self.client.timeout.read if isinstance(exc, httpx.ReadTimeout) else self.client.timeout.connect
            await self._problem(send, 504, f"The study's model server waited too long for model '{self.model}' "
                                           f"(no answer within {waited:g} s): the model is slow or stuck. "
                                           "Try again later.", outcome)
            return
        except httpx.TransportError as exc:
            outcome.error = True
            log.warning("gateway: model %r unreachable (%s)", self.model, type(exc).__name__)
            await self._problem(send, 502, self._unreachable(f"no connection: {type(exc).__name__}",
                                                              "its server is down or cannot be reached"), outcome)
            return
        try:
            if response.status_code >= 500:
                outcome.error = True
                log.warning("gateway: model %r answered HTTP %d", self.model, response.status_code)
                await self._problem(send, 502, self._unreachable(f"HTTP {response.status_code} from its server",
                                                                 "its server failed to answer"), outcome)
                return
            if response.status_code in (401, 403, 404, 407):
                # The upstream refused the study's key or does not know its model: the researchers' configuration,
                # not the participant's doing. Its body may quote the key; the app would read a 401 as its own
                # token refused. So neither passes: a 502 in the gateway's words, the status in the server's log.
                outcome.error = True
                log.warning("gateway: model %r refused by its server: HTTP %d (check `studyapp-server models list` "
                            "and the key)", self.model, response.status_code)
                await self._problem(send, 502, f"The study's model server could not use model '{self.model}' "
                                               f"(HTTP {response.status_code} from its server): the study's key or "
                                               "model setting was refused. The researchers see this in the server's "
                                               "log; try again later.", outcome)
                return
            if response.status_code >= 400:
                # The upstream's own answer (a bad request, its rate limit): passed through unchanged.
                outcome.error = True
                body = await response.aread()
                await self._record(outcome)
                headers = [(b"content-type", response.headers.get("content-type", "application/json").encode()),
                           (b"content-length", str(len(body)).encode())]
                if "retry-after" in response.headers:
                    headers.append((b"retry-after", response.headers["retry-after"].encode()))
                await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
            tally = outcome.tally = Tally(streaming=self.streaming)
            headers = [(b"content-type", response.headers.get("content-type", "application/json").encode()),
                       (b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]
            await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
            try:
                async for chunk in response.aiter_raw():
                    tally.feed(chunk)
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            except (httpx.TransportError, httpx.DecodingError) as exc:
                outcome.error = True
                log.warning("gateway: model %r cut its answer (%s); cutting the participant's too", self.model,
                            type(exc).__name__)
                tally.finish()
                await self._record(outcome)
                # No final body message: returning without it makes the server close the connection, so the
                # participant's stream ends without the upstream's end, as the upstream's did.
                return
            tally.finish()
            await self._record(outcome)
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            with anyio.CancelScope(shield=True):
                await response.aclose()


def install(app: FastAPI, storage: Any, *, participant_token: Callable[..., str], allowed_client: Callable[..., str],
            failed: Callable[[str], None], read_timeout_s: float = DEFAULT_READ_TIMEOUT_S) -> None:
    """Add the gateway's endpoints (``/llm/v1/...``) to ``app``, and its upstream client to the app's lifespan.

    ``participant_token`` and ``allowed_client`` are the app's own dependencies: the same bearer token and the same
    failed-authentication throttle as every other participant endpoint."""
    started = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[Any]:
        # One client (one connection pool) for every upstream, for the app's life. No limit on connections: each
        # participant's stream holds one for its whole length, and the budgets bound how many there are.
        timeout = httpx.Timeout(connect=CONNECT_TIMEOUT_S, read=read_timeout_s, write=30.0, pool=None)
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=100)
        async with httpx.AsyncClient(timeout=timeout, limits=limits, trust_env=False) as client:
            app.state.gateway_client = client
            async with started(app) as state:
                yield state

    app.router.lifespan_context = lifespan

    def admit(token: str) -> tuple[Admission, datetime]:
        moment = _utc_now()
        return storage.gateway_admit(token, day=moment.strftime("%Y-%m-%d"),
                                     minute=moment.strftime("%Y-%m-%dT%H:%M")), moment

    def refuse(admission: Admission, moment: datetime, client: str) -> None:
        if admission.refused == "unknown":
            failed(client)
            raise HTTPException(401, "The server does not know this participant token; enroll again.",
                                headers={"WWW-Authenticate": "Bearer"})
        if admission.refused == "withdrawn":
            raise HTTPException(403, WITHDRAWN)
        if admission.refused == "no_consent":
            raise HTTPException(403, NO_CONSENT)
        limits = admission.limits
        assert limits is not None
        if admission.refused == "daily_tokens":
            reset = (moment + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
            detail = (f"You have used today's budget of {limits.daily_tokens} tokens for the study's models "
                      f"({admission.used_tokens} used); it resets at 00:00 UTC.")
        else:
            reset = (moment + timedelta(minutes=1)).replace(second=0, microsecond=0)
            detail = (f"You have sent {limits.requests_per_minute} requests to the study's models this minute, "
                      "the most allowed; wait until the next minute.")
        wait = max(1, math.ceil((reset - moment).total_seconds()))
        raise GatewayRefusal(detail, admission.refused or "", _iso(reset), wait)

    @app.exception_handler(GatewayRefusal)
    async def on_refusal(request: Request, exc: GatewayRefusal) -> Response:
        body = json.dumps({"detail": exc.detail, "limit": exc.limit, "reset_at": exc.reset_at}, ensure_ascii=True)
        return Response(body, status_code=429, media_type="application/json",
                        headers={"Retry-After": str(exc.retry_after)})

    @app.get("/llm/v1/models", tags=["participants"], summary="The study's models (OpenAI format)",
             response_model=ModelList, responses=PROBLEMS)
    def models(token: Annotated[str, Depends(participant_token)],
               client: Annotated[str, Depends(allowed_client)]) -> dict[str, Any]:
        if storage.participant_for(token) is None:
            if storage.tombstone_for(token) is not None:
                raise HTTPException(403, WITHDRAWN)
            failed(client)
            raise HTTPException(401, "The server does not know this participant token; enroll again.",
                                headers={"WWW-Authenticate": "Bearer"})
        return {"object": "list",
                "data": [{"id": m["name"], "object": "model", "owned_by": "study"} for m in storage.gateway_models()]}

    @app.post("/llm/v1/chat/completions", tags=["participants"],
              summary="Chat completions with one of the study's models (OpenAI format, relayed)",
              description="The request's `model` names a model of `GET /llm/v1/models`; every other field reaches "
                          "the model unchanged. Streams are relayed as they arrive. X-Studyapp-Role (assistant, "
                          "extractor, selector, judge) names what the app uses it for, in the usage counts.",
              openapi_extra=CHAT_REQUEST, responses={200: CHAT_ANSWER, **CHAT_PROBLEMS})
    async def chat_completions(request: Request, token: Annotated[str, Depends(participant_token)],
                               client: Annotated[str, Depends(allowed_client)]) -> Any:
        began = time.perf_counter()
        try:
            body = json.loads(await request.body())
        except ValueError:
            raise HTTPException(400, "The request body is not valid JSON: send a chat completions request as a "
                                     "JSON object encoded as UTF-8.") from None
        if not isinstance(body, dict) or not isinstance(body.get("model"), str):
            raise HTTPException(400, "The request body must be a JSON object whose 'model' names one of the "
                                     "study's models (GET /llm/v1/models).")
        name = body["model"]

        def look_up() -> tuple[Admission, datetime, dict[str, Any] | None, list[str], str | None, str | None]:
            # One trip to a worker thread for everything the request needs before the upstream is called (each
            # trip adds to the first token): the model, the participant's admission and the upstream's key.
            # A name with a control character names no model (and PostgreSQL cannot even compare a NUL).
            model = storage.gateway_model(name) if name.isprintable() and len(name) <= 200 else None
            if model is None:
                # Still 401 or 403 before 404; a request for no model uses none of the participant's budget.
                moment = _utc_now()
                if storage.participant_for(token) is not None:
                    found = Admission(None)
                else:
                    found = Admission("withdrawn" if storage.tombstone_for(token) is not None else "unknown")
                return found, moment, None, [m["name"] for m in storage.gateway_models()], None, None
            admission, moment = admit(token)
            key = key_problem = None
            if admission.refused is None:
                try:
                    key = read_api_key(model)
                except KeyUnavailable as exc:
                    key_problem = str(exc)
            return admission, moment, model, [], key, key_problem

        admission, moment, model, served, key, key_problem = await run_in_threadpool(look_up)
        if admission.refused in ("unknown", "withdrawn"):
            refuse(admission, moment, client)
        if model is None:
            serves = ", ".join(served) if served else "no model yet"
            raise HTTPException(404, f"The study's server has no model '{name}'; it serves: {serves}. "
                                     "Ask the researchers.")
        if admission.refused is not None:
            refuse(admission, moment, client)
        participant_id = admission.participant_id
        assert participant_id is not None
        role = role_of(request.headers.get("x-studyapp-role"))
        streaming = bool(body.get("stream"))
        prompt_chars = _text_chars(body.get("messages"))
        day = moment.strftime("%Y-%m-%d")

        async def done(outcome: Outcome) -> None:
            tally = outcome.tally
            estimated = tally is not None and tally.prompt_tokens is None
            if tally is None:  # no answer: nothing was generated (the prompt may not even have been read)
                prompt, completion = 0, 0
            elif tally.prompt_tokens is not None and tally.completion_tokens is not None:
                prompt, completion = tally.prompt_tokens, tally.completion_tokens
            else:
                prompt, completion = estimate_tokens(prompt_chars), estimate_tokens(tally.answer_chars)
            latency_ms = round((time.perf_counter() - began) * 1000)
            await run_in_threadpool(storage.record_gateway_usage, participant_id, day=day, role=role,
                                    model=name, prompt_tokens=prompt, completion_tokens=completion,
                                    error=outcome.error, estimated=estimated, latency_ms=latency_ms)

        if key_problem is not None:
            log.error("gateway: model %r cannot be used: %s", name, key_problem)
            await done(Outcome(error=True))
            raise HTTPException(502, f"The study's model server could not reach model '{name}' (its settings): "
                                     "the server cannot read its API key. Try again later; the researchers have "
                                     "been told in the server's log.")
        body["model"] = model["upstream_model"]
        headers = {"content-type": "application/json", "accept-encoding": "identity"}
        if streaming:
            headers["accept"] = "text/event-stream"
        if key:
            headers["authorization"] = f"Bearer {key}"
        http: httpx.AsyncClient = request.app.state.gateway_client
        upstream = http.build_request("POST", model["base_url"].rstrip("/") + "/chat/completions",
                                      content=json.dumps(body, ensure_ascii=False).encode("utf-8"), headers=headers)
        return Relay(client=http, request=upstream, model=name, streaming=streaming, on_done=done)

