"""How each of the study's roles reaches its model: directly, or through the study's server (``via = "study"``).

The protocol names a model per role (``studyapp.study.protocol``); this turns it into the ``ModelSettings`` the one
model factory builds from (``studyapp.llm.factory.make_model``). A model the researchers provide goes through the
collection server's gateway, ``{server}/llm/v1``, where the server is the one the participant enrolled with (that
is where their token is valid), else the protocol's ``server_url``.
"""

from __future__ import annotations

from dataclasses import replace

from studyapp.llm.config import ModelSettings, gateway_url
from studyapp.study.current import CurrentStudy
from studyapp.study.protocol import ModelSpec

# Which enrolled protocol's assistant the chat last took on (settings table): an assistant the study's server
# provides is taken on once, also when the study was joined elsewhere (`studyapp enroll`).
ADOPTED_KEY = "models.study_assistant"


def study_server(study: CurrentStudy) -> str | None:
    """The study's server: the enrolled one wins over the protocol's, since the token is valid there."""
    enrolled = study.record.server_url if study.record is not None else None
    return enrolled or study.protocol.server_url


def header_role(role: str) -> str:
    """The role as the study's server counts it: every judge ("judge", "judge.2", ...) is "judge"."""
    return role.partition(".")[0]


def role_settings(study: CurrentStudy, role: str, spec: ModelSpec,
                  base: ModelSettings | None = None) -> ModelSettings:
    """The settings for ``role``'s model ``spec``; sampling and timeouts come from ``base`` (default: defaults).

    A direct model without a base_url runs where ``base`` (the participant's chat model) runs, the same way as
    before routes existed.
    """
    base = base or ModelSettings()
    # with_model: a move between the embedded model and an endpoint starts from the new kind's sampling defaults.
    if spec.via_study:
        server = study_server(study)
        # No server known: the settings say so with base_url None, and the model says what to do when asked.
        return replace(base.with_model(spec.model, gateway_url(server) if server else None),
                       via_study=study.protocol.id, role=header_role(role))
    if spec.base_url:
        return replace(base.with_model(spec.model, spec.base_url), via_study=None, role=header_role(role))
    return replace(base.with_model(spec.model, base.base_url), role=header_role(role))


def adopted_marker(study: CurrentStudy) -> str:
    """Which protocol's assistant the chat took on, as kept in the settings table ("<study id>@<version>")."""
    return f"{study.protocol.id}@{study.protocol.version}"


def study_assistant(study: CurrentStudy, current: ModelSettings, adopted: str | None, *,
                    only_via_study: bool) -> ModelSettings | None:
    """The chat settings that take on the enrolled study's assistant, or None to keep ``current``.

    Joining a study (or a new protocol version) switches the chat to the study's assistant. ``only_via_study``
    (at start, after `studyapp enroll` on the command line): only an assistant the study's server provides, and
    only if this protocol's (``adopted``) was not taken on before, so a model the participant chose afterwards in
    Settings stays theirs.
    """
    assistant = study.protocol.models.get("assistant") if study.enrolled and study.usable else None
    if assistant is None:
        return None
    if only_via_study and (not assistant.via_study or adopted == adopted_marker(study)):
        return None
    if assistant.via_study:
        return role_settings(study, "assistant", assistant, current)
    return replace(current.with_model(assistant.model, assistant.base_url), via_study=None)


def study_routes(study: CurrentStudy) -> list[str]:
    """One line per role of the enrolled study, e.g. "assistant: gpt-4o-mini via the study's server"."""
    if not study.enrolled or not study.usable:
        return []
    return [f"{role}: {_where(study, spec)}" for role, spec in study.protocol.models.items()]


def _where(study: CurrentStudy, spec: ModelSpec) -> str:
    if spec.via_study:
        server = study_server(study)
        return f"{spec.model} via the study's server" + (f" ({server})" if server else " (no server known)")
    if spec.is_local:
        return "the embedded model on this computer"
    return f"{spec.model} at {spec.base_url}" if spec.base_url else f"{spec.model} at your chat model's endpoint"


def uses_study_server(study: CurrentStudy) -> bool:
    """Whether any role of the enrolled study goes through the study's server."""
    return study.enrolled and study.usable and any(s.via_study for s in study.protocol.models.values())
