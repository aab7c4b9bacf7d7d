"""Build the ChatModel that a ModelSettings describes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from studyapp.llm.base import ChatMessage, ChatModel, ChatParams, JSONResult, ModelAuthError
from studyapp.llm.config import LOCAL_SYSTEM_PROMPT, ModelSettings


def make_model(settings: ModelSettings, *, api_key: str | None = None) -> ChatModel:
    """The model ``settings`` name. A model through the study's server (``via_study``) authenticates with the
    participant's token for that study and says its role; no API key is read for it. Without a token the model
    is still built, and each call says the study's models come with enrollment (never a traceback)."""
    if settings.is_local:
        from studyapp.llm.local import LocalModel

        return LocalModel(system_prompt=LOCAL_SYSTEM_PROMPT)
    from studyapp.llm.openai_compat import OpenAICompatModel

    if settings.via_study:
        if api_key is None:
            from studyapp.secrets import SecretStoreUnavailable, get_participant_token

            try:
                api_key = get_participant_token(settings.via_study)
            except SecretStoreUnavailable as exc:  # e.g. a token file others can read: said at every call
                return KeyUnusable(settings.model, str(exc), what="participant token")
        return OpenAICompatModel(
            base_url=settings.base_url or "",
            model=settings.model,
            api_key=api_key,
            timeout_s=settings.timeout_s,
            study_role=settings.role,
        )
    if api_key is None:
        from studyapp.secrets import SecretStoreUnavailable, get_api_key

        try:
            api_key = get_api_key(settings.key_profile)
        except SecretStoreUnavailable as exc:  # e.g. a secrets file others can read: said at every call
            return KeyUnusable(settings.model, str(exc))
    return OpenAICompatModel(
        base_url=settings.base_url or "http://127.0.0.1:8080/v1",
        model=settings.model,
        api_key=api_key,
        timeout_s=settings.timeout_s,
    )


class KeyUnusable:
    """A server model whose stored API key must not be used: every call raises ModelAuthError saying why and what
    to do, the way any model problem reaches the participant (never a crash when the app starts)."""

    def __init__(self, name: str, problem: str, *, what: str = "API key") -> None:
        self.name = name
        self.problem = problem
        self.what = what

    async def stream(self, messages: list[ChatMessage], params: ChatParams | None = None) -> AsyncIterator[str]:
        raise ModelAuthError(f"The {self.what} cannot be used: {self.problem}")
        yield ""  # an async generator, like every model's stream

    async def complete_json(self, messages: list[ChatMessage], schema: dict[str, Any],
                            params: ChatParams | None = None) -> JSONResult:
        raise ModelAuthError(f"The {self.what} cannot be used: {self.problem}")

    async def aclose(self) -> None:
        pass
