"""Exactly once through a hostile network: 10,000 events through a proxy that drops, cuts and refuses, to one server
process (on each backend) and to `studyapp-server serve --workers 2` on PostgreSQL."""

from __future__ import annotations

import random

import psycopg
from sqlite_utils import Database

from studyapp.secrets import get_participant_token
from studyapp.store.outbox import OutboxStore
from studyapp.sync.client import SyncReport, Uploader
from studyapp.sync.server_client import StudyServerClient
from tests.server import live as f
from tests.server.live import LiveServer, serve_workers
from tests.sync.helpers import enroll_and_consent, fast_policy
from tests.sync.proxy import MODES, FaultProxy

N_EVENTS = 10_000
FAULTS = [m for m in MODES if m != "pass"]


async def upload_through_faults(client_db: Database, live: LiveServer, *,
                                alternate_workers: bool = False) -> tuple[FaultProxy, SyncReport, set[str]]:
    """Enroll, queue N_EVENTS events (the consent among them) and upload them with the app's uploader through a
    FaultProxy; returns the proxy, the uploader's report and the ids sent. Checks that every fault happened, that
    the 429's Retry-After was honoured and that the outbox is empty."""
    enrollment = await enroll_and_consent(client_db, live)
    # Bulk-queue the events (the outbox table as the privacy gate fills it).
    events = [f.message(content=f"message {i}") for i in range(N_EVENTS - 1)]
    now = "2026-11-25T10:00:00+00:00"
    client_db["outbox"].insert_all(
        ({"event_id": e["event_id"], "study_id": enrollment.study_id, "kind": "message",
          "category": "conversation_text", "payload": f.json_payload(e), "consent_version": "1",
          "status": "approved", "attempts": 0, "created_at": now, "updated_at": now} for e in events),
        batch_size=2000,
    )
    sent_ids = {e.event_id for e in OutboxStore(client_db).list(status="approved")}
    assert len(sent_ids) == N_EVENTS

    # First every fault once (so each is certainly exercised), then faults at random, 40% of requests.
    rng = random.Random(20261125)

    def plan(n: int, request_line: str) -> str:
        if n < len(FAULTS):
            return FAULTS[n]
        return rng.choice(FAULTS) if rng.random() < 0.4 else "pass"

    port = int(live.base_url.rsplit(":", 1)[1])
    with FaultProxy(port, plan, retry_after="3", alternate_workers=alternate_workers) as proxy:
        token = get_participant_token(enrollment.study_id)
        assert token
        policy, sleeps = fast_policy(max_attempts=60)
        async with StudyServerClient(proxy.url, policy=policy) as server:
            report = await Uploader(OutboxStore(client_db), server, token, enrollment.study_id, batch_size=250).sync()

    assert all(proxy.counts[m] >= 1 for m in FAULTS), proxy.counts
    assert 3.0 in sleeps.delays  # the 429's Retry-After was honoured
    assert OutboxStore(client_db).counts(enrollment.study_id) == {"pending": 0, "approved": 0, "withheld": 0,
                                                                  "rejected": 0}
    assert report.accepted + report.duplicate == N_EVENTS
    assert report.duplicate >= 1  # replies lost after the commit were answered "duplicate" on retry
    assert report.rejected == 0
    return proxy, report, sent_ids


async def test_ten_thousand_events_arrive_exactly_once_through_faults(live: LiveServer, client_db: Database) -> None:
    _, _, sent_ids = await upload_through_faults(client_db, live)
    # Exactly once: every id on the server, none twice, none missing.
    stored = live.storage.event_ids()
    assert len(stored) == N_EVENTS
    assert set(stored) == sent_ids
    assert live.sql("SELECT count(DISTINCT event_id) FROM events") == [(N_EVENTS,)]


async def test_ten_thousand_events_arrive_exactly_once_through_faults_to_two_workers(pg_url: str,
                                                                                      client_db: Database) -> None:
    storage, researcher_token = f.new_storage(pg_url)
    try:
        with serve_workers(pg_url, workers=2) as server:
            live = LiveServer(server.base_url, storage, researcher_token)
            # The proxy sends each request to the other worker than the one before, so the retry of a batch whose
            # reply was lost after its commit is answered by the other process (which must say "duplicate").
            proxy, _, sent_ids = await upload_through_faults(client_db, live, alternate_workers=True)
            assert proxy.errors == []
            workers = set(proxy.replies_from)
            assert len(workers) == 2, proxy.replies_from
            assert all(server.is_worker(pid) for pid in workers)
    finally:
        storage.close()
    assert set(proxy.forwarded_to) == workers
    assert all(a != b for a, b in zip(proxy.forwarded_to, proxy.forwarded_to[1:], strict=False))
    # Every request forwarded was answered by the worker chosen for it, so each worker answered half of them.
    assert sum(proxy.replies_from.values()) == len(proxy.forwarded_to)
    assert min(proxy.replies_from.values()) >= len(proxy.forwarded_to) // 2
    # Exactly once, counted by PostgreSQL itself.
    with psycopg.connect(pg_url) as conn:
        total, distinct = conn.execute("SELECT count(*), count(DISTINCT event_id) FROM events").fetchone()
        stored = {row[0] for row in conn.execute("SELECT event_id FROM events")}
    assert (total, distinct) == (N_EVENTS, N_EVENTS)
    assert stored == sent_ids
