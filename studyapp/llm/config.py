"""Model settings: which model answers, and how to reach it.

Resolution order, later wins: embedded defaults, the settings table, environment
(``STUDYAPP_MODEL``, ``STUDYAPP_BASE_URL``), then the ``--model`` / ``--base-url`` flags. Once the participant
saves a choice in the settings screen, that choice wins over the environment and the flags for the rest of the
run (``resolve(..., environment=False)`` with no flags: studyapp.context.AppContext.choose_model_settings).
``model = "local"`` (the default) means the embedded SmolLM2 model; anything else is a model
name on an OpenAI-compatible endpoint.

``via_study`` marks a model the study's researchers provide through their collection server (protocol
``via = "study"``): ``base_url`` is then ``{server}/llm/v1`` and the participant's token for that study is the
key, never an API key. Another base URL (a flag, the environment, the settings screen) drops it, so the token
only ever goes to the study's own server.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from studyapp.llm.base import ChatParams

LOCAL = "local"
# Where the collection server serves the study's models (the OpenAI-compatible gateway), under its base URL.
GATEWAY_PATH = "/llm/v1"
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
    # The study id whose server provides this model (protocol via = "study"); None: a direct endpoint.
    via_study: str | None = None
    # The study role the calls are made for; the study's server counts use by role (X-Studyapp-Role).
    role: str = "assistant"

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
        if self.via_study:
            return f"{self.model} via the study's server"
        return f"{self.model} at {self.base_url}"


def gateway_url(server_url: str) -> str:
    """The OpenAI-compatible base URL of a study server's model gateway."""
    return server_url.rstrip("/") + GATEWAY_PATH


def resolve(stored: dict[str, Any] | None = None, *, model: str | None = None,
            base_url: str | None = None, environment: bool = True) -> ModelSettings:
    settings = ModelSettings.from_dict(stored) if stored else ModelSettings()
    env_model, env_url = (os.environ.get(ENV_MODEL), os.environ.get(ENV_BASE_URL)) if environment else (None, None)
    if env_model:
        settings = replace(settings, model=env_model)
    if env_url:
        settings = replace(settings, base_url=env_url, via_study=None)
    if model:
        settings = replace(settings, model=model)
    if base_url:
        settings = replace(settings, base_url=base_url, via_study=None)
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
