"""Sync in the background of the app: run_sync every few minutes and whenever nudged.

Textual-free, so the TUI runs it in a worker (``self.run_worker(background.run(), exclusive=True)``)
and shows ``status.short()`` in its footer from the ``on_status`` callback; tests drive it directly.
A failed sync is reported, never raised: the events stay in the outbox for the next round.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass

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
)
from studyapp.sync.protocol import refresh_protocol

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
        self.rounds = 0

    def nudge(self) -> None:
        """Sync soon (e.g. after the participant approved items in the review screen)."""
        self._wake.set()

    def stop(self) -> None:
        self._stopped = True
        self._wake.set()

    async def sync_once(self) -> SyncRound:
        report: SyncReport | None = None
        error: str | None = None
        status = sync_status(self.db)
        if status.study_id is not None or status.withdrawal_pending:
            try:
                report = await run_sync(self.db, transport=self.transport, policy=self.policy,
                                        batch_size=self.batch_size)
            except NotEnrolled:
                pass
            except SyncError as exc:
                error = str(exc)
        protocol_changed = False
        if error is None and status.study_id is not None and not status.withdrawal_pending:
            try:
                protocol_changed = await refresh_protocol(self.db, transport=self.transport) is not None
            except SyncError as exc:
                error = str(exc)
        self.rounds += 1
        result = SyncRound(sync_status(self.db), report, error, protocol_changed)
        if self.on_status is not None:
            self.on_status(result)
        return result

    async def run(self) -> None:
        """Sync now, then every ``interval`` seconds or when nudged, until stopped or cancelled."""
        while not self._stopped:
            self._wake.clear()
            await self.sync_once()
            if self._stopped:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.interval)
