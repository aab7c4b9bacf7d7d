"""Uploading the outbox to the collection server, exactly once whatever the network does.

The state lives in the outbox (studyapp.store.outbox), so a crash or restart resumes where it
stopped: an event leaves the outbox only once the server answered *accepted* or *duplicate* for
its ``event_id``; a *rejected* one is set aside with the server's reason (shown by ``studyapp
doctor`` and the TUI) and never retried blindly. Timeouts, dropped connections, 429 (honouring
Retry-After) and 5xx are retried with exponential backoff and full jitter; since the server stores
each ``event_id`` once, a retry after a lost reply only produces *duplicate* answers.

``run_sync(db)`` is the entry point for ``studyapp sync`` and the TUI's background worker;
``sync_status(db)`` feeds the TUI footer and ``studyapp doctor``.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlite_utils import Database

from studyapp import __version__
from studyapp.store.outbox import OutboxEvent, OutboxStore
from studyapp.store.settings import SettingsStore
from studyapp.store.util import now

LAST_SYNC_KEY = "sync.last_sync_at"
LAST_ERROR_KEY = "sync.last_error"
# Set while a withdrawal waits for the server's confirmation: {"study_id", "server_url", "participant_id"}.
WITHDRAWAL_PENDING_KEY = "sync.withdrawal_pending"

DEFAULT_BATCH_SIZE = 200
MAX_RETRY_AFTER = 300.0
DETAIL_INDENT = " " * 17  # aligns with the values of `studyapp doctor`
TIMEOUT = httpx.Timeout(30.0, connect=10.0)

Sleep = Callable[[float], Awaitable[None]]
Progress = Callable[[int, int], None]


class SyncError(RuntimeError):
    """Sync cannot go on; the message says what happened and what to do. Events stay in the outbox."""


class TokenRefused(SyncError):
    """401: the server no longer accepts this participant token."""


class ParticipantWithdrawn(SyncError):
    """410: the server holds only a tombstone for this participant."""


class ServerUnreachable(SyncError):
    """Every retry failed (network down, server overloaded)."""


class NotEnrolled(SyncError):
    pass


def exponential_backoff(attempt: int, *, base: float = 0.5, cap: float = 60.0) -> float:
    """Full jitter: a random delay up to base * 2**attempt (capped), so clients don't retry in step."""
    return random.uniform(0, min(cap, base * 2**attempt))


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


@dataclass
class RetryPolicy:
    max_attempts: int = 8
    backoff: Callable[[int], float] = exponential_backoff
    sleep: Sleep = asyncio.sleep


def _detail(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.text[:200] or response.reason_phrase
    if isinstance(data, dict) and isinstance(data.get("detail"), str):
        return data["detail"]
    return str(data)[:200]


async def post_with_retries(client: httpx.AsyncClient, url: str, *, json: Any, headers: dict[str, str],
                            policy: RetryPolicy, on_retry: Callable[[str], None] | None = None) -> httpx.Response:
    """POST, retrying what may succeed later (timeouts, connection errors, 429, 5xx); other answers return."""
    problem = "no attempt made"
    for attempt in range(policy.max_attempts):
        try:
            response = await client.post(url, json=json, headers=headers)
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            problem = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            delay = policy.backoff(attempt)
        else:
            if response.status_code != 429 and response.status_code < 500:
                return response
            problem = f"HTTP {response.status_code}: {_detail(response)}"
            waited = retry_after_seconds(response.headers.get("Retry-After"))
            delay = waited if waited is not None else policy.backoff(attempt)
        if attempt + 1 < policy.max_attempts:
            if on_retry is not None:
                on_retry(problem)
            await policy.sleep(delay)
    raise ServerUnreachable(f"The server at {url} did not answer after {policy.max_attempts} attempts "
                            f"(last problem: {problem}). Nothing is lost: try again later.")


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
    """Uploads the ready events of one study's outbox, batch by batch."""

    def __init__(self, outbox: OutboxStore, base_url: str, token: str, study_id: str, *,
                 transport: httpx.AsyncBaseTransport | None = None, batch_size: int = DEFAULT_BATCH_SIZE,
                 policy: RetryPolicy | None = None, timeout: httpx.Timeout = TIMEOUT) -> None:
        self.outbox = outbox
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.study_id = study_id
        self.transport = transport
        self.batch_size = max(1, batch_size)
        self.policy = policy or RetryPolicy()
        self.timeout = timeout

    def _client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base_url, transport=self.transport, timeout=self.timeout,
                                 headers={"User-Agent": f"studyapp/{__version__}"})

    async def sync(self, progress: Progress | None = None) -> SyncReport:
        """Upload until nothing is ready; raises SyncError (events stay in the outbox) if it cannot."""
        report = SyncReport(total=self.outbox.counts(self.study_id)["approved"])
        done = 0
        async with self._client() as client:
            # Consent records first: every approved event is covered by the participant's latest consent
            # (the privacy layer withholds events of categories given up), and the server checks each
            # event against the consent it has received, so it must hear the latest decision first,
            # even when older events were released again after the consent changed.
            while True:
                claim_id, consents = self.outbox.claim_ready(self.study_id, self.batch_size, kind="consent")
                if not consents:
                    break
                done += await self._send_claimed(client, claim_id, consents, report)
            while True:
                claim_id, batch = self.outbox.claim_ready(self.study_id, self.batch_size)
                if not batch:
                    break
                handled = await self._send_claimed(client, claim_id, batch, report)
                if handled == 0:
                    raise SyncError("The server's answer did not mention the events sent; "
                                    "they stay in the outbox. Try again later.")
                done += handled
                if progress is not None:
                    progress(done, max(report.total, done))
        return report

    async def _send_claimed(self, client: httpx.AsyncClient, claim_id: str, batch: list[OutboxEvent],
                            report: SyncReport) -> int:
        """Send claimed events; the claim ends with the server's answer (or the failure), whatever it is."""
        try:
            return await self._send(client, batch, report, claim_id=claim_id)
        finally:
            self.outbox.release(claim_id)

    async def _send(self, client: httpx.AsyncClient, batch: list[OutboxEvent], report: SyncReport, *,
                    claim_id: str) -> int:
        """Send one batch; returns how many of its events were settled (removed or set aside)."""
        self.outbox.note_attempt([e.event_id for e in batch])
        body = {"events": [{"event_id": e.event_id, "kind": e.kind, "payload": e.payload} for e in batch]}

        def count_retry(problem: str) -> None:
            report.retries += 1
            self.outbox.renew_claim(claim_id)

        response = await post_with_retries(client, "/v1/events", json=body,
                                           headers={"Authorization": f"Bearer {self.token}"},
                                           policy=self.policy, on_retry=count_retry)
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
                return (await self._send(client, batch[:half], report, claim_id=claim_id)
                        + await self._send(client, batch[half:], report, claim_id=claim_id))
            reason = f"the server refused this event (HTTP {status}): {_detail(response)}"
            self.outbox.reject(batch[0].event_id, reason)
            report.rejected += 1
            report.rejections.append((batch[0].event_id, reason))
            return 1
        if status != 200:
            raise SyncError(f"The server refused the upload (HTTP {status}): {_detail(response)}")
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


async def run_sync(db: Database, *, transport: httpx.AsyncBaseTransport | None = None,
                   policy: RetryPolicy | None = None, progress: Progress | None = None,
                   batch_size: int = DEFAULT_BATCH_SIZE) -> SyncReport:
    """Sync the enrolled study's outbox (or finish a pending withdrawal); records the outcome in settings."""
    from studyapp.secrets import get_participant_token
    from studyapp.store.studies import StudyStore

    settings = SettingsStore(db)
    try:
        if settings.get(WITHDRAWAL_PENDING_KEY):
            from studyapp.sync.withdraw import finish_withdrawal

            await finish_withdrawal(db, transport=transport, policy=policy)
            return SyncReport()
        study = StudyStore(db).current()
        if study is None or not study.server_url:
            raise NotEnrolled("This install is not enrolled in a study with a collection server: "
                              "run `studyapp enroll URL CODE` with the code from the research team.")
        token = get_participant_token(study.id)
        if not token:
            raise TokenRefused(f"No participant token for study {study.id!r} in the keyring: "
                               "enroll again with a new code (`studyapp enroll URL CODE`).")
        uploader = Uploader(OutboxStore(db), study.server_url, token, study.id, transport=transport,
                            policy=policy, batch_size=batch_size)
        report = await uploader.sync(progress)
    except SyncError as exc:
        settings.set(LAST_ERROR_KEY, {"at": now(), "message": str(exc)})
        raise
    settings.set(LAST_SYNC_KEY, now())
    settings.delete(LAST_ERROR_KEY)
    return report


@dataclass
class SyncStatus:
    study_id: str | None
    waiting_review: int
    ready: int
    withheld: int
    rejected: list[tuple[str, str, str]]  # (event_id, kind, reason)
    last_sync_at: str | None
    last_error: str | None
    withdrawal_pending: bool

    @property
    def pending(self) -> int:
        return self.ready + self.waiting_review

    def __str__(self) -> str:
        if self.study_id is None and not self.withdrawal_pending:
            return "not enrolled in a study"
        parts = [f"{self.ready} ready to send", f"{self.waiting_review} waiting for your review",
                 f"{len(self.rejected)} rejected", f"last sync {self.last_sync_at or 'never'}"]
        if self.withdrawal_pending:
            parts.append("withdrawal waiting for the server's confirmation")
        if self.last_error:
            parts.append(f"last error: {self.last_error}")
        text = "; ".join(parts)
        # Rejected events with their reasons, indented under the summary (as `studyapp doctor` prints it).
        shown = [f"\n{DETAIL_INDENT}rejected {kind} {event_id}: {reason}"
                 for event_id, kind, reason in self.rejected[:5]]
        more = len(self.rejected) - len(shown)
        return text + "".join(shown) + (f"\n{DETAIL_INDENT}... and {more} more" if more > 0 else "")

    def short(self) -> str:
        """One line for the TUI footer."""
        if self.study_id is None and not self.withdrawal_pending:
            return "not in a study"
        if self.withdrawal_pending:
            return "withdrawal: waiting for the server"
        text = f"{self.pending} to send"
        if self.rejected:
            text += f" · {len(self.rejected)} rejected"
        text += f" · synced {self.last_sync_at[11:16] + ' UTC' if self.last_sync_at else 'never'}"
        if self.last_error:
            text += " · sync failed"
        return text

    def lines(self) -> list[str]:
        """Every rejected event with its reason (the summary shows the first five)."""
        return [f"rejected {kind} {event_id}: {reason}" for event_id, kind, reason in self.rejected]


def sync_status(db: Database) -> SyncStatus:
    """Pending, rejected (with reasons), last sync and last error of the enrolled study."""
    from studyapp.store.studies import StudyStore

    settings = SettingsStore(db)
    study = StudyStore(db).current()
    study_id = study.id if study else None
    outbox = OutboxStore(db)
    counts = outbox.counts(study_id) if study_id else {"pending": 0, "approved": 0, "withheld": 0}
    rejected = ([(e.event_id, e.kind, e.reason or "") for e in outbox.list(status="rejected", study_id=study_id)]
                if study_id else [])
    error = settings.get(LAST_ERROR_KEY)
    return SyncStatus(
        study_id=study_id,
        waiting_review=counts["pending"],
        ready=counts["approved"],
        withheld=counts["withheld"],
        rejected=rejected,
        last_sync_at=settings.get(LAST_SYNC_KEY),
        last_error=error.get("message") if isinstance(error, dict) else None,
        withdrawal_pending=bool(settings.get(WITHDRAWAL_PENDING_KEY)),
    )
