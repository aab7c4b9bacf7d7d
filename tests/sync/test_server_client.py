"""StudyServerClient: one client for every request to the study server, one reading of its errors, and the
background sync's client closed when it stops (its token read off the event loop)."""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest
from sqlite_utils import Database

from studyapp import __version__
from studyapp.privacy.consent import ConsentService
from studyapp.secrets import get_participant_token
from studyapp.store.outbox import OutboxStore
from studyapp.store.studies import StudyStore
from studyapp.study.protocol import protocol_from_dict
from studyapp.sync.background import BackgroundSync, SyncRound
from studyapp.sync.client import Uploader, run_sync
from studyapp.sync.enroll import EnrollError, enroll
from studyapp.sync.protocol import refresh_protocol
from studyapp.sync.server_client import ServerUnreachable, StudyServerClient, SyncError, error_detail
from studyapp.sync.withdraw import withdraw
from tests.server import live as f
from tests.server.live import LiveServer
from tests.sync.helpers import enroll_and_consent, fast_policy, queue


class Recording(httpx.AsyncBaseTransport):
    """The real network, noting each request's path and User-Agent."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.requests: list[tuple[str, str]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append((request.url.path, request.headers["User-Agent"]))
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_one_client_serves_enroll_upload_protocol_and_withdraw(live: LiveServer, client_db: Database) -> None:
    transport = Recording()
    async with StudyServerClient(live.base_url, transport=transport, policy=fast_policy()[0]) as server:
        enrollment = await enroll(client_db, live.base_url, live.code(), server=server)
        study = StudyStore(client_db).current()
        assert study is not None
        ConsentService(client_db).grant(protocol_from_dict(study.protocol), f.ALL_CATEGORIES)
        queue(client_db, enrollment.study_id, [f.message()])
        report = await run_sync(client_db, server=server)
        assert report.accepted == 2  # the consent record and the message
        assert await refresh_protocol(client_db, server=server) is None  # asked; nothing new
        result = await withdraw(client_db, server=server)
        assert result.participant_id == enrollment.participant_id
        assert not server.closed  # the callers borrowed it; its owner closes it
    assert server.closed
    paths = [path for path, _ in transport.requests]
    assert paths == ["/v1/enroll", "/v1/events", "/v1/events", "/v1/protocol", "/v1/withdraw"]
    assert {agent for _, agent in transport.requests} == {f"studyapp/{__version__}"}
    assert live.storage.count_events() == 0  # the withdrawal deleted what was uploaded


async def test_a_client_for_another_server_is_not_used(live: LiveServer, client_db: Database) -> None:
    await enroll_and_consent(client_db, live)
    async with StudyServerClient("http://127.0.0.1:9") as elsewhere:
        with pytest.raises(SyncError, match="server changed"):
            await run_sync(client_db, server=elsewhere)


DETAIL = "Too many requests from this participant; wait a minute."


@pytest.mark.parametrize("response, expected", [
    (httpx.Response(429, json={"detail": DETAIL}), DETAIL),
    (httpx.Response(429, text=DETAIL), DETAIL),
    (httpx.Response(429, text=f"  {DETAIL}\n"), DETAIL),
    (httpx.Response(429, json={"detail": ""}), "Too Many Requests"),
    (httpx.Response(429), "Too Many Requests"),
    (httpx.Response(422, json={"detail": [{"loc": ["code"], "msg": "missing"}]}),
     '[{"loc": ["code"], "msg": "missing"}]'),
    (httpx.Response(400, json=["not", "a", "dict"]), '["not", "a", "dict"]'),
    (httpx.Response(400, text="x" * 500), "x" * 200),
])
def test_the_error_detail_reads_every_body_alike(response: httpx.Response, expected: str) -> None:
    assert error_detail(response) == expected


@pytest.mark.parametrize("body", [{"json": {"detail": DETAIL}}, {"text": DETAIL}, {}])
async def test_every_caller_words_the_servers_detail_the_same(client_db: Database, body: dict) -> None:
    expected = DETAIL if body else "Forbidden"
    transport = httpx.MockTransport(lambda request: httpx.Response(403, **body))
    async with StudyServerClient("http://127.0.0.1:8000", transport=transport, policy=fast_policy()[0]) as server:
        with pytest.raises(EnrollError) as refused:
            await enroll(client_db, server.base_url, "CODE", server=server)
        assert str(refused.value) == f"The server refused the code: {expected}"
        queue(client_db, "s", [f.message()])
        with pytest.raises(SyncError) as upload:
            await Uploader(OutboxStore(client_db), server, "t", "s").sync()
        assert str(upload.value) == f"The server refused the upload (HTTP 403): {expected}"

    # A retried status names the same detail as its last problem.
    retried = httpx.MockTransport(lambda request: httpx.Response(503, **body))
    policy, _ = fast_policy(max_attempts=2)
    async with StudyServerClient("http://server.test", transport=retried, policy=policy) as server:
        with pytest.raises(ServerUnreachable) as unreachable:
            await server.withdraw("t")
    expected_503 = DETAIL if body else "Service Unavailable"
    assert unreachable.value.problem == f"HTTP 503: {expected_503}" and unreachable.value.status == 503
    assert "http://server.test/v1/withdraw did not answer after 2 attempts" in str(unreachable.value)


async def test_a_protocol_check_is_asked_once_and_says_what_happened(live: LiveServer, client_db: Database) -> None:
    await enroll_and_consent(client_db, live)
    calls: list[str] = []

    def busy(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        return httpx.Response(503, json={"detail": "busy"})

    with pytest.raises(SyncError, match="answered 503 when asked for the study's protocol"):
        await refresh_protocol(client_db, transport=httpx.MockTransport(busy))
    assert calls == ["/v1/protocol"]  # without a policy, a protocol check never holds a sync round up
    store = StudyStore(client_db)
    store.enroll(f.STUDY_ID, store.current().protocol, server_url="http://127.0.0.1:9",  # type: ignore[union-attr]
                 participant_id=store.current().participant_id)  # type: ignore[union-attr]
    with pytest.raises(ServerUnreachable, match=r"Could not ask http://127\.0\.0\.1:9 for the study's protocol"):
        await refresh_protocol(client_db)


async def test_background_sync_closes_its_client_when_it_stops(live: LiveServer, client_db: Database) -> None:
    await enroll_and_consent(client_db, live)
    rounds: asyncio.Queue[SyncRound] = asyncio.Queue()
    background = BackgroundSync(client_db, on_status=rounds.put_nowait, interval=3600, policy=fast_policy()[0])
    task = asyncio.create_task(background.run())
    assert (await asyncio.wait_for(rounds.get(), 30)).error is None
    server = background.server
    assert server is not None and not server.closed
    background.nudge()
    await asyncio.wait_for(rounds.get(), 30)
    assert background.server is server  # one client for every round
    background.stop()
    await asyncio.wait_for(task, 30)
    assert server.closed and background.server is None


async def test_background_sync_closes_its_client_when_cancelled(live: LiveServer, client_db: Database) -> None:
    await enroll_and_consent(client_db, live)
    rounds: asyncio.Queue[SyncRound] = asyncio.Queue()
    background = BackgroundSync(client_db, on_status=rounds.put_nowait, interval=3600, policy=fast_policy()[0])
    task = asyncio.create_task(background.run())  # as the TUI's worker, cancelled on withdrawal or exit
    await asyncio.wait_for(rounds.get(), 30)
    server = background.server
    assert server is not None
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert server.closed


async def test_background_sync_reads_the_token_once_per_round_off_the_event_loop(
        live: LiveServer, client_db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    enrollment = await enroll_and_consent(client_db, live)
    reads: list[threading.Thread] = []

    def recorded(study_id: str) -> str | None:
        reads.append(threading.current_thread())
        return get_participant_token(study_id)

    # Every sync path reads the token through studyapp.sync.token: one read per round means the round's token
    # is passed on to the upload and the protocol check, not read again.
    monkeypatch.setattr("studyapp.sync.token.get_participant_token", recorded)
    async with BackgroundSync(client_db, policy=fast_policy()[0]) as background:
        first = await background.sync_once()  # uploads the consent record, then asks for the protocol
        queue(client_db, enrollment.study_id, [f.message()])
        second = await background.sync_once()
    assert first.error is None and second.error is None
    assert second.report is not None and second.report.accepted == 1
    assert len(reads) == 2 and threading.main_thread() not in reads
    assert background.server is None
