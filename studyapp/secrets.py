"""The one place secrets are read or written.

API keys and participant tokens live in the OS keyring. Where no keyring backend exists (headless Linux, WSL,
containers), the participant may choose, explicitly, to keep them in a file only they can read
(``studyapp enroll --store-token-in-file``, or the choice in the app's enrollment and settings dialogs), as
``gh auth login --insecure-storage`` does. The file is never a silent fallback: a secret goes there only when
asked. It lives in the user config dir (studyapp.paths.config_dir, outside the data dir so an export or a copy of
the data dir never carries it), 0600 in a 0700 dir, and is refused on read when other users could read it.
Every reader gets a secret from wherever it is kept through the same ``get_*`` functions. An API key may also come
from ``STUDYAPP_API_KEY`` for one run. Nothing secret is ever written to the database or logs.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import keyring
import keyring.errors
from keyring.backends import fail

from studyapp import paths
from studyapp.private_files import PRIVATE_DIR_MODE, SHARED_BITS, supported

SERVICE = "studyapp"
ENV_API_KEY = "STUDYAPP_API_KEY"
SECRETS_FILE_NAME = "secrets.json"

TOKEN_FILE_FLAG = "--store-token-in-file"


class SecretStoreUnavailable(RuntimeError):
    """No usable place to keep or read the secret (no keyring backend, or a secrets file that cannot be used)."""


class SecretFileExposed(SecretStoreUnavailable):
    """The secrets file can be read by other users of this computer: it is not used until that is fixed."""


@dataclass(frozen=True)
class KeyringStatus:
    available: bool
    backend: str
    hint: str


Where = Literal["keyring", "file", "environment", "nowhere"]


@dataclass(frozen=True)
class SecretLocation:
    where: Where
    path: Path | None = None  # the secrets file, when ``where`` is "file"
    problem: str = ""  # why the secret cannot be used where it is (e.g. a file others can read)


def keyring_status() -> KeyringStatus:
    backend = keyring.get_keyring()
    name = f"{type(backend).__module__}.{type(backend).__name__}"
    if isinstance(backend, fail.Keyring) or getattr(backend, "priority", 1) <= 0:
        return KeyringStatus(
            False,
            name,
            f"No keyring backend is available on this computer. To keep the participant token in a file only you "
            f"can read, enroll with `studyapp enroll {TOKEN_FILE_FLAG} URL CODE` (in the app: tick \"Keep the "
            f"token in a file\"). For an API key, tick \"Keep the API key in a file\" in the settings, or set "
            f"{ENV_API_KEY} for one run. Setting up the desktop's keyring (e.g. gnome-keyring) also works.",
        )
    return KeyringStatus(True, name, "")


def secrets_file() -> Path:
    """Where secrets kept in a file live (whether or not any are)."""
    return paths.config_dir() / SECRETS_FILE_NAME


def _account(kind: str, name: str) -> str:
    return f"{kind}:{name}"


# The secrets file -----------------------------------------------------------------------------------


def _exposed_message(path: Path, mode: int) -> str:
    return (f"{path} holds your studyapp secrets, but other users of this computer can read it (mode {mode:04o}). "
            f"It is not used until only you can read it: run `chmod 600 {path}`. If others may have read it, "
            "tell the research team (they can issue a new code).")


def _read_file() -> tuple[dict[str, str], str]:
    """The secrets kept in the file ({} when there is none), and a problem that forbids using them ('' if none).

    The mode is read from the open descriptor, so the check and the read concern the same file.
    """
    path = secrets_file()
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return {}, ""
    except OSError as exc:
        raise SecretStoreUnavailable(f"The secrets file {path} cannot be read ({exc.strerror}).") from None
    with os.fdopen(fd, encoding="utf-8") as f:
        mode = stat.S_IMODE(os.fstat(f.fileno()).st_mode)
        text = f.read()
    try:
        data = json.loads(text)
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            raise ValueError("not an object of strings")
    except ValueError:
        raise SecretStoreUnavailable(f"The secrets file {path} is damaged (not studyapp's JSON). Delete it, then "
                                     f"enroll again with `studyapp enroll {TOKEN_FILE_FLAG}` and a new code, and "
                                     "enter the API key again in the settings.") from None
    problem = _exposed_message(path, mode) if supported() and mode & SHARED_BITS else ""
    return data, problem


def ensure_file_store() -> Path:
    """Create the private config dir (0700; tightened if it is looser) and return the secrets file's path.

    Called before an enrollment code is spent, so a dir that cannot be written, or a secrets file that cannot be
    read, stops enrollment early.
    """
    path = secrets_file()
    try:
        path.parent.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
        if supported() and stat.S_IMODE(path.parent.stat().st_mode) & SHARED_BITS:
            os.chmod(path.parent, PRIVATE_DIR_MODE)
        if not os.access(path.parent, os.W_OK):
            raise PermissionError(f"{path.parent} is not writable")
    except OSError as exc:
        raise SecretStoreUnavailable(f"Cannot create the private folder {path.parent} for the secrets file "
                                     f"({exc}). Set {paths.ENV_CONFIG_DIR} to a folder you can write.") from None
    _read_file()  # a damaged file says so now, not after the code is spent
    return path


def _write_file(data: dict[str, str]) -> None:
    """Replace the secrets file atomically by a new one created 0600 (never written loose and narrowed later)."""
    path = ensure_file_store()
    if not data:
        path.unlink(missing_ok=True)
        return
    # mkstemp: a new name each time (a file left by a killed process never blocks the write), created 0600.
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _remove_from_file(account: str) -> None:
    """Forget one secret in the file; the file goes when it holds nothing more (its mode does not matter here)."""
    if not secrets_file().exists():
        return
    data, _ = _read_file()
    if account in data:
        del data[account]
        _write_file(data)


# Any secret --------------------------------------------------------------------------------------


def _from_keyring(account: str) -> str | None:
    try:
        return keyring.get_password(SERVICE, account)
    except keyring.errors.KeyringError:
        return None


def get_secret(kind: str, name: str) -> str | None:
    """The secret from wherever the participant chose to keep it: the file (if they chose it), else the keyring.

    Raises SecretFileExposed when it is in a file others can read, SecretStoreUnavailable when the file is damaged.
    """
    account = _account(kind, name)
    try:
        data, problem = _read_file()
    except SecretStoreUnavailable:
        # A damaged file cannot hide a secret the keyring holds; without one, the damage is the answer.
        found = _from_keyring(account)
        if found is not None:
            return found
        raise
    if account in data:
        if problem:
            raise SecretFileExposed(problem)
        return data[account]
    return _from_keyring(account)


def set_secret(kind: str, name: str, value: str, *, in_file: bool = False) -> None:
    """Keep a secret in the keyring, or in the secrets file when ``in_file`` (the participant's explicit choice).

    Only one place holds a secret: storing it in one removes it from the other.
    """
    account = _account(kind, name)
    if in_file:
        data, _ = _read_file()
        data[account] = value
        _write_file(data)
        try:
            keyring.delete_password(SERVICE, account)
        except keyring.errors.KeyringError:
            pass
        return
    status = keyring_status()
    if not status.available:
        raise SecretStoreUnavailable(status.hint)
    try:
        keyring.set_password(SERVICE, account, value)
    except keyring.errors.KeyringError as exc:
        raise SecretStoreUnavailable(f"The keyring refused to store the secret: {exc}") from exc
    try:
        _remove_from_file(account)
    except SecretStoreUnavailable:
        pass  # a damaged file: the keyring holds the secret now and is asked when the file cannot be read


def delete_secret(kind: str, name: str) -> None:
    """Forget a secret wherever it is kept (the file is removed once it holds nothing more)."""
    account = _account(kind, name)
    try:
        keyring.delete_password(SERVICE, account)
    except keyring.errors.KeyringError:
        pass
    _remove_from_file(account)


def secret_location(kind: str, name: str) -> SecretLocation:
    """Where a secret is kept, for ``studyapp doctor`` (the secret itself is never returned)."""
    account = _account(kind, name)
    try:
        data, problem = _read_file()
    except SecretStoreUnavailable as exc:
        return SecretLocation("file", secrets_file(), str(exc))
    if account in data:
        return SecretLocation("file", secrets_file(), problem)
    if _from_keyring(account) is not None:
        return SecretLocation("keyring")
    return SecretLocation("nowhere")


# API keys and participant tokens -------------------------------------------------------------------


def get_api_key(profile: str) -> str | None:
    """The API key for a model profile: where it is kept (file or keyring), then STUDYAPP_API_KEY for this run."""
    return get_secret("api_key", profile) or os.environ.get(ENV_API_KEY) or None


def set_api_key(profile: str, value: str, *, in_file: bool = False) -> None:
    set_secret("api_key", profile, value, in_file=in_file)


def api_key_location(profile: str) -> SecretLocation:
    location = secret_location("api_key", profile)
    if location.where == "nowhere" and os.environ.get(ENV_API_KEY):
        return SecretLocation("environment")
    return location


def get_participant_token(study_id: str) -> str | None:
    return get_secret("participant_token", study_id)


def set_participant_token(study_id: str, token: str, *, in_file: bool = False) -> None:
    set_secret("participant_token", study_id, token, in_file=in_file)


def delete_participant_token(study_id: str) -> None:
    delete_secret("participant_token", study_id)


def participant_token_location(study_id: str) -> SecretLocation:
    return secret_location("participant_token", study_id)
