"""Enrollment: exchange a one-time code for a participant id, a token and the study protocol.

The token goes to the keyring, or to a file only the participant can read when they chose that
(``store_in_file``, for machines without a keyring; studyapp.secrets); the protocol (validated again by the
study layer) and the participant id go to the ``studies`` table, which makes the study the current one.
The place for the token is checked *before* the code is sent: a code is one-time, so it must not be spent
when the token could not be kept.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
from sqlite_utils import Database

from studyapp.secrets import (
    TOKEN_FILE_FLAG,
    SecretStoreUnavailable,
    ensure_file_store,
    keyring_status,
    secrets_file,
    set_participant_token,
)
from studyapp.store.studies import StudyStore
from studyapp.sync.server_client import (
    RetryPolicy,
    ServerUnreachable,
    StudyServerClient,
    SyncError,
    connect,
    error_detail,
)

LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}


class EnrollError(SyncError):
    """Enrollment failed; the message says why and whether the code is still usable."""


@dataclass(frozen=True)
class Enrollment:
    study_id: str
    title: str
    participant_id: str
    server_url: str
    token_file: Path | None = None  # where the token is kept when the participant chose a file (else the keyring)


def normalize_server_url(url: str) -> str:
    """The server's base URL; https required except on this machine."""
    url = url.strip().rstrip("/")
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise EnrollError(f"{url!r} is not a server address: give one like https://study.example.org")
    if parsed.scheme == "http" and parsed.hostname not in LOCAL_HOSTS:
        raise EnrollError(f"{url} uses plain http: the study server must use https (http only for localhost).")
    return url


async def enroll(db: Database, url: str, code: str, *, store_in_file: bool = False,
                 server: StudyServerClient | None = None, transport: httpx.AsyncBaseTransport | None = None,
                 policy: RetryPolicy | None = None) -> Enrollment:
    """Enroll this install in the study served at ``url`` with a one-time ``code``.

    ``store_in_file``: the participant chose to keep the token in a private file instead of the keyring.
    ``server`` is an open client for ``url`` (kept open), else one is opened with ``transport`` and ``policy``.
    """
    from studyapp.study.protocol import ProtocolError, protocol_from_dict

    base_url = normalize_server_url(url)
    code = code.strip()
    if not code:
        raise EnrollError("The enrollment code is empty: type the code the research team gave you.")
    if store_in_file:
        try:
            token_file: Path | None = await asyncio.to_thread(ensure_file_store)
        except SecretStoreUnavailable as exc:
            raise EnrollError(f"{exc} Enrollment stopped before using your code, so the code is still valid.") from None
    else:
        # Keyring backends may talk to a desktop service (D-Bus): never on the event loop.
        status = await asyncio.to_thread(keyring_status)
        if not status.available:
            path = await asyncio.to_thread(secrets_file)
            raise EnrollError(
                f"No keyring is available on this computer ({status.backend}), so the participant token cannot be "
                f"kept in it. To keep the token in a file only you can read ({path}), run "
                f"`studyapp enroll {TOKEN_FILE_FLAG} URL CODE` (in the app: tick \"Keep the token in a file\"). "
                "Enrollment stopped before using your code, so the code is still valid.")
        token_file = None
    # The claim makes a retried request (first reply lost) return the same enrollment, not "code used".
    claim = secrets.token_urlsafe(32)
    async with connect(base_url, server=server, transport=transport, policy=policy) as client:
        try:
            response = await client.enroll(code, claim)
        except ServerUnreachable as exc:
            raise EnrollError(f"Cannot reach the study server at {base_url}. Check the address and your "
                              f"connection, then try again with the same code. ({exc})") from exc
    if response.status_code in (403, 422):
        raise EnrollError(f"The server refused the code: {error_detail(response)}")
    if response.status_code != 201:
        raise EnrollError(f"The server could not enroll you (HTTP {response.status_code}): {error_detail(response)}. "
                          "If the code is refused from now on, ask the research team for a new one.")
    try:
        data: dict[str, Any] = response.json()
        participant_id = str(data["participant_id"])
        token = str(data["token"])
        protocol_data = data["protocol_resolved"]
    except (ValueError, KeyError, TypeError):
        raise EnrollError("The server's answer is not a studyapp enrollment; is this the study's address?") from None
    try:
        protocol = protocol_from_dict(protocol_data, source=f"{base_url} (enrollment)")
    except ProtocolError as exc:
        raise EnrollError(f"The server sent a protocol this app cannot use: {exc}") from None
    try:
        await asyncio.to_thread(partial(set_participant_token, protocol.id, token, in_file=store_in_file))
    except SecretStoreUnavailable as exc:
        raise EnrollError(f"{exc} Your code has been used: ask the research team for a new one.") from None
    StudyStore(db).enroll(protocol.id, protocol_data, server_url=base_url, participant_id=participant_id)
    return Enrollment(study_id=protocol.id, title=protocol.title, participant_id=participant_id, server_url=base_url,
                      token_file=token_file)
