"""Build the ChatModel that a ModelSettings describes."""

from __future__ import annotations

from studyapp.llm.base import ChatModel
from studyapp.llm.config import LOCAL_SYSTEM_PROMPT, ModelSettings


def make_model(settings: ModelSettings, *, api_key: str | None = None) -> ChatModel:
    if settings.is_local:
        from studyapp.llm.local import LocalModel

        return LocalModel(system_prompt=LOCAL_SYSTEM_PROMPT)
    from studyapp.llm.openai_compat import OpenAICompatModel

    if api_key is None:
        from studyapp.secrets import get_api_key

        api_key = get_api_key(settings.key_profile)
    return OpenAICompatModel(
        base_url=settings.base_url or "http://127.0.0.1:8080/v1",
        model=settings.model,
        api_key=api_key,
        timeout_s=settings.timeout_s,
    )
