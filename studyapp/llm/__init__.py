"""Chat models behind one interface (``ChatModel``): an OpenAI-compatible HTTP endpoint or the embedded SmolLM2.

Implementations live in ``openai_compat`` and ``local`` and are imported lazily by ``factory.make_model``, so
importing this package never loads httpx clients or llama.cpp.
"""

from studyapp.llm.base import (
    ChatMessage,
    ChatModel,
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
)

__all__ = [
    "ChatMessage",
    "ChatModel",
    "ChatParams",
    "JSONResult",
    "LLMError",
    "MalformedResponse",
    "ModelAuthError",
    "ModelNotFound",
    "ModelRateLimited",
    "ModelServerError",
    "ModelTimeout",
    "ModelUnavailable",
    "ModelUnreachable",
]
