"""The one place secrets are read or written.

API keys and participant tokens live in the OS keyring. Where no keyring backend exists
(headless Linux, containers), an API key may come from ``STUDYAPP_API_KEY`` for that run only;
nothing secret is ever written to the database, config files or logs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import keyring
import keyring.errors
from keyring.backends import fail

SERVICE = "studyapp"
ENV_API_KEY = "STUDYAPP_API_KEY"


class SecretStoreUnavailable(RuntimeError):
    """No usable keyring backend on this machine."""


@dataclass(frozen=True)
class KeyringStatus:
    available: bool
    backend: str
    hint: str


def keyring_status() -> KeyringStatus:
    backend = keyring.get_keyring()
    name = f"{type(backend).__module__}.{type(backend).__name__}"
    if isinstance(backend, fail.Keyring) or getattr(backend, "priority", 1) <= 0:
        return KeyringStatus(
            False,
            name,
            f"No keyring backend is available. Set {ENV_API_KEY} to pass an API key for this run, "
            "or install a keyring backend (e.g. gnome-keyring, or `pip install keyrings.alt`).",
        )
    return KeyringStatus(True, name, "")


def _account(kind: str, name: str) -> str:
    return f"{kind}:{name}"


def get_secret(kind: str, name: str) -> str | None:
    try:
        return keyring.get_password(SERVICE, _account(kind, name))
    except keyring.errors.KeyringError:
        return None


def set_secret(kind: str, name: str, value: str) -> None:
    status = keyring_status()
    if not status.available:
        raise SecretStoreUnavailable(status.hint)
    try:
        keyring.set_password(SERVICE, _account(kind, name), value)
    except keyring.errors.KeyringError as exc:
        raise SecretStoreUnavailable(f"The keyring refused to store the secret: {exc}") from exc


def delete_secret(kind: str, name: str) -> None:
    try:
        keyring.delete_password(SERVICE, _account(kind, name))
    except keyring.errors.KeyringError:
        pass


def get_api_key(profile: str) -> str | None:
    """The API key for a model profile: the keyring first, then STUDYAPP_API_KEY for this run."""
    return get_secret("api_key", profile) or os.environ.get(ENV_API_KEY) or None


def set_api_key(profile: str, value: str) -> None:
    set_secret("api_key", profile, value)


def get_participant_token(study_id: str) -> str | None:
    return get_secret("participant_token", study_id)


def set_participant_token(study_id: str, token: str) -> None:
    set_secret("participant_token", study_id, token)


def delete_participant_token(study_id: str) -> None:
    delete_secret("participant_token", study_id)
