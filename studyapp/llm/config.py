"""Model settings: which model answers, and how to reach it.

Resolution order, later wins: embedded defaults, the settings table, environment
(``STUDYAPP_MODEL``, ``STUDYAPP_BASE_URL``), then the ``--model`` / ``--base-url`` flags. Once the participant
saves a choice in the settings screen, that choice wins over the environment and the flags for the rest of the
run (``resolve(..., environment=False)`` with no flags: studyapp.context.AppContext.choose_model_settings).
``model = "local"`` (the default) means the embedded SmolLM2 model; anything else is a model
name on an OpenAI-compatible endpoint.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from studyapp.llm.base import ChatParams

LOCAL = "local"
ENV_MODEL = "STUDYAPP_MODEL"
ENV_BASE_URL = "STUDYAPP_BASE_URL"
SETTINGS_KEY = "model"


@dataclass(frozen=True)
class ModelSettings:
    model: str = LOCAL
    base_url: str | None = None
    # Which keyring entry holds the API key for this endpoint (see studyapp.secrets.get_api_key).
    key_profile: str = "default"
    params: ChatParams = field(default_factory=ChatParams)
    timeout_s: float = 60.0
    context_messages: int = 20

    @property
    def is_local(self) -> bool:
        return self.model == LOCAL

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["params"] = self.params.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSettings:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__ and k != "params"}
        params = ChatParams(**{k: v for k, v in (data.get("params") or {}).items()
                                if k in ChatParams.__dataclass_fields__})
        return cls(**known, params=params)

    def describe(self) -> str:
        if self.is_local:
            return "embedded SmolLM2-135M-Instruct (offline)"
        return f"{self.model} at {self.base_url}"


def resolve(stored: dict[str, Any] | None = None, *, model: str | None = None,
            base_url: str | None = None, environment: bool = True) -> ModelSettings:
    settings = ModelSettings.from_dict(stored) if stored else ModelSettings()
    env_model, env_url = (os.environ.get(ENV_MODEL), os.environ.get(ENV_BASE_URL)) if environment else (None, None)
    if env_model:
        settings = replace(settings, model=env_model)
    if env_url:
        settings = replace(settings, base_url=env_url)
    if model:
        settings = replace(settings, model=model)
    if base_url:
        settings = replace(settings, base_url=base_url)
    return settings


def overriding_sources(*, model: str | None = None, base_url: str | None = None,
                       environment: bool = True) -> list[str]:
    """Where a model or URL comes from that wins over the saved settings: the flags, the environment."""
    sources = []
    if model or base_url:
        sources.append("--model/--base-url")
    if environment:
        sources += [name for name in (ENV_MODEL, ENV_BASE_URL) if os.environ.get(name)]
    return sources
