"""The ChatModel interface every model implementation provides, and the errors it raises.

Two things are asked of a model: stream a chat reply as text deltas, and complete a structured
JSON answer (for the personalization stages and the judge). Errors are ``LLMError`` subclasses whose
``str()`` is a message a participant can act on; the caller never sees a raw httpx or llama.cpp error.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

ChatMessage = dict[str, str]  # {"role": "system"|"user"|"assistant", "content": "..."}


@dataclass(frozen=True)
class ChatParams:
    """Sampling parameters; the same object is used for both arms of a comparison."""

    temperature: float = 0.7
    top_p: float | None = None
    max_tokens: int | None = 512
    seed: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in (None, {})}


@dataclass(frozen=True)
class JSONResult:
    """A structured completion: the parsed value (or None) and the raw text the model produced."""

    value: Any
    raw: str


class LLMError(Exception):
    """A model call failed. ``str(error)`` says what went wrong and what to do."""

    retryable: bool = False

    def __init__(self, message: str, *, detail: str | None = None) -> None:
        super().__init__(message)
        self.detail = detail


class ModelUnreachable(LLMError):
    retryable = True


class ModelAuthError(LLMError):
    pass


class ModelRateLimited(LLMError):
    retryable = True

    def __init__(self, message: str, *, detail: str | None = None, retry_after: float | None = None) -> None:
        super().__init__(message, detail=detail)
        # Seconds the server asked us to wait (from Retry-After), when it said.
        self.retry_after = retry_after


class ModelTimeout(LLMError):
    retryable = True


class ModelNotFound(LLMError):
    pass


class ModelServerError(LLMError):
    """The model's server failed on its side (HTTP 5xx); trying again later may work."""

    retryable = True


class MalformedResponse(LLMError):
    """The model's server sent something that is not a valid chat response or stream."""


class ModelUnavailable(LLMError):
    """The model cannot run here (e.g. the embedded model's packages are not installed)."""


@runtime_checkable
class ChatModel(Protocol):
    """A chat model. ``name`` is what gets recorded with every output."""

    name: str

    def stream(self, messages: list[ChatMessage], params: ChatParams | None = None) -> AsyncIterator[str]:
        """Yield the reply as text deltas. Raises LLMError."""
        ...

    async def complete_json(
        self,
        messages: list[ChatMessage],
        schema: dict[str, Any],
        params: ChatParams | None = None,
    ) -> JSONResult:
        """Ask for a JSON answer that should satisfy ``schema`` (JSON Schema).

        Implementations use the strongest mechanism the endpoint supports (json_schema response_format,
        then JSON mode, then plain text) and return the raw text alongside the parsed value; validating
        against the schema and repairing is the caller's job. Raises LLMError.
        """
        ...

    async def aclose(self) -> None: ...


_FENCE = re.compile(r"^\s*```(?:json)?\s*\n?(.*?)\n?```\s*$", re.DOTALL | re.IGNORECASE)


def parse_json_text(raw: str) -> Any:
    """The JSON value in a model's answer, or None. Tolerates a Markdown code fence around it."""
    text = raw.strip()
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1).strip()
    try:
        return json.loads(text)
    except ValueError:
        pass
    # Small models sometimes wrap the value in prose: take the outermost object or array.
    for open_, close in (("{", "}"), ("[", "]")):
        start, end = text.find(open_), text.rfind(close)
        if 0 <= start < end:
            try:
                return json.loads(text[start:end + 1])
            except ValueError:
                continue
    return None
