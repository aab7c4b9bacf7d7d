"""The one way the app talks to the study's collection server: ``StudyServerClient``.

It owns the HTTP client (base URL, User-Agent, timeouts), the retry policy (exponential backoff with
full jitter; timeouts, dropped connections, 429 and 5xx retried, Retry-After honoured) and the reading
of the server's error details, and it defines the errors every sync module raises. It speaks HTTP only:
what an answer means for the outbox, the keyring or the ``studies`` table is decided by its callers
(``client``: upload and run_sync, ``enroll``, ``withdraw``, ``protocol``), which all depend on this module
and never the other way round.
"""

from __future__ import annotations

import asyncio
import email.utils
import json as jsonlib
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import httpx

from studyapp import __version__

TIMEOUT = httpx.Timeout(30.0, connect=10.0)
MAX_RETRY_AFTER = 300.0
DETAIL_LIMIT = 200

# Attempts per request when no policy is given. Enrolling gives up sooner (the participant is waiting and
# retries with the same code); a withdrawal is owed to the participant, so it tries longer; a protocol
# check is asked again at the next sync, so it never holds a sync round up.
DEFAULT_ATTEMPTS = {"enroll": 4, "upload": 8, "withdraw": 12, "protocol": 1}
# The most the app reads of one answer: a server that sends more (an endless stream, a protocol padded with
# gigabytes) is cut off there instead of filling the participant's memory. A protocol with its consent texts is
# kilobytes; an upload's answer is one short line per event of a batch of at most 1000.
MAX_ANSWER_BYTES = {"enroll": 2**20, "protocol": 2**20, "withdraw": 2**20, "upload": 4 * 2**20}
# Headers that describe the body as it came over the wire, not the decoded bytes a capped answer holds.
_WIRE_HEADERS = frozenset({"content-encoding", "content-length", "transfer-encoding"})

Sleep = Callable[[float], Awaitable[None]]


class SyncError(RuntimeError):
    """Sync cannot go on; the message says what happened and what to do. Events stay in the outbox."""


class TokenRefused(SyncError):
    """401: the server no longer accepts this participant token."""


class ParticipantWithdrawn(SyncError):
    """410: the server holds only a tombstone for this participant."""


class NotEnrolled(SyncError):
    """No study (or no pending withdrawal) to talk to the server about."""


class ServerUnreachable(SyncError):
    """Every attempt failed (network down, server overloaded)."""

    def __init__(self, message: str, *, problem: str = "", status: int | None = None) -> None:
        super().__init__(message)
        self.problem = problem  # the last attempt's problem, e.g. "ConnectError: ..." or "HTTP 503: busy"
        self.status = status  # the last attempt's HTTP status, None when no answer came


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


def error_detail(response: httpx.Response) -> str:
    """What the server said was wrong: its ``{"detail": ...}``, else the body's text, else the status's name.

    The same words whatever the body's shape, so every message built on it reads alike.
    """
    text = response.text.strip()
    try:
        data = response.json()
    except ValueError:
        return text[:DETAIL_LIMIT] or response.reason_phrase or f"HTTP {response.status_code}"
    detail = data.get("detail", data) if isinstance(data, dict) else data
    if isinstance(detail, str):
        return detail.strip() or response.reason_phrase or f"HTTP {response.status_code}"
    return jsonlib.dumps(detail, ensure_ascii=False)[:DETAIL_LIMIT]


def _problem(exc: httpx.HTTPError) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class StudyServerClient:
    """One study server: one connection pool, one retry policy, one reading of its errors.

    ``policy`` applies to every request; without one each request gets its ``DEFAULT_ATTEMPTS``.
    ``transport`` replaces the network (tests). Use it as an async context manager, or call ``aclose()``.
    Methods return the server's last answer; callers decide what its status means.
    """

    def __init__(self, base_url: str, *, transport: httpx.AsyncBaseTransport | None = None,
                 policy: RetryPolicy | None = None, timeout: httpx.Timeout = TIMEOUT) -> None:
        self.base_url = base_url.strip().rstrip("/")
        self.policy = policy
        self._http = httpx.AsyncClient(base_url=self.base_url, transport=transport, timeout=timeout,
                                       headers={"User-Agent": f"studyapp/{__version__}"})

    @property
    def closed(self) -> bool:
        return self._http.is_closed

    def serves(self, base_url: str) -> bool:
        return self.base_url == base_url.strip().rstrip("/")

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> StudyServerClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    # -- the server's endpoints -------------------------------------------------------------------

    async def enroll(self, code: str, claim: str) -> httpx.Response:
        """POST /v1/enroll: a one-time code (and the claim that makes a retry return the same enrollment)."""
        return await self.request("POST", "/v1/enroll", operation="enroll", json={"code": code, "claim": claim})

    async def upload(self, token: str, events: list[dict[str, Any]], *,
                     on_retry: Callable[[str], None] | None = None) -> httpx.Response:
        """POST /v1/events: one batch; ``on_retry`` hears each problem before its retry."""
        return await self.request("POST", "/v1/events", operation="upload", token=token, json={"events": events},
                                  on_retry=on_retry)

    async def withdraw(self, token: str) -> httpx.Response:
        """POST /v1/withdraw: delete everything of this participant (idempotent, so safe to retry)."""
        return await self.request("POST", "/v1/withdraw", operation="withdraw", token=token, json={})

    async def protocol(self, token: str) -> httpx.Response:
        """GET /v1/protocol: the study's current protocol and its version."""
        return await self.request("GET", "/v1/protocol", operation="protocol", token=token)

    # -- the one retry loop -----------------------------------------------------------------------

    async def _capped(self, request: httpx.Request, limit: int, operation: str) -> httpx.Response:
        """Send ``request`` and read its answer up to ``limit`` bytes (decoded); more raises SyncError."""
        response = await self._http.send(request, stream=True)
        try:
            declared = response.headers.get("Content-Length", "")
            chunks: list[bytes] = []
            size = int(declared) if declared.isdigit() else 0
            if size <= limit:
                size = 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > limit:
                        break
                    chunks.append(chunk)
        finally:
            await response.aclose()
        if size > limit:
            raise SyncError(f"The server at {request.url} sent more than {limit // 2**20} MiB in answer to the "
                            f"{operation} request, far more than any studyapp server sends; the answer was not read. "
                            "Check the study's address, or tell the research team.")
        headers = [(k, v) for k, v in response.headers.multi_items() if k.lower() not in _WIRE_HEADERS]
        return httpx.Response(response.status_code, headers=headers, content=b"".join(chunks), request=request,
                              extensions=response.extensions)

    async def request(self, method: str, path: str, *, operation: str, token: str | None = None,
                      json: Any = None, on_retry: Callable[[str], None] | None = None) -> httpx.Response:
        """Send, retrying what may succeed later (timeouts, connection errors, 429, 5xx); other answers return.

        Raises ServerUnreachable once the attempts are spent, SyncError for an answer that cannot be read.
        """
        policy = self.policy or RetryPolicy(max_attempts=DEFAULT_ATTEMPTS[operation])
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        url = f"{self.base_url}{path}"
        problem, status = "no attempt made", None
        for attempt in range(policy.max_attempts):
            try:
                response = await self._capped(self._http.build_request(method, path, json=json, headers=headers),
                                              MAX_ANSWER_BYTES[operation], operation)
            except httpx.TransportError as exc:  # timeouts, refused or dropped connections, broken HTTP
                problem, status = _problem(exc), None
                delay = policy.backoff(attempt)
            except httpx.HTTPError as exc:  # e.g. an undecodable body: asking again would not help
                raise SyncError(f"The answer of the server at {url} could not be read ({_problem(exc)}). "
                                "Nothing is lost: try again later.") from exc
            else:
                if response.status_code != 429 and response.status_code < 500:
                    return response
                problem, status = f"HTTP {response.status_code}: {error_detail(response)}", response.status_code
                waited = retry_after_seconds(response.headers.get("Retry-After"))
                delay = waited if waited is not None else policy.backoff(attempt)
            if attempt + 1 < policy.max_attempts:
                if on_retry is not None:
                    on_retry(problem)
                await policy.sleep(delay)
        raise ServerUnreachable(f"The server at {url} did not answer after {policy.max_attempts} attempts "
                                f"(last problem: {problem}). Nothing is lost: try again later.",
                                problem=problem, status=status)


@asynccontextmanager
async def connect(base_url: str, *, server: StudyServerClient | None = None,
                  transport: httpx.AsyncBaseTransport | None = None,
                  policy: RetryPolicy | None = None) -> AsyncIterator[StudyServerClient]:
    """The caller's ``server`` (left open: its owner closes it), or a new client for ``base_url`` closed on exit."""
    if server is not None:
        if not server.serves(base_url):
            # The study's address changed under a long-lived client (re-enrolled meanwhile): its owner
            # opens one for the new address at its next round.
            raise SyncError(f"The study's server changed from {server.base_url} to {base_url} during the sync; "
                            "it is tried again at the next sync.")
        yield server
        return
    async with StudyServerClient(base_url, transport=transport, policy=policy) as fresh:
        yield fresh
