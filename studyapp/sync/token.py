"""Reading the participant token for a request: from wherever it is kept (studyapp.secrets), off the event loop.

A token that cannot be used (a secrets file other users can read, a damaged file) becomes a SyncError whose
message says what to do, so every sync path reports it like any other sync problem, never as a traceback.
"""

from __future__ import annotations

import asyncio

from studyapp.secrets import SecretStoreUnavailable, get_participant_token
from studyapp.sync.server_client import SyncError


class TokenUnusable(SyncError):
    """The participant token is stored but must not be used as it is (the message says why and what to do)."""


async def read_participant_token(study_id: str) -> str | None:
    # The keyring may be a D-Bus round trip or a file to decrypt: not on the event loop.
    try:
        return await asyncio.to_thread(get_participant_token, study_id)
    except SecretStoreUnavailable as exc:
        raise TokenUnusable(str(exc)) from None
