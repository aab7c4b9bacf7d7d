"""Sync in the background of the app: run_sync every few minutes and whenever nudged.

Textual-free, so the TUI runs it in a worker (``self.run_worker(background.run(), exclusive=True)``)
and shows ``status.short()`` in its footer from the ``on_status`` callback; tests drive it directly.
A failed sync is reported, never raised: the events stay in the outbox for the next round.

One ``StudyServerClient`` serves every round (its connections are reused), and is closed when ``run``
ends, whether stopped or cancelled. The participant token is read once per round, in a thread: a
keyring read may block (D-Bus, a file to decrypt), and the event loop draws the app.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

import httpx
from sqlite_utils import Database

from studyapp.sync.client import (
    DEFAULT_BATCH_SIZE,
    NotEnrolled,
    RetryPolicy,
    SyncError,
    SyncReport,
    SyncStatus,
    run_sync,
    sync_status,
    sync_target,
)
from studyapp.sync.protocol import refresh_protocol
from studyapp.sync.server_client import StudyServerClient
from studyapp.sync.token import read_participant_token

DEFAULT_INTERVAL = 300.0


@dataclass(frozen=True)
class SyncRound:
    status: SyncStatus
    report: SyncReport | None  # None when the round failed or there was nothing to do
    error: str | None
    # The server published a new protocol version this round (stored; the app asks for consent again).
    protocol_changed: bool = False


class BackgroundSync:
    def __init__(self, db: Database, *, on_status: Callable[[SyncRound], None] | None = None,
                 interval: float = DEFAULT_INTERVAL, transport: httpx.AsyncBaseTransport | None = None,
                 policy: RetryPolicy | None = None, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        self.db = db
        self.on_status = on_status
        self.interval = interval
        self.transport = transport
        self.policy = policy
        self.batch_size = batch_size
        self._wake = asyncio.Event()
        self._stopped = False
        self._server: StudyServerClient | None = None
        self.rounds = 0

    @property
    def server(self) -> StudyServerClient | None:
        """The client of the study's server, once a round has needed it (None again once closed)."""
        return self._server

    def nudge(self) -> None:
        """Sync soon (e.g. after the participant approved items in the review screen)."""
        self._wake.set()

    def stop(self) -> None:
        self._stopped = True
        self._wake.set()

    async def aclose(self) -> None:
        """Close the server client (``run`` does this when it ends; call it after driving ``sync_once``)."""
        server, self._server = self._server, None
        if server is not None:
            await server.aclose()

    async def __aenter__(self) -> BackgroundSync:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    async def _server_for(self, base_url: str) -> StudyServerClient:
        # The study's server only changes if the participant re-enrolled elsewhere during this worker's life
        # (the app starts a new worker then); a client is bound to one server, so replace it.
        if self._server is not None and not self._server.serves(base_url):
            await self.aclose()
        if self._server is None:
            self._server = StudyServerClient(base_url, transport=self.transport, policy=self.policy)
        return self._server

    async def sync_once(self) -> SyncRound:
        report: SyncReport | None = None
        error: str | None = None
        status = sync_status(self.db)
        target = sync_target(self.db)
        server: StudyServerClient | None = None
        token: str | None = None
        if target is not None and target.server_url:
            server = await self._server_for(target.server_url)
            try:
                token = await read_participant_token(target.study_id)
            except SyncError as exc:  # e.g. a secrets file others can read: said in the status, asked again next round
                error = str(exc)
        if error is None and (status.study_id is not None or status.withdrawal_pending):
            try:
                report = await run_sync(self.db, server=server, token=token, batch_size=self.batch_size)
            except NotEnrolled:
                pass
            except SyncError as exc:
                error = str(exc)
        protocol_changed = False
        if error is None and status.study_id is not None and not status.withdrawal_pending:
            try:
                protocol_changed = await refresh_protocol(self.db, server=server, token=token) is not None
            except SyncError as exc:
                error = str(exc)
        self.rounds += 1
        result = SyncRound(sync_status(self.db), report, error, protocol_changed)
        if self.on_status is not None:
            self.on_status(result)
        return result

    async def run(self) -> None:
        """Sync now, then every ``interval`` seconds or when nudged, until stopped or cancelled."""
        try:
            while not self._stopped:
                self._wake.clear()
                await self.sync_once()
                if self._stopped:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self.interval)
        finally:
            await self.aclose()
