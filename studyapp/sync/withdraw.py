"""Withdrawal: stop syncing, empty the outbox, ask the server to delete everything, retry until confirmed.

The local steps happen first and at once (nothing more can leave the machine): the withdrawal is
recorded in the consent log and the ``studies`` table, the outbox is emptied, and a
"withdrawal pending" marker is kept in settings. The deletion request is then retried until the
server confirms (it is idempotent); if the network is down, the marker makes the next
``studyapp sync`` or ``studyapp withdraw`` send it again.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import httpx
from sqlite_utils import Database

from studyapp.secrets import delete_participant_token
from studyapp.store.collect_queue import CollectQueue
from studyapp.store.outbox import OutboxStore
from studyapp.store.settings import SettingsStore
from studyapp.store.studies import StudyStore
from studyapp.sync import WITHDRAWAL_PENDING_KEY
from studyapp.sync.server_client import NotEnrolled, RetryPolicy, StudyServerClient, SyncError, connect
from studyapp.sync.token import read_participant_token


@dataclass(frozen=True)
class WithdrawalResult:
    study_id: str
    participant_id: str | None
    confirmed_at: str  # the server's time of deletion


def _record_locally(db: Database, study_id: str) -> None:
    try:
        from studyapp.privacy.consent import ConsentService
    except ImportError:
        ConsentService = None  # type: ignore[assignment,misc]
    if ConsentService is not None:
        service = ConsentService(db)
        if not service.withdrawn(study_id):
            service.withdraw(study_id)  # appends the consent record and empties the outbox
    StudyStore(db).withdraw(study_id)  # first: from here on the database notes no new records for the study
    CollectQueue(db).clear()
    OutboxStore(db).clear(study_id)


def begin_withdrawal(db: Database) -> dict[str, Any]:
    """The local part: nothing more leaves the machine. Returns the pending-withdrawal marker."""
    settings = SettingsStore(db)
    pending = settings.get(WITHDRAWAL_PENDING_KEY)
    study = StudyStore(db).current()
    if study is None:
        if pending:
            return pending
        raise NotEnrolled("This install is not enrolled in a study, so there is nothing to withdraw from.")
    marker = {"study_id": study.id, "server_url": study.server_url, "participant_id": study.participant_id}
    # The marker first: if we stop half-way, the next run still knows a deletion request is owed.
    settings.set(WITHDRAWAL_PENDING_KEY, marker)
    _record_locally(db, study.id)
    return marker


async def finish_withdrawal(db: Database, *, server: StudyServerClient | None = None, token: str | None = None,
                            transport: httpx.AsyncBaseTransport | None = None,
                            policy: RetryPolicy | None = None) -> WithdrawalResult:
    """Send the deletion request until the server confirms; then forget the token.

    ``server`` (kept open) or a client opened with ``transport`` and ``policy``; ``token`` if already read.
    """
    settings = SettingsStore(db)
    pending = settings.get(WITHDRAWAL_PENDING_KEY)
    if not pending:
        raise NotEnrolled("No withdrawal is waiting to be sent.")
    study_id, server_url, participant_id = pending["study_id"], pending.get("server_url"), pending.get("participant_id")
    who = f"participant id {participant_id}" if participant_id else "your participant id"
    # The keyring may block (D-Bus, a file to decrypt): not on the event loop.
    token = token or await read_participant_token(study_id)
    if not server_url or not token:
        raise SyncError(f"The withdrawal is recorded here, but the server cannot be told: no "
                        f"{'server address' if not server_url else 'participant token'} is left. "
                        f"Ask the research team to delete {who} of study {study_id!r}.")
    async with connect(server_url, server=server, transport=transport, policy=policy) as client:
        response = await client.withdraw(token)
    if response.status_code != 200:
        raise SyncError(f"The server did not confirm the withdrawal (HTTP {response.status_code}). "
                        f"Ask the research team to delete {who} of study {study_id!r}; "
                        "`studyapp withdraw` will also try again.")
    try:
        data = response.json()
        confirmed = data["status"] == "confirmed"
        confirmed_at = str(data["withdrawn_at"])
    except (ValueError, KeyError, TypeError):
        confirmed, confirmed_at = False, ""
    if not confirmed:
        raise SyncError("The server's answer to the withdrawal could not be read; `studyapp withdraw` will try again.")
    await asyncio.to_thread(delete_participant_token, study_id)
    settings.delete(WITHDRAWAL_PENDING_KEY)
    settings.set("sync.withdrawal_confirmed", {"study_id": study_id, "at": confirmed_at})
    return WithdrawalResult(study_id=study_id, participant_id=participant_id, confirmed_at=confirmed_at)


async def withdraw(db: Database, *, server: StudyServerClient | None = None,
                   transport: httpx.AsyncBaseTransport | None = None,
                   policy: RetryPolicy | None = None) -> WithdrawalResult:
    """Withdraw from the current study (or finish an earlier withdrawal the server has not confirmed)."""
    begin_withdrawal(db)
    return await finish_withdrawal(db, server=server, transport=transport, policy=policy)
