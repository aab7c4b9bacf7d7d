"""Guessing tokens or enrollment codes: after a few failures from one client address within a window, that address
gets 429 with Retry-After; other addresses are unaffected. The throttle's clock is injected, so the test does not
depend on how fast the requests go."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from studyapp.server.app import MAX_AUTH_FAILURES
from studyapp.server.auth import FailureThrottle
from tests.server import live as f
from tests.server.live import LiveServer
from tests.support.net import free_port, wait_until_http_ok

LIMIT = 5
WINDOW_S = 60.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def throttled(server_db: Path | str) -> Iterator[tuple[LiveServer, Clock]]:
    clock = Clock()
    storage, token = f.new_storage(server_db)
    throttle = FailureThrottle(max_failures=LIMIT, window_s=WINDOW_S, clock=clock)
    with f.serve(storage, auth_throttle=throttle) as base_url:
        yield LiveServer(base_url, storage, token), clock
    storage.close()


def client_from(address: str) -> httpx.Client:
    """An HTTP client whose requests come from ``address`` (any 127.x.y.z is this machine's loopback)."""
    return httpx.Client(transport=httpx.HTTPTransport(local_address=address))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_wrong_tokens_from_one_address_get_429_and_other_addresses_are_unaffected(
        throttled: tuple[LiveServer, Clock], caplog: pytest.LogCaptureFixture) -> None:
    live, clock = throttled
    _, good_token = live.enroll()
    wrong = "wrong-token-that-must-never-be-logged"
    caplog.set_level(logging.WARNING)
    with client_from("127.0.0.2") as guesser, client_from("127.0.0.3") as other:
        url = f"{live.base_url}/v1/protocol"
        for _ in range(LIMIT):
            assert guesser.get(url, headers=bearer(wrong)).status_code == 401
        blocked = guesser.get(url, headers=bearer(wrong))
        assert blocked.status_code == 429
        assert 0 < int(blocked.headers["Retry-After"]) <= WINDOW_S
        assert "try again" in blocked.json()["detail"]
        # While blocked, the address gets no answer about any token, right or wrong.
        assert guesser.get(url, headers=bearer(good_token)).status_code == 429
        # Another address with a correct token is served as usual.
        assert other.get(url, headers=bearer(good_token)).status_code == 200
        # Researcher endpoints count the same failures: the guesser stays blocked there too.
        assert guesser.get(f"{live.base_url}/v1/participants", headers=live.researcher()).status_code == 429
        assert other.get(f"{live.base_url}/v1/participants", headers=live.researcher()).status_code == 200
        # Once the window has passed, the address is served again.
        clock.now += WINDOW_S + 1
        assert guesser.get(url, headers=bearer(good_token)).status_code == 200
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("127.0.0.2" in w and str(LIMIT) in w for w in warnings), warnings
    assert not any(wrong in r.getMessage() for r in caplog.records)


def test_wrong_enrollment_codes_and_researcher_tokens_count_too(throttled: tuple[LiveServer, Clock]) -> None:
    live, _ = throttled
    code = live.code()
    with client_from("127.0.0.4") as guesser, client_from("127.0.0.5") as researcher_guesser, \
            client_from("127.0.0.6") as other:
        for i in range(LIMIT):
            assert guesser.post(f"{live.base_url}/v1/enroll", json={"code": f"NOPE-NOPE-{i:04d}"}).status_code == 403
        assert guesser.post(f"{live.base_url}/v1/enroll", json={"code": code}).status_code == 429
        for _ in range(LIMIT):
            assert researcher_guesser.get(f"{live.base_url}/v1/participants",
                                          headers=bearer("not-a-researcher")).status_code == 401
        assert researcher_guesser.get(f"{live.base_url}/v1/export", headers=live.researcher()).status_code == 429
        # The real code still works from elsewhere: the blocked guesser did not use it up.
        assert other.post(f"{live.base_url}/v1/enroll", json={"code": code}).status_code == 201


def test_a_withdrawn_participant_or_a_missing_token_is_not_a_guess(throttled: tuple[LiveServer, Clock]) -> None:
    live, _ = throttled
    _, token = live.enroll()
    assert httpx.post(f"{live.base_url}/v1/withdraw", headers=bearer(token)).status_code == 200
    for _ in range(LIMIT + 2):
        assert httpx.get(f"{live.base_url}/v1/protocol", headers=bearer(token)).status_code == 410
        assert httpx.get(f"{live.base_url}/v1/protocol").status_code == 401
    _, other_token = live.enroll()
    assert httpx.get(f"{live.base_url}/v1/protocol", headers=bearer(other_token)).status_code == 200


def test_the_throttle_keeps_only_addresses_that_failed_within_its_window() -> None:
    """A guesser rotating through many addresses (IPv6 gives one plenty) leaves behind only its recent failures,
    and an address that never failed takes no room."""
    clock = Clock()
    throttle = FailureThrottle(max_failures=3, window_s=500, clock=clock)
    for i in range(1000):  # one failure a second from a new address each time
        assert throttle.wait_s(f"2001:db8::{i:x}") == 0
        throttle.failed(f"2001:db8::{i:x}")
        clock.now += 1
    # Now is 1000 s after the first: the failures of the last 500 s remain except the one exactly 500 s old.
    assert throttle.tracked() == 499
    throttle.failed("2001:db8::1")  # an early address that fails again is kept, whatever its place before
    assert throttle.wait_s("203.0.113.1") == 0
    assert throttle.tracked() == 500
    clock.now += 499
    assert throttle.tracked() == 1
    throttle.failed("2001:db8::1")
    throttle.failed("2001:db8::1")
    assert throttle.wait_s("2001:db8::1") == 1  # its earlier failure still counts: 3 within the window
    clock.now += 500
    assert throttle.tracked() == 0 and throttle.wait_s("2001:db8::1") == 0


def test_the_throttle_forgets_failures_outside_its_window() -> None:
    clock = Clock()
    throttle = FailureThrottle(max_failures=2, window_s=10, clock=clock)
    throttle.failed("a")
    clock.now += 6
    throttle.failed("a")
    assert throttle.wait_s("a") == 4  # until the first failure leaves the window
    assert throttle.wait_s("b") == 0
    clock.now += 4
    assert throttle.wait_s("a") == 0


def test_behind_a_trusted_proxy_the_throttle_counts_each_forwarded_address(tmp_path: Path) -> None:
    """`studyapp-server serve --forwarded-allow-ips PROXY`: requests through the proxy are throttled by the client
    address it forwards, so one guesser behind the proxy does not lock every participant out."""
    db = tmp_path / "server.db"
    storage, _ = f.new_storage(db)
    code, = storage.create_codes(1)
    storage.close()
    proxy = "127.0.0.7"
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "studyapp.server.cli", "serve", "--db", str(db),
                             "--port", str(port), "--forwarded-allow-ips", proxy], stderr=subprocess.PIPE)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_http_ok(f"{base}/health", timeout=30, alive=lambda: proc.poll() is None)
        token = httpx.post(f"{base}/v1/enroll", json={"code": code}).json()["token"]
        url = f"{base}/v1/protocol"
        with client_from(proxy) as through_proxy, client_from("127.0.0.8") as not_a_proxy:
            guesser = {"X-Forwarded-For": "198.51.100.7"}
            for _ in range(MAX_AUTH_FAILURES):
                assert through_proxy.get(url, headers={**guesser, **bearer("wrong")}).status_code == 401
            assert through_proxy.get(url, headers={**guesser, **bearer(token)}).status_code == 429
            # Another participant behind the same proxy is served.
            assert through_proxy.get(url, headers={"X-Forwarded-For": "198.51.100.8",
                                                   **bearer(token)}).status_code == 200
            # A client that is not a trusted proxy cannot pick its address with the header.
            for _ in range(MAX_AUTH_FAILURES):
                assert not_a_proxy.get(url, headers={**guesser, **bearer("wrong")}).status_code == 401
            assert not_a_proxy.get(url, headers={"X-Forwarded-For": "198.51.100.9",
                                                 **bearer(token)}).status_code == 429
    finally:
        proc.terminate()
        proc.wait(10)
