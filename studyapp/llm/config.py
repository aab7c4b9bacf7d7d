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

Sampling parameters start from the defaults of the model's kind (``default_params``): the embedded model has its
own, measured in bench/bench_local_defaults.py (issue 17), an endpoint keeps ``ChatParams``' generic ones. The
parameters in the settings table (the participant's own, saved from the Settings screen) are laid over them.
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

# The embedded model's defaults, chosen on bench/bench_local_defaults.py's tuning prompts (bench/README.md, "The
# embedded model's first answers"): with ChatParams' generic 0.7 / 512 tokens and no instruction, SmolLM2-135M
# answered English questions in other languages and repeated itself until the token limit.
LOCAL_PARAMS = ChatParams(temperature=0.3, max_tokens=256, extra={"min_p": 0.1, "repeat_penalty": 1.1})
LOCAL_SYSTEM_PROMPT = "You are a helpful assistant. Answer in the language of the user's message, briefly."


def default_params(model: str) -> ChatParams:
    """The sampling parameters a model of this kind starts from (the embedded model's own, or the generic ones)."""
    return LOCAL_PARAMS if model == LOCAL else ChatParams()


@dataclass(frozen=True)
class ModelSettings:
    model: str = LOCAL
    base_url: str | None = None
    # Which keyring entry holds the API key for this endpoint (see studyapp.secrets.get_api_key).
    key_profile: str = "default"
    # Built by from_dict/resolve with the kind's defaults; constructed directly, the generic ones.
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
        base = default_params(known.get("model", LOCAL))
        own = {k: v for k, v in (data.get("params") or {}).items() if k in ChatParams.__dataclass_fields__}
        # The participant's own parameters win; extra parameters (min_p, ...) merge key by key.
        own["extra"] = {**base.extra, **(own.get("extra") or {})}
        return cls(**known, params=replace(base, **own))

    def with_model(self, model: str, base_url: str | None) -> ModelSettings:
        """These settings for another model. Moving between the embedded model and an endpoint starts from the new
        kind's default parameters: the embedded model's (min_p, repeat_penalty, ...) are for that model only."""
        params = self.params if (model == LOCAL) == self.is_local else default_params(model)
        # The participant's token goes only to the study's own server: another address is a direct endpoint.
        via_study = self.via_study if base_url == self.base_url else None
        return replace(self, model=model, base_url=base_url, params=params, via_study=via_study)

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
    data = dict(stored or {})
    env_model, env_url = (os.environ.get(ENV_MODEL), os.environ.get(ENV_BASE_URL)) if environment else (None, None)
    # The model is settled first: the default parameters depend on its kind.
    for key, value in (("model", env_model), ("base_url", env_url), ("model", model), ("base_url", base_url)):
        if value:
            data[key] = value
            if key == "base_url":
                data["via_study"] = None  # the participant's token goes only to the study's own server
    return ModelSettings.from_dict(data)


def overriding_sources(*, model: str | None = None, base_url: str | None = None,
                       environment: bool = True) -> list[str]:
    """Where a model or URL comes from that wins over the saved settings: the flags, the environment."""
    sources = []
    if model or base_url:
        sources.append("--model/--base-url")
    if environment:
        sources += [name for name in (ENV_MODEL, ENV_BASE_URL) if os.environ.get(name)]
    return sources
