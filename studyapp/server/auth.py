"""Tokens and codes: made at random, shown once, stored only as sha256 hashes, compared in constant time; failed
attempts are throttled per client address."""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable

log = logging.getLogger(__name__)

TOKEN_BYTES = 32
# Enrollment codes are typed by hand: short, unambiguous characters, grouped for reading.
CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 12


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def new_code() -> str:
    raw = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
    return "-".join(raw[i : i + 4] for i in range(0, CODE_LENGTH, 4))


def normalize_code(code: str) -> str:
    """Codes are compared without case, spaces or dashes, so a retyped code still matches."""
    return "".join(ch for ch in code.upper() if ch.isalnum())


def hash_secret(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


def same_hash(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("ascii"), b.encode("ascii"))


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer ...`` header, or None."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


class FailureThrottle:
    """At most ``max_failures`` failed attempts (wrong token or code) per client address within ``window_s``
    seconds; past that the address waits until its oldest failure leaves the window (a sliding window).

    Tokens are 256-bit random and codes 60-bit: guessing is hopeless anyway; the throttle keeps a guesser from
    hammering the server and puts the guessing in the log. ``clock`` is injectable (tests).
    """

    def __init__(self, max_failures: int, window_s: float, clock: Callable[[], float] = time.monotonic,
                 *, what: str = "failed authentication attempts") -> None:
        self._max = max_failures
        self._window = window_s
        self._clock = clock
        self._what = what
        self._lock = threading.Lock()
        # Ordered by each client's latest failure (oldest first); an OrderedDict drops its front in O(1).
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def wait_s(self, client: str) -> int:
        """Seconds until ``client`` may try again (0: now)."""
        with self._lock:
            now = self._clock()
            self._forget_quiet(now)
            times = self._failures.get(client)  # no entry for a client that never failed
            if times is None or len(self._recent(times, now)) < self._max:
                return 0
            return max(1, round(times[0] + self._window - now))

    def failed(self, client: str) -> None:
        with self._lock:
            now = self._clock()
            self._forget_quiet(now)
            # Taken out and put back last: the table stays ordered by each client's latest failure.
            times = self._recent(self._failures.pop(client, deque()), now)
            times.append(now)
            self._failures[client] = times
            count = len(times)
        if count == self._max:
            # Once per blocking: the address and the count, never the token or code that was tried.
            log.warning("%d %s from %s within %g s: further attempts from this address get 429 until the "
                        "oldest leaves the window", count, self._what, client, self._window)

    def tracked(self) -> int:
        """How many client addresses the table holds: those whose latest failure lies within the window."""
        with self._lock:
            self._forget_quiet(self._clock())
            return len(self._failures)

    def _forget_quiet(self, now: float) -> None:
        # Clients whose latest failure left the window, oldest first: they are at the front, so each is looked at
        # once, however many addresses a guesser rotates through (no scan of the whole table per request).
        while self._failures:
            times = self._failures[next(iter(self._failures))]
            if times[-1] > now - self._window:
                break
            self._failures.popitem(last=False)

    def _recent(self, times: deque[float], now: float) -> deque[float]:
        while times and times[0] <= now - self._window:
            times.popleft()
        return times
