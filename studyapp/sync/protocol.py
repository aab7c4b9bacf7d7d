"""New protocol versions: the app asks the server for the study's current protocol at every sync.

A new version is stored in place of the old one (enrollment time and participant id stay). If it brings a new
consent document, the privacy layer queues nothing more until the participant has read and agreed to it, and
the app asks them at once.
"""

from __future__ import annotations

import httpx
from sqlite_utils import Database

from studyapp.store.studies import StudyStore
from studyapp.study.protocol import Protocol, ProtocolError, protocol_from_dict
from studyapp.sync.server_client import (
    RetryPolicy,
    ServerUnreachable,
    StudyServerClient,
    SyncError,
    TokenRefused,
    connect,
)
from studyapp.sync.token import read_participant_token


def _usable(stored: dict) -> bool:
    try:
        protocol_from_dict(stored, source="the stored protocol")
    except (ProtocolError, ValueError, KeyError, TypeError):
        return False
    return True


async def refresh_protocol(db: Database, *, server: StudyServerClient | None = None, token: str | None = None,
                           transport: httpx.AsyncBaseTransport | None = None,
                           policy: RetryPolicy | None = None) -> Protocol | None:
    """Store the server's protocol if its version differs from ours (or ours no longer validates); returns it,
    or None when unchanged.

    ``server`` (kept open) or a client opened with ``transport`` and ``policy``; ``token`` if already read.
    """
    study = StudyStore(db).current()
    if study is None or not study.server_url:
        return None
    # The keyring may block (D-Bus, a file to decrypt): not on the event loop.
    token = token or await read_participant_token(study.id)
    if not token:
        return None
    try:
        async with connect(study.server_url, server=server, transport=transport, policy=policy) as client:
            response = await client.protocol(token)
    except ServerUnreachable as exc:
        if exc.status is not None:  # the server answered, but only 429 or 5xx
            raise SyncError(f"The server answered {exc.status} when asked for the study's protocol; "
                            "it is asked again at the next sync.") from exc
        raise ServerUnreachable(f"Could not ask {study.server_url} for the study's protocol ({exc.problem}); "
                                "it is asked again at the next sync.", problem=exc.problem) from exc
    if response.status_code == 401:
        raise TokenRefused("The server no longer accepts this participant token: re-enroll with a new code.")
    if response.status_code != 200:
        raise SyncError(f"The server answered {response.status_code} when asked for the study's protocol; "
                        "it is asked again at the next sync.")
    try:
        data = response.json()
        current_version = str(study.protocol.get("study", {}).get("version"))
        if str(data["version"]) == current_version and _usable(study.protocol):
            return None
        protocol = protocol_from_dict(data["protocol_resolved"], source=f"{study.server_url}/v1/protocol")
    except (ValueError, KeyError, TypeError, ProtocolError) as exc:
        # Keep the protocol we have rather than replace it with one we cannot read.
        raise SyncError(f"The server sent a protocol this app cannot use ({exc}); keeping the current one.") from exc
    if protocol.id != study.id:
        raise SyncError(f"The server sent the protocol of study {protocol.id!r}, not {study.id!r}; keeping ours.")
    StudyStore(db).update_protocol(study.id, protocol.to_dict())
    return protocol
