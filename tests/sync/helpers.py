"""Shared steps of the sync tests: enroll a client database, grant consent, queue events."""

from __future__ import annotations

from typing import Any

from sqlite_utils import Database

from studyapp.privacy.consent import ConsentService
from studyapp.store.outbox import OutboxStore
from studyapp.store.studies import StudyStore
from studyapp.study.protocol import protocol_from_dict
from studyapp.sync.client import RetryPolicy
from studyapp.sync.enroll import Enrollment, enroll
from tests.server import live as f
from tests.server.live import LiveServer


class Sleeps:
    """An injectable sleep: records each delay instead of waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def fast_policy(max_attempts: int = 8) -> tuple[RetryPolicy, Sleeps]:
    sleeps = Sleeps()
    return RetryPolicy(max_attempts=max_attempts, sleep=sleeps), sleeps


async def enroll_and_consent(db: Database, live: LiveServer, url: str | None = None) -> Enrollment:
    """Enroll via the real endpoint and agree to every category (queues the consent event)."""
    enrollment = await enroll(db, url or live.base_url, live.code())
    study = StudyStore(db).current()
    assert study is not None
    ConsentService(db).grant(protocol_from_dict(study.protocol), f.ALL_CATEGORIES)
    return enrollment


def queue(db: Database, study_id: str, events: list[dict[str, Any]]) -> list[str]:
    """Put already-anonymized events into the outbox, approved (as the privacy gate does)."""
    outbox = OutboxStore(db)
    return [outbox.add(study_id=study_id, kind=e["kind"], category="test", payload=e["payload"],
                       consent_version="1", approved=True, event_id=e["event_id"]) for e in events]
