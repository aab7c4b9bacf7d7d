"""Model settings: which model answers, and how to reach it.

Resolution order, later wins: embedded defaults, the settings table, environment
(``STUDYAPP_MODEL``, ``STUDYAPP_BASE_URL``), then the ``--model`` flag. ``model = "local"`` (the default)
means the embedded SmolLM2 model; anything else is a model name on an OpenAI-compatible endpoint.

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
        return replace(self, model=model, base_url=base_url, params=params)

    def describe(self) -> str:
        if self.is_local:
            return "embedded SmolLM2-135M-Instruct (offline)"
        return f"{self.model} at {self.base_url}"


def resolve(stored: dict[str, Any] | None = None, *, model: str | None = None,
            base_url: str | None = None) -> ModelSettings:
    data = dict(stored or {})
    # The model is settled first: the default parameters depend on its kind.
    for key, value in (("model", os.environ.get(ENV_MODEL)), ("base_url", os.environ.get(ENV_BASE_URL)),
                       ("model", model), ("base_url", base_url)):
        if value:
            data[key] = value
    return ModelSettings.from_dict(data)
