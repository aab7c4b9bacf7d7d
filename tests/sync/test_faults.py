"""Exactly once through a hostile network: 10,000 events through a proxy that drops, cuts and refuses."""

from __future__ import annotations

import random

from sqlite_utils import Database

from studyapp.secrets import get_participant_token
from studyapp.store.outbox import OutboxStore
from studyapp.sync.client import Uploader
from studyapp.sync.server_client import StudyServerClient
from tests.server import live as f
from tests.server.live import LiveServer
from tests.sync.helpers import enroll_and_consent, fast_policy
from tests.sync.proxy import MODES, FaultProxy

N_EVENTS = 10_000


async def test_ten_thousand_events_arrive_exactly_once_through_faults(live: LiveServer, client_db: Database) -> None:
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
    faults = [m for m in MODES if m != "pass"]

    def plan(n: int, request_line: str) -> str:
        if n < len(faults):
            return faults[n]
        return rng.choice(faults) if rng.random() < 0.4 else "pass"

    port = int(live.base_url.rsplit(":", 1)[1])
    with FaultProxy(port, plan, retry_after="3") as proxy:
        token = get_participant_token(enrollment.study_id)
        assert token
        policy, sleeps = fast_policy(max_attempts=60)
        async with StudyServerClient(proxy.url, policy=policy) as server:
            report = await Uploader(OutboxStore(client_db), server, token, enrollment.study_id, batch_size=250).sync()

    assert all(proxy.counts[m] >= 1 for m in faults), proxy.counts
    assert 3.0 in sleeps.delays  # the 429's Retry-After was honoured
    # Exactly once: every id on the server, none twice, none missing, outbox empty.
    stored = live.storage.event_ids()
    assert len(stored) == N_EVENTS
    assert set(stored) == sent_ids
    assert live.sql("SELECT count(DISTINCT event_id) FROM events") == [(N_EVENTS,)]
    assert OutboxStore(client_db).counts(enrollment.study_id) == {"pending": 0, "approved": 0, "withheld": 0,
                                                                  "rejected": 0}
    assert report.accepted + report.duplicate == N_EVENTS
    assert report.duplicate >= 1  # replies lost after the commit were answered "duplicate" on retry
    assert report.rejected == 0
