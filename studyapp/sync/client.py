"""Uploading the outbox to the collection server, exactly once whatever the network does.

The state lives in the outbox (studyapp.store.outbox), so a crash or restart resumes where it
stopped: an event leaves the outbox only once the server answered *accepted* or *duplicate* for
its ``event_id``; a *rejected* one is set aside with the server's reason (shown by ``studyapp
doctor`` and the TUI) and never retried blindly. Timeouts, dropped connections, 429 (honouring
Retry-After) and 5xx are retried with exponential backoff and full jitter; since the server stores
each ``event_id`` once, a retry after a lost reply only produces *duplicate* answers.

``run_sync(db)`` is the entry point for ``studyapp sync`` and the TUI's background worker;
``sync_status(db)`` (sync/status.py, re-exported here) feeds the TUI footer and ``studyapp doctor``. The
requests (and their retries) go through ``StudyServerClient`` (server_client.py); what the answers mean for
the outbox is decided here, in ``Uploader``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlite_utils import Database

from studyapp.privacy.anonymize import Anonymizer
from studyapp.privacy.collect import apply_terms
from studyapp.store.outbox import OutboxEvent, OutboxStore
from studyapp.store.settings import SettingsStore
from studyapp.store.util import now
from studyapp.sync.server_client import (
    NotEnrolled,
    ParticipantWithdrawn,
    RetryPolicy,
    ServerUnreachable,
    StudyServerClient,
    SyncError,
    TokenRefused,
    connect,
    error_detail,
)
from studyapp.sync.status import (
    DETAIL_INDENT,
    LAST_ERROR_KEY,
    LAST_SYNC_KEY,
    SyncStatus,
    SyncTarget,
    sync_status,
    sync_target,
)
from studyapp.sync.token import read_participant_token
from studyapp.sync.withdraw import WITHDRAWAL_PENDING_KEY, finish_withdrawal

# The errors and the policy are re-exported: the TUI, the commands and tests import them from here.
__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DETAIL_INDENT",
    "LAST_ERROR_KEY",
    "LAST_SYNC_KEY",
    "WITHDRAWAL_PENDING_KEY",
    "NotEnrolled",
    "ParticipantWithdrawn",
    "RetryPolicy",
    "ServerUnreachable",
    "SyncError",
    "SyncReport",
    "SyncStatus",
    "SyncTarget",
    "TokenRefused",
    "Uploader",
    "run_sync",
    "sync_status",
    "sync_target",
]


DEFAULT_BATCH_SIZE = 200

Progress = Callable[[int, int], None]


@dataclass
class SyncReport:
    total: int = 0  # events ready when the sync started
    accepted: int = 0
    duplicate: int = 0
    rejected: int = 0
    batches: int = 0
    retries: int = 0
    rejections: list[tuple[str, str]] = field(default_factory=list)  # (event_id, reason)

    @property
    def delivered(self) -> int:
        return self.accepted + self.duplicate

    def __str__(self) -> str:
        text = f"{self.delivered} events delivered ({self.accepted} new, {self.duplicate} already there)"
        if self.rejected:
            text += f", {self.rejected} rejected by the server (see `studyapp doctor`)"
        return text


class Uploader:
    """Uploads the ready events of one study's outbox, batch by batch, through ``server``."""

    def __init__(self, outbox: OutboxStore, server: StudyServerClient, token: str, study_id: str, *,
                 batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        self.outbox = outbox
        # Each claim applies the participant's current terms to what it claims. A term stored a moment ago has
        # its re-scrub still walking the outbox, and that re-scrub leaves claimed events alone: without this,
        # an event claimed before the re-scrub reached it would leave with the term in it. A term added after
        # the claim finds the event in flight (``ReviewService.in_flight``).
        anonymizer = Anonymizer(outbox.db)
        self.scrub: Callable[[OutboxEvent], dict[str, Any]] = (
            lambda event: apply_terms(anonymizer, event.kind, event.payload))
        self.server = server
        self.token = token
        self.study_id = study_id
        self.batch_size = max(1, batch_size)

    async def sync(self, progress: Progress | None = None) -> SyncReport:
        """Upload until nothing is ready; raises SyncError (events stay in the outbox) if it cannot."""
        report = SyncReport(total=self.outbox.counts(self.study_id)["approved"])
        done = 0
        # Consent records first: every approved event is covered by the participant's latest consent
        # (the privacy layer withholds events of categories given up), and the server checks each
        # event against the consent it has received, so it must hear the latest decision first,
        # even when older events were released again after the consent changed.
        while True:
            claim_id, consents = self.outbox.claim_ready(self.study_id, self.batch_size, kind="consent",
                                                           scrub=self.scrub)
            if not consents:
                break
            done += await self._send_claimed(claim_id, consents, report)
        while True:
            claim_id, batch = self.outbox.claim_ready(self.study_id, self.batch_size, scrub=self.scrub)
            if not batch:
                break
            handled = await self._send_claimed(claim_id, batch, report)
            if handled == 0:
                raise SyncError("The server's answer did not mention the events sent; "
                                "they stay in the outbox. Try again later.")
            done += handled
            if progress is not None:
                progress(done, max(report.total, done))
        return report

    async def _send_claimed(self, claim_id: str, batch: list[OutboxEvent], report: SyncReport) -> int:
        """Send claimed events; the claim ends with the server's answer (or the failure), whatever it is."""
        try:
            return await self._send(batch, report, claim_id=claim_id)
        finally:
            self.outbox.release(claim_id)

    async def _send(self, batch: list[OutboxEvent], report: SyncReport, *, claim_id: str) -> int:
        """Send one batch; returns how many of its events were settled (removed or set aside)."""
        self.outbox.note_attempt([e.event_id for e in batch])
        events = [{"event_id": e.event_id, "kind": e.kind, "payload": e.payload} for e in batch]

        def count_retry(problem: str) -> None:
            report.retries += 1
            self.outbox.renew_claim(claim_id)

        response = await self.server.upload(self.token, events, on_retry=count_retry)
        report.batches += 1
        status = response.status_code
        if status == 401:
            raise TokenRefused("The server no longer accepts this participant token: re-enroll "
                               "(studyapp enroll URL CODE with a new code from the research team).")
        if status == 410:
            raise ParticipantWithdrawn("The server says this participant has withdrawn; nothing more is sent.")
        if status in (413, 422):
            if len(batch) > 1:
                # Too large, or one malformed event: halve the batch until the culprit stands alone.
                half = len(batch) // 2
                return (await self._send(batch[:half], report, claim_id=claim_id)
                        + await self._send(batch[half:], report, claim_id=claim_id))
            reason = f"the server refused this event (HTTP {status}): {error_detail(response)}"
            self.outbox.reject(batch[0].event_id, reason)
            report.rejected += 1
            report.rejections.append((batch[0].event_id, reason))
            return 1
        if status != 200:
            raise SyncError(f"The server refused the upload (HTTP {status}): {error_detail(response)}")
        try:
            results = response.json()["results"]
            answers = {r["event_id"]: (r["status"], r.get("reason")) for r in results}
        except (ValueError, KeyError, TypeError):
            raise SyncError("The server's answer could not be read; the events stay in the outbox. "
                            "Try again later.") from None
        settled: list[str] = []
        for event in batch:
            answer = answers.get(event.event_id)
            if answer is None:
                continue
            verdict, reason = answer
            if verdict == "accepted":
                report.accepted += 1
                settled.append(event.event_id)
            elif verdict == "duplicate":
                report.duplicate += 1
                settled.append(event.event_id)
            elif verdict == "rejected":
                reason = str(reason or "rejected by the server")
                self.outbox.reject(event.event_id, reason)
                report.rejected += 1
                report.rejections.append((event.event_id, reason))
        self.outbox.remove(settled)
        return len(settled) + sum(1 for e in batch if answers.get(e.event_id, ("",))[0] == "rejected")


# -- the app's entry points ----------------------------------------------------------------------


async def run_sync(db: Database, *, server: StudyServerClient | None = None, token: str | None = None,
                   transport: httpx.AsyncBaseTransport | None = None, policy: RetryPolicy | None = None,
                   progress: Progress | None = None, batch_size: int = DEFAULT_BATCH_SIZE) -> SyncReport:
    """Sync the enrolled study's outbox (or finish a pending withdrawal); records the outcome in settings.

    ``server`` is an open client for the study's server (kept open), else one is opened with ``transport``
    and ``policy`` for this call. ``token`` is the participant token of ``sync_target(db)`` when the caller
    has read it already; otherwise it is read here, off the event loop.
    """
    settings = SettingsStore(db)
    try:
        target = sync_target(db)
        if target is not None and target.withdrawal:
            await finish_withdrawal(db, server=server, token=token, transport=transport, policy=policy)
            return SyncReport()
        if target is None or not target.server_url:
            raise NotEnrolled("This install is not enrolled in a study with a collection server: "
                              "run `studyapp enroll URL CODE` with the code from the research team.")
        # The keyring may be a D-Bus round trip or a file to decrypt: not on the event loop.
        token = token or await read_participant_token(target.study_id)
        if not token:
            raise TokenRefused(f"No participant token for study {target.study_id!r} on this computer "
                               "(neither in the keyring nor in a secrets file): "
                               "enroll again with a new code (`studyapp enroll URL CODE`).")
        async with connect(target.server_url, server=server, transport=transport, policy=policy) as client:
            uploader = Uploader(OutboxStore(db), client, token, target.study_id, batch_size=batch_size)
            report = await uploader.sync(progress)
    except SyncError as exc:
        settings.set(LAST_ERROR_KEY, {"at": now(), "message": str(exc)})
        raise
    settings.set(LAST_SYNC_KEY, now())
    settings.delete(LAST_ERROR_KEY)
    return report
