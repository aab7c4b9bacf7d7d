"""A scripted OpenAI-compatible chat-completions server for tests and benchmarks.

``ScriptedLLM`` is a real HTTP server (Starlette under uvicorn, in a background thread on 127.0.0.1)
that answers ``POST /v1/chat/completions`` and ``GET /v1/models`` the way OpenAI-compatible servers do,
with replies the test queued in advance. It lets a test drive the whole app over real HTTP while
deciding exactly what the "model" says, how fast it says it, and how it fails.

    with run_scripted_llm() as llm:
        llm.add_text("Hello there!")                 # streamed word by word when the request streams
        llm.add_json({"attributes": []})             # content is json.dumps(value)
        llm.add_raw_content("{not json")             # content verbatim
        llm.add_error(429, {"error": {"message": "slow down"}}, headers={"Retry-After": "3"})
        llm.add_disconnect("Partial rep")            # stream these chunks, then drop the connection
        llm.add_raw_sse("data: {garbage\\n\\n")      # the event-stream body verbatim
        llm.add_rule(lambda body: "echo: " + body["messages"][-1]["content"])
        reply = llm.add_text("one two three four", hold_after=2)  # pauses after 2 chunks ...
        ...; reply.wait_held(); ...; reply.release()                # ... until the test releases it
        model = OpenAICompatModel(llm.base_url, llm.model)
        ...
        assert llm.requests[-1]["messages"][-1]["content"] == "..."

Queued replies are used once each, in order; ``llm.clear()`` drops the unused ones. With the queue empty, the
persistent ``default`` rule answers (``llm.set_default(...)``), and without one the server answers
``"You said: <last user message>"``.
A rule is a callable taking the request body and returning a ``ScriptedReply``, a ``str`` (text reply) or
any other JSON value (a JSON reply).

Options: ``tokens_per_s`` paces streamed chunks (for benchmarks; concurrent requests stream concurrently),
``api_key`` makes the server answer 401 unless ``Authorization: Bearer <api_key>`` is sent,
``known_models`` makes unknown model names answer 404 ``model_not_found``, ``prefix`` serves the API under
that path (``prefix="/llm"``: ``{server_url}/llm/v1``, where a study server's model gateway answers), and
``supported_response_formats`` makes other ``response_format`` types answer 400 (as servers without
structured output do). ``response_format`` itself is otherwise only recorded: the queued content is echoed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.support.net import bound_socket, wait_until_http_ok

DEFAULT_MODEL = "scripted-model"
ALL_RESPONSE_FORMATS = frozenset({"text", "json_object", "json_schema"})


class _ScriptedDisconnect(Exception):
    """Raised inside a response body to make uvicorn drop the connection mid-response."""


@dataclass
class ScriptedReply:
    """One scripted answer. Build them with ``ScriptedLLM.add_*`` rather than by hand."""

    content: str = ""
    # Stream chunks; by default ``content`` split into word-like tokens (leading space kept, as tokenizers do).
    chunks: list[str] | None = None
    status: int = 200
    error_body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    # Sent verbatim as the response body (event stream when streaming, JSON body otherwise).
    raw: str | None = None
    # Send this many chunks, then drop the connection without finishing the response.
    disconnect_after: int | None = None
    tokens_per_s: float | None = None
    # Pause after this many chunks until ``release()``.
    hold_after: int | None = None
    finish_reason: str = "stop"
    # Interleave SSE comment lines (": keep-alive"), which clients must ignore.
    keepalive: bool = False
    # Set by the server: the stream reached ``hold_after``; the response finished; the client went away early.
    held: threading.Event = field(default_factory=threading.Event, repr=False)
    finished: threading.Event = field(default_factory=threading.Event, repr=False)
    client_closed: threading.Event = field(default_factory=threading.Event, repr=False)
    _released: threading.Event = field(default_factory=threading.Event, repr=False)

    def stream_chunks(self) -> list[str]:
        if self.chunks is not None:
            return list(self.chunks)
        return split_tokens(self.content)

    def release(self) -> None:
        """Let a reply that was queued with ``hold_after`` continue."""
        self._released.set()

    def wait_held(self, timeout: float = 10.0) -> None:
        """Block until the stream paused at ``hold_after`` (bounded); raise TimeoutError otherwise."""
        if not self.held.wait(timeout):
            raise TimeoutError(f"The scripted reply did not reach its hold point within {timeout}s.")

    async def wait_held_async(self, timeout: float = 10.0) -> None:
        await asyncio.to_thread(self.wait_held, timeout)


Rule = Callable[[dict[str, Any]], Any]


def split_tokens(text: str) -> list[str]:
    """Split text into word-like stream chunks, each carrying its leading whitespace."""
    return re.findall(r"\s*\S+|\s+$", text)


def _as_reply(value: Any) -> ScriptedReply:
    if isinstance(value, ScriptedReply):
        return value
    if isinstance(value, str):
        return ScriptedReply(content=value)
    return ScriptedReply(content=json.dumps(value))


class ScriptedLLM:
    """The scripted server and its queue of replies. Start it with ``run_scripted_llm()``."""

    def __init__(
        self,
        *,
        model: str = DEFAULT_MODEL,
        tokens_per_s: float | None = None,
        api_key: str | None = None,
        known_models: Iterable[str] | None = None,
        supported_response_formats: Iterable[str] = ALL_RESPONSE_FORMATS,
        prefix: str = "",
    ) -> None:
        self.model = model
        self.prefix = prefix.rstrip("/")
        self.tokens_per_s = tokens_per_s
        self.api_key = api_key
        self.known_models = None if known_models is None else set(known_models)
        self.supported_response_formats = set(supported_response_formats)
        # Request bodies of every chat-completions call received, in arrival order (also the rejected ones), and
        # their headers (names lower-cased), index for index.
        self.requests: list[dict[str, Any]] = []
        self.request_headers: list[dict[str, str]] = []
        self.default: Rule | None = None
        self._queue: deque[ScriptedReply | Rule] = deque()
        self._issued: list[ScriptedReply] = []
        self._lock = threading.Lock()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port: int | None = None
        self.app = Starlette(routes=[
            Route(f"{self.prefix}/v1/chat/completions", self._chat_completions, methods=["POST"]),
            Route(f"{self.prefix}/v1/models", self._models, methods=["GET"]),
        ])

    # -- scripting -------------------------------------------------------------------------------

    @property
    def server_url(self) -> str:
        """The server's root, without the prefix or /v1."""
        if self.port is None:
            raise RuntimeError("ScriptedLLM is not running; use run_scripted_llm().")
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI-style base URL, ending in /v1 (what a model's settings hold)."""
        return f"{self.server_url}{self.prefix}/v1"

    def add(self, reply: ScriptedReply) -> ScriptedReply:
        with self._lock:
            self._queue.append(reply)
        return reply

    def add_text(self, text: str, *, chunks: list[str] | None = None, tokens_per_s: float | None = None,
                 hold_after: int | None = None, finish_reason: str = "stop",
                 keepalive: bool = False) -> ScriptedReply:
        return self.add(ScriptedReply(content=text if chunks is None else "".join(chunks), chunks=chunks,
                                      tokens_per_s=tokens_per_s, hold_after=hold_after,
                                      finish_reason=finish_reason, keepalive=keepalive))

    def add_json(self, value: Any, **kwargs: Any) -> ScriptedReply:
        return self.add_text(json.dumps(value), **kwargs)

    def add_raw_content(self, content: str, **kwargs: Any) -> ScriptedReply:
        return self.add_text(content, **kwargs)

    def add_error(self, status: int, body: Any = None, *, headers: dict[str, str] | None = None) -> ScriptedReply:
        if body is None:
            body = {"error": {"message": f"scripted error {status}", "type": "server_error", "code": status}}
        return self.add(ScriptedReply(status=status, error_body=body, headers=dict(headers or {})))

    def add_disconnect(self, partial: str | list[str] = "", *, tokens_per_s: float | None = None) -> ScriptedReply:
        """Stream ``partial`` (its chunks), then drop the connection without finishing the response."""
        chunks = split_tokens(partial) if isinstance(partial, str) else list(partial)
        return self.add(ScriptedReply(content="".join(chunks), chunks=chunks, disconnect_after=len(chunks),
                                      tokens_per_s=tokens_per_s))

    def add_raw_sse(self, body: str) -> ScriptedReply:
        """Answer with this exact body (an event stream when the request streams)."""
        return self.add(ScriptedReply(raw=body))

    def add_rule(self, rule: Rule) -> None:
        """Queue a one-shot callable deciding the reply from the request body."""
        with self._lock:
            self._queue.append(rule)

    def set_default(self, rule: Rule | str | None) -> None:
        """The persistent answer when the queue is empty: a rule, a fixed text, or None for the echo."""
        self.default = (lambda _body: rule) if isinstance(rule, str) else rule

    @property
    def pending(self) -> int:
        """Queued replies not used yet."""
        with self._lock:
            return len(self._queue)

    def clear(self) -> int:
        """Drop the queued replies not used yet (e.g. between a property test's examples); returns how many."""
        with self._lock:
            dropped = len(self._queue)
            self._queue.clear()
        return dropped

    @property
    def last_request(self) -> dict[str, Any]:
        return self.requests[-1]

    def wait_for_requests(self, count: int, timeout: float = 10.0) -> None:
        """Block until at least ``count`` chat requests arrived (bounded); raise TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        while len(self.requests) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"Expected {count} requests, got {len(self.requests)} within {timeout}s.")
            time.sleep(0.005)

    # -- serving ---------------------------------------------------------------------------------

    def _next_reply(self, body: dict[str, Any]) -> ScriptedReply:
        with self._lock:
            item = self._queue.popleft() if self._queue else None
        if item is None:
            if self.default is not None:
                reply = _as_reply(self.default(body))
            else:
                users = [m.get("content", "") for m in body.get("messages", []) if m.get("role") == "user"]
                reply = ScriptedReply(content=f"You said: {users[-1] if users else ''}")
        elif isinstance(item, ScriptedReply):
            reply = item
        else:
            reply = _as_reply(item(body))
        self._issued.append(reply)
        return reply

    async def _models(self, request: Request) -> Response:
        names = sorted(self.known_models) if self.known_models is not None else [self.model]
        return JSONResponse({"object": "list",
                             "data": [{"id": n, "object": "model", "owned_by": "scripted"} for n in names]})

    def _unauthorized(self, request: Request) -> bool:
        return self.api_key is not None and request.headers.get("authorization") != f"Bearer {self.api_key}"

    async def _chat_completions(self, request: Request) -> Response:
        raw = await request.body()
        try:
            body = json.loads(raw)
            if not isinstance(body, dict):
                raise ValueError("body is not an object")
        except ValueError:
            return _error(400, "The request body is not valid JSON.", "invalid_request_error")
        with self._lock:
            self.requests.append(body)
            self.request_headers.append(dict(request.headers))
        if self._unauthorized(request):
            return _error(401, "Incorrect API key provided.", "invalid_request_error", code="invalid_api_key")
        model = body.get("model")
        if self.known_models is not None and model not in self.known_models:
            return _error(404, f"The model `{model}` does not exist or you do not have access to it.",
                          "invalid_request_error", code="model_not_found")
        response_format = body.get("response_format")
        if isinstance(response_format, dict):
            kind = response_format.get("type")
            if kind not in self.supported_response_formats:
                return _error(400, f"response_format type '{kind}' is not supported by this server.",
                              "invalid_request_error", param="response_format")
        reply = self._next_reply(body)
        if reply.status >= 400:
            content = reply.error_body
            if isinstance(content, str):
                return Response(content, status_code=reply.status, headers=reply.headers, media_type="text/plain")
            return JSONResponse(content, status_code=reply.status, headers=reply.headers)
        model_name = model or self.model
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return StreamingResponse(self._sse(request, reply, model_name, include_usage),
                                     media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", **reply.headers})
        return StreamingResponse(self._whole(reply, model_name), media_type="application/json",
                                 headers=reply.headers)

    async def _pace(self, reply: ScriptedReply, index: int) -> None:
        if reply.hold_after is not None and index == reply.hold_after:
            reply.held.set()
            # Polled rather than waited in a thread: any number of replies may be held at once.
            while not reply._released.is_set():
                await asyncio.sleep(0.005)
        rate = reply.tokens_per_s or self.tokens_per_s
        if rate:
            await asyncio.sleep(1.0 / rate)

    async def _sse(self, request: Request, reply: ScriptedReply, model: str,
                   include_usage: bool) -> AsyncIterator[bytes]:
        try:
            if reply.raw is not None:
                yield reply.raw.encode()
                reply.finished.set()
                return
            ident = f"chatcmpl-{uuid.uuid4().hex[:12]}"
            created = int(time.time())

            def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
                data = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": model,
                        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
                return f"data: {json.dumps(data)}\n\n".encode()

            yield chunk({"role": "assistant", "content": ""})
            pieces = reply.stream_chunks()
            for index, piece in enumerate(pieces):
                if reply.disconnect_after is not None and index == reply.disconnect_after:
                    break
                await self._pace(reply, index)
                if await request.is_disconnected():
                    # The client stopped reading (e.g. the participant pressed Esc): stop like a real server.
                    reply.client_closed.set()
                    return
                if reply.keepalive:
                    yield b": keep-alive\n\n"
                yield chunk({"content": piece})
            if reply.disconnect_after is not None:
                if reply.hold_after is not None and reply.hold_after >= len(pieces):
                    await self._pace(reply, len(pieces))
                raise _ScriptedDisconnect
            if reply.hold_after is not None and reply.hold_after >= len(pieces):
                await self._pace(reply, len(pieces))
            yield chunk({}, reply.finish_reason)
            if include_usage:
                usage = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": model,
                         "choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": len(pieces),
                                                  "total_tokens": 1 + len(pieces)}}
                yield f"data: {json.dumps(usage)}\n\n".encode()
            yield b"data: [DONE]\n\n"
            reply.finished.set()
        except _ScriptedDisconnect:
            raise
        except BaseException:
            # Cancelled or closed by the server because the client went away before the end.
            reply.client_closed.set()
            raise

    async def _whole(self, reply: ScriptedReply, model: str) -> AsyncIterator[bytes]:
        if reply.raw is not None:
            yield reply.raw.encode()
            reply.finished.set()
            return
        await self._pace(reply, 0)
        data = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion", "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": reply.content},
                         "finish_reason": reply.finish_reason}],
            "usage": {"prompt_tokens": 1, "completion_tokens": len(reply.stream_chunks()),
                      "total_tokens": 1 + len(reply.stream_chunks())},
        }
        encoded = json.dumps(data).encode()
        if reply.disconnect_after is not None:
            yield encoded[: len(encoded) // 2]
            raise _ScriptedDisconnect
        yield encoded
        reply.finished.set()

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        sock = bound_socket()
        self.port = int(sock.getsockname()[1])
        config = uvicorn.Config(self.app, log_config=None, log_level="warning", lifespan="off", ws="none",
                                timeout_graceful_shutdown=2, loop="asyncio")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]},
                                        name=f"scripted-llm-{self.port}", daemon=True)
        self._thread.start()
        # Bounded readiness wait: uvicorn flips ``started`` once it is accepting connections.
        deadline = time.monotonic() + 15
        while not self._server.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.002)
        wait_until_http_ok(f"{self.base_url}/models", timeout=15, alive=self._thread.is_alive)

    def stop(self) -> None:
        # Paused streams must end, or the server would wait on them during shutdown.
        for reply in list(self._issued) + [r for r in self._queue if isinstance(r, ScriptedReply)]:
            reply.release()
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = None
        self._thread = None


def _error(status: int, message: str, kind: str, *, code: str | None = None, param: str | None = None) -> Response:
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": code}},
                        status_code=status)


class _DropScriptedDisconnects(logging.Filter):
    """Keep uvicorn's "Exception in ASGI application" for the intended disconnects out of test logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not _contains_disconnect(exc)


def _contains_disconnect(exc: BaseException | None) -> bool:
    # Walk causes, contexts and group members once each: starlette re-raises an exception group "from" its own
    # member, so the chain can be a cycle.
    seen: set[int] = set()
    todo = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, _ScriptedDisconnect):
            return True
        if isinstance(e, BaseExceptionGroup):
            todo.extend(e.exceptions)
        todo.extend((e.__cause__, e.__context__))
    return False


logging.getLogger("uvicorn.error").addFilter(_DropScriptedDisconnects())


@contextmanager
def run_scripted_llm(**options: Any) -> Iterator[ScriptedLLM]:
    """Start a ScriptedLLM (options as in its constructor) for the duration of the block."""
    llm = ScriptedLLM(**options)
    llm.start()
    try:
        yield llm
    finally:
        llm.stop()
