"""Networking helpers for tests that start real servers on 127.0.0.1."""

from __future__ import annotations

import socket
import time

import httpx


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bound_socket() -> socket.socket:
    """A listening-ready socket already bound to a free port; handing it to a server avoids port races."""
    # IPPROTO_TCP named, not 0: asyncio sets TCP_NODELAY only on connections accepted from a socket that says it is
    # TCP, and without it a streamed reply's second small write waits out the client's delayed ACK (~40 ms).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def wait_until_http_ok(url: str, timeout: float = 30.0, *, interval: float = 0.05,
                       alive: object | None = None) -> httpx.Response:
    """Poll ``url`` until it answers 2xx, at most ``timeout`` seconds; raise TimeoutError otherwise.

    ``alive`` may be a callable returning False once the server process has died, so a crashed server
    fails the wait at once instead of after the whole timeout.
    """
    deadline = time.monotonic() + timeout
    last: str = "no answer yet"
    while True:
        if callable(alive) and not alive():
            raise RuntimeError(f"The server for {url} exited before it became ready ({last}).")
        try:
            response = httpx.get(url, timeout=min(2.0, max(0.1, deadline - time.monotonic())))
            if response.is_success:
                return response
            last = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            last = f"{type(exc).__name__}: {exc}"
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{url} did not answer 2xx within {timeout:.0f}s (last: {last}).")
        # A readiness poll, not synchronisation of test logic: the bounded loop above ends it.
        time.sleep(interval)
