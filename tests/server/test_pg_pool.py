"""`studyapp-server serve --workers 2` on PostgreSQL when researchers hold more exports open than the workers have
pooled connections, while participants upload: no request fails with a traceback, the exports beyond what the
pool may hold are refused at once with 503 and Retry-After, uploads still get connections, and PostgreSQL itself
never sees more connections than the workers' pools allow."""

from __future__ import annotations

import socket
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from studyapp.server.ingest import StorageBusy
from studyapp.server.pg_storage import MAX_SNAPSHOTS, POOL_MAX, PgStorage
from tests.server import live as f
from tests.server.live import serve_workers

WORKERS = 2
# More exports at once than all the workers' pooled connections together.
EXPORTS = WORKERS * POOL_MAX + 5
PARTICIPANTS = 8
# A held export's client reads nothing after its first bytes; its socket takes only this much.
CLIENT_RECEIVE_BUFFER = 64 * 1024


def export_bytes_held_in_flight() -> int:
    """The most bytes of an answer the kernel and the server's buffers can take while its client reads nothing:
    the sending socket's largest buffer (tcp_wmem), the receiving one's (SO_RCVBUF, doubled by the kernel), and
    a margin for what uvicorn buffers and the export thread's next piece. A larger export cannot end, so its
    snapshot stays open, until its client reads on."""
    send_max = int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])
    return send_max + 2 * CLIENT_RECEIVE_BUFFER + 2 * 1024 * 1024


def fill_study(url: str) -> tuple[str, list[str], int]:
    """A study with one participant's messages, together larger than ``export_bytes_held_in_flight``; returns
    the researcher token, enrollment codes for the uploading participants and the number of messages."""
    storage, token = f.new_storage(url)
    try:
        enrolled = storage.enroll(storage.create_codes(1)[0])
        assert enrolled is not None
        participant_id = enrolled[0]
        storage.store_events(participant_id, [(e["event_id"], e["kind"], e["payload"]) for e in [f.consent()]])
        content = "x" * 8000
        n = export_bytes_held_in_flight() // len(content) + 1
        storage.bulk_insert_events(participant_id, ((e["event_id"], e["kind"], e["payload"]) for e in
                                                    (f.message(content=content) for _ in range(n))))
        return token, storage.create_codes(PARTICIPANTS), n
    finally:
        storage.close()  # the test's own pool: PostgreSQL's count below is the workers' alone


# The clients' connections to the test database but the test's own (not autovacuum's, which come and go).
CLIENTS = ("FROM pg_stat_activity WHERE datname = current_database() AND backend_type = 'client backend' "
           "AND pid <> pg_backend_pid()")


def connections(conn: psycopg.Connection[Any]) -> tuple[int, int]:
    """(the servers' connections to the database, of them those holding an open export of messages)."""
    row = conn.execute("SELECT count(*), count(*) FILTER (WHERE state <> 'idle' AND query LIKE '%records_message%') "
                       + CLIENTS).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def test_exports_beyond_the_pool_get_503_while_uploads_go_on(pg_url: str) -> None:
    researcher, codes, n_messages = fill_study(pg_url)
    auth = {"Authorization": f"Bearer {researcher}"}
    with serve_workers(pg_url, workers=WORKERS) as server, ExitStack() as held, \
            psycopg.connect(pg_url, autocommit=True) as watch:
        slow = httpx.Client(base_url=server.base_url, timeout=60, limits=httpx.Limits(max_connections=EXPORTS),
                            transport=httpx.HTTPTransport(socket_options=[
                                (socket.SOL_SOCKET, socket.SO_RCVBUF, CLIENT_RECEIVE_BUFFER)]))
        held.enter_context(slow)

        def start_export(_: int) -> tuple[Any, httpx.Response, Any, bytes]:
            """Ask for the messages and read only the first bytes (an open export) or the whole refusal."""
            stream = slow.stream("GET", "/v1/export/messages", headers=auth)
            response = stream.__enter__()
            if response.status_code != 200:
                response.read()
                return stream, response, None, b""
            pieces = response.iter_bytes()
            return stream, response, pieces, next(pieces)

        # Every export at once; when this returns, each is either refused or holds its snapshot (its answer is
        # too large to end while its client reads nothing more).
        with ThreadPoolExecutor(EXPORTS) as pool:
            started = list(pool.map(start_export, range(EXPORTS)))
        for stream, *_ in started:
            held.push(stream)
        exports = [tuple(s[1:]) for s in started]
        opened = [e for e in exports if e[0].status_code == 200]
        refused = [e[0] for e in exports if e[0].status_code != 200]
        # A worker answers at most MAX_SNAPSHOTS exports at once, and one got at least EXPORTS / WORKERS of them.
        assert MAX_SNAPSHOTS <= len(opened) <= WORKERS * MAX_SNAPSHOTS, [e[0].status_code for e in exports]
        for response in refused:
            assert response.status_code == 503, response.text
            assert int(response.headers["Retry-After"]) >= 1
            assert "exports" in response.json()["detail"]
        total, holding = connections(watch)
        assert holding == len(opened)
        assert total <= WORKERS * POOL_MAX

        # Participants enroll and upload while the exports are held: each request is answered, and stored.
        def participant(code: str) -> list[str]:
            with httpx.Client(base_url=server.base_url, timeout=60) as client:
                enrolled = client.post("/v1/enroll", json={"code": code})
                assert enrolled.status_code == 201, enrolled.text
                headers = {"Authorization": f"Bearer {enrolled.json()['token']}"}
                sent: list[str] = []
                for batch in ([f.consent()], [f.message() for _ in range(50)], [f.message() for _ in range(50)]):
                    answer = client.post("/v1/events", json={"events": batch}, headers=headers)
                    assert answer.status_code == 200, answer.text
                    assert answer.json()["accepted"] == len(batch)
                    sent += [e["event_id"] for e in batch]
                return sent

        with ThreadPoolExecutor(PARTICIPANTS) as pool:
            uploaded = [event_id for ids in pool.map(participant, codes) for event_id in ids]
        total, holding = connections(watch)
        assert holding == len(opened)  # the exports were open all along
        assert total <= WORKERS * POOL_MAX

        # The held exports read on to their end: complete, from the snapshot taken before the uploads.
        for response, pieces, first in opened:
            lines = (first + b"".join(pieces)).splitlines()
            assert len(lines) == int(response.headers["X-Export-Rows"]) == n_messages
        # Each export gave its connection back before its answer ended: none is left in a transaction, and an
        # export now gets a snapshot on whichever worker it lands.
        assert connections(watch)[1] == 0
        assert watch.execute("SELECT count(*) " + CLIENTS + " AND state <> 'idle'").fetchone() == (0,)
        again = httpx.get(f"{server.base_url}/v1/export/messages", headers=auth, timeout=60)
        assert again.status_code == 200
        assert len(again.content.splitlines()) == n_messages + PARTICIPANTS * 100
        stored = {row[0] for row in watch.execute("SELECT event_id FROM events WHERE event_id = ANY(%s)",
                                                  [uploaded])}
        assert stored == set(uploaded) and len(uploaded) == PARTICIPANTS * 101


# -- the storage's own limits -------------------------------------------------------------------------------------


def test_an_upload_with_consent_needs_one_pooled_connection(pg_url: str) -> None:
    f.new_storage(pg_url)[0].close()
    # A pool of one: an upload that took a second connection while holding the first would wait for the pool's
    # timeout (with a pool of ten, ten such uploads at once did).
    storage = PgStorage(pg_url, max_connections=1)
    try:
        enrolled = storage.enroll(storage.create_codes(1)[0])
        assert enrolled is not None
        results = storage.store_events(enrolled[0], [(e["event_id"], e["kind"], e["payload"])
                                                     for e in (f.consent(), f.message())])
        assert [r.status for r in results] == ["accepted", "accepted"]
    finally:
        storage.close()


def test_snapshots_beyond_half_the_pool_are_refused_and_their_slots_come_back(pg_url: str) -> None:
    f.new_storage(pg_url)[0].close()
    storage = PgStorage(pg_url, max_connections=4)
    try:
        assert storage.max_snapshots == 2
        with storage.snapshot() as first, storage.snapshot():
            with pytest.raises(StorageBusy, match=r"busy with other exports \(at most 2 at once") as refused:
                storage.snapshot()
            assert refused.value.retry_after_s >= 1
            # The other half of the pool serves enrollment and uploads meanwhile.
            enrolled = storage.enroll(storage.create_codes(1)[0])
            assert enrolled is not None
            storage.store_events(enrolled[0], [(e["event_id"], e["kind"], e["payload"]) for e in [f.consent()]])
            assert first.count_records("consent") == 0  # the snapshot predates it
        # Closed snapshots give their slots back.
        for _ in range(3):
            with storage.snapshot() as snapshot:
                assert snapshot.count_records("consent") == 1
    finally:
        storage.close()
