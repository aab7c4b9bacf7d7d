"""Background sync (what the TUI runs in a worker): rounds on start and when nudged, errors reported."""

from __future__ import annotations

import asyncio

from sqlite_utils import Database

from studyapp.sync.background import BackgroundSync, SyncRound
from tests.server import live as f
from tests.server.live import LiveServer
from tests.sync.helpers import enroll_and_consent, fast_policy, queue


async def test_background_sync_uploads_on_start_and_when_nudged(live: LiveServer, client_db: Database) -> None:
    enrollment = await enroll_and_consent(client_db, live)
    queue(client_db, enrollment.study_id, [f.message()])
    rounds: asyncio.Queue[SyncRound] = asyncio.Queue()
    background = BackgroundSync(client_db, on_status=rounds.put_nowait, interval=3600, policy=fast_policy()[0])
    task = asyncio.create_task(background.run())
    first = await asyncio.wait_for(rounds.get(), 30)
    assert first.error is None and first.report is not None and first.report.accepted == 2
    assert first.status.ready == 0 and "0 to send" in first.status.short()
    queue(client_db, enrollment.study_id, [f.message(), f.message()])
    background.nudge()
    second = await asyncio.wait_for(rounds.get(), 30)
    assert second.report is not None and second.report.accepted == 2
    assert live.storage.count_events() == 4
    background.stop()
    await asyncio.wait_for(task, 30)


async def test_a_failed_round_is_reported_not_raised(live: LiveServer, client_db: Database) -> None:
    enrollment = await enroll_and_consent(client_db, live)
    from studyapp.store.studies import StudyStore

    store = StudyStore(client_db)
    store.enroll(enrollment.study_id, store.current().protocol, server_url="http://127.0.0.1:9",  # type: ignore[union-attr]
                 participant_id=enrollment.participant_id)
    background = BackgroundSync(client_db, policy=fast_policy(max_attempts=2)[0])
    result = await background.sync_once()
    assert result.error is not None and "did not answer" in result.error
    assert result.status.ready == 1  # the consent record waits
    assert "sync failed" in result.status.short()


async def test_not_enrolled_is_quiet(client_db: Database) -> None:
    result = await BackgroundSync(client_db).sync_once()
    assert result.error is None and result.report is None
    assert result.status.short() == "not in a study"
