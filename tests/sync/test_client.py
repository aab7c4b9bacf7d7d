"""Enrollment, upload and withdrawal from the participant's side, against a real server on 127.0.0.1."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import keyring
import pytest
from click.testing import CliRunner
from keyring.backends import fail
from sqlite_utils import Database

from studyapp.cli import cli
from studyapp.secrets import get_participant_token
from studyapp.store.outbox import OutboxStore
from studyapp.store.settings import SettingsStore
from studyapp.store.studies import StudyStore
from studyapp.sync.client import (
    LAST_SYNC_KEY,
    WITHDRAWAL_PENDING_KEY,
    ServerUnreachable,
    TokenRefused,
    Uploader,
    run_sync,
    sync_status,
)
from studyapp.sync.enroll import EnrollError, enroll
from studyapp.sync.server_client import StudyServerClient
from studyapp.sync.withdraw import finish_withdrawal, withdraw
from tests.server import live as f
from tests.server.live import LiveServer, serve
from tests.sync.helpers import enroll_and_consent, fast_policy, queue
from tests.sync.proxy import FaultProxy


def client_dir(tmp_path: Path) -> str:
    return str(tmp_path / "client")


def test_enroll_sync_and_status_through_the_commands(live: LiveServer, client_db: Database, tmp_path: Path,
                                                     memory_keyring) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["enroll", live.base_url, live.code(), "--data-dir", client_dir(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "Enrolled in 'Sync test study'" in result.output
    study = StudyStore(client_db).current()
    assert study is not None and study.id == f.STUDY_ID and study.server_url == live.base_url
    token = get_participant_token(f.STUDY_ID)
    assert token and live.storage.participant_for(token) == study.participant_id
    # The token is in the keyring only, never in the database.
    dump = "\n".join(str(r) for t in client_db.table_names() for r in client_db[t].rows)
    assert token not in dump

    ids = queue(client_db, f.STUDY_ID, [f.consent(), *f.one_of_each()[1:]])
    result = runner.invoke(cli, ["sync", "--data-dir", client_dir(tmp_path)])
    assert result.exit_code == 0, result.output
    assert f"{len(ids)} events delivered ({len(ids)} new" in result.output
    assert sorted(live.storage.event_ids(study.participant_id)) == sorted(ids)
    assert OutboxStore(client_db).counts(f.STUDY_ID)["approved"] == 0
    status = sync_status(client_db)
    assert status.last_sync_at is not None and status.ready == 0 and status.rejected == []
    assert "last sync" in str(status)


def test_enroll_without_a_keyring_stops_before_spending_the_code(live: LiveServer, client_db: Database) -> None:
    code = live.code()
    keyring.set_keyring(fail.Keyring())
    with pytest.raises(EnrollError, match="code is still valid"):
        import asyncio

        asyncio.run(enroll(client_db, live.base_url, code))
    assert live.storage.code_counts()["used"] == 0
    assert StudyStore(client_db).current() is None


async def test_enroll_errors_are_clear(live: LiveServer, client_db: Database) -> None:
    with pytest.raises(EnrollError, match="refused the code"):
        await enroll(client_db, live.base_url, "WRONG-CODE-0000")
    with pytest.raises(EnrollError, match="must use https"):
        await enroll(client_db, "http://study.example.org", "X")
    with pytest.raises(EnrollError, match="Cannot reach"):
        await enroll(client_db, "http://127.0.0.1:9", live.code(), policy=fast_policy()[0])


async def test_enrollment_whose_reply_was_lost_is_repeated_without_a_second_code(live: LiveServer,
                                                                                 client_db: Database) -> None:
    port = int(live.base_url.rsplit(":", 1)[1])
    with FaultProxy(port, lambda n, line: "drop_after" if n == 0 else "pass") as proxy:
        enrollment = await enroll(client_db, proxy.url, live.code(), policy=fast_policy()[0])
        assert proxy.counts["drop_after"] == 1
    assert live.storage.code_counts()["used"] == 1
    assert [r["participant_id"] for r in live.storage.compliance()] == [enrollment.participant_id]
    token = get_participant_token(enrollment.study_id)
    assert token and live.storage.participant_for(token) == enrollment.participant_id


async def test_rejected_events_are_set_aside_with_the_reason(live: LiveServer, client_db: Database) -> None:
    enrollment = await enroll_and_consent(client_db, live)
    good = queue(client_db, enrollment.study_id, [f.message(), f.comparison()])
    bad = queue(client_db, enrollment.study_id, [f.comparison(rating=7)])
    report = await run_sync(client_db, policy=fast_policy()[0])
    assert report.accepted == len(good) + 1  # + the consent record
    assert report.rejected == 1
    rejected = OutboxStore(client_db).list(status="rejected")
    assert [e.event_id for e in rejected] == bad
    assert "rating" in (rejected[0].reason or "")
    status = sync_status(client_db)
    assert status.rejected[0][0] == bad[0]
    assert any("rating" in line for line in status.lines())
    assert "1 rejected" in str(status) and "rating" in str(status)  # what `studyapp doctor` prints
    # Rejected events are never retried blindly: a second sync sends nothing.
    again = await run_sync(client_db, policy=fast_policy()[0])
    assert again.batches == 0


async def test_an_unknown_token_says_re_enroll(live: LiveServer, client_db: Database) -> None:
    queue(client_db, f.STUDY_ID, [f.consent()])
    async with StudyServerClient(live.base_url, policy=fast_policy()[0]) as server:
        uploader = Uploader(OutboxStore(client_db), server, "stale-token", f.STUDY_ID)
        with pytest.raises(TokenRefused, match="re-enroll"):
            await uploader.sync()
    assert OutboxStore(client_db).counts()["approved"] == 1


async def test_retry_after_is_honoured_and_5xx_backs_off(client_db: Database) -> None:
    queue(client_db, "s", [f.consent(), f.message()])
    answers = [httpx.Response(429, headers={"Retry-After": "7"}), httpx.Response(503)]

    def handler(request: httpx.Request) -> httpx.Response:
        if answers:
            return answers.pop(0)
        events = json.loads(request.content)["events"]
        return httpx.Response(200, json={"results": [{"event_id": e["event_id"], "status": "accepted"}
                                                     for e in events], "accepted": 2, "duplicate": 0, "rejected": 0})

    policy, sleeps = fast_policy()
    policy.backoff = lambda attempt: 100.0 + attempt
    async with StudyServerClient("http://server.test", transport=httpx.MockTransport(handler), policy=policy) as server:
        report = await Uploader(OutboxStore(client_db), server, "t", "s").sync()
    assert sleeps.delays == [7.0, 101.0]
    assert report.accepted == 2 and report.retries == 2
    assert OutboxStore(client_db).counts()["approved"] == 0


async def test_gives_up_after_the_attempts_and_keeps_every_event(client_db: Database) -> None:
    ids = queue(client_db, "s", [f.consent(), f.message()])
    transport = httpx.MockTransport(lambda request: httpx.Response(500))
    policy, sleeps = fast_policy(max_attempts=4)
    async with StudyServerClient("http://server.test", transport=transport, policy=policy) as server:
        with pytest.raises(ServerUnreachable, match="Nothing is lost"):
            await Uploader(OutboxStore(client_db), server, "t", "s").sync()
    assert len(sleeps.delays) == 3
    assert [e.event_id for e in OutboxStore(client_db).ready("s", 10)] == ids
    # The consent record goes first, alone; the message waits for it.
    assert [e.attempts for e in OutboxStore(client_db).ready("s", 10)] == [1, 0]


async def test_a_batch_over_the_size_limit_is_split(tmp_path: Path, client_db: Database) -> None:
    storage, token = f.new_storage(tmp_path / "small.db")
    with serve(storage, max_body_bytes=6000) as base_url:
        server = LiveServer(base_url, storage, token)
        enrollment = await enroll_and_consent(client_db, server)
        ids = queue(client_db, enrollment.study_id, [f.message(content="x" * 900) for _ in range(12)])
        huge = queue(client_db, enrollment.study_id, [f.message(content="y" * 7000)])
        report = await run_sync(client_db, policy=fast_policy()[0])
    assert report.accepted == len(ids) + 1
    assert set(ids) <= set(storage.event_ids())
    rejected = OutboxStore(client_db).list(status="rejected")
    assert [e.event_id for e in rejected] == huge
    assert "413" in (rejected[0].reason or "")


async def test_sync_resumes_after_a_crash_without_storing_twice(live: LiveServer, client_db: Database) -> None:
    enrollment = await enroll_and_consent(client_db, live)
    ids = queue(client_db, enrollment.study_id, [f.message() for _ in range(30)])
    # The consent record passes; then every reply is lost after the server committed, and the app
    # gives up (as if it crashed).
    plan = lambda n, line: "pass" if n == 0 else "drop_after"  # noqa: E731
    with FaultProxy(int(live.base_url.rsplit(":", 1)[1]), plan) as proxy:
        token = get_participant_token(enrollment.study_id)
        assert token
        async with StudyServerClient(proxy.url, policy=fast_policy(max_attempts=2)[0]) as server:
            crashed = Uploader(OutboxStore(client_db), server, token, enrollment.study_id, batch_size=10)
            with pytest.raises(ServerUnreachable):
                await crashed.sync()
    assert OutboxStore(client_db).counts()["approved"] == len(ids)  # nothing removed without an answer
    assert live.storage.count_events() == 1 + 10  # the consent record, and the batch whose reply was lost
    # Restart: the outbox still holds the state; the server answers duplicate for what it has.
    report = await run_sync(client_db, policy=fast_policy()[0], batch_size=10)
    assert report.duplicate == 10
    assert report.accepted == len(ids) - 10
    assert sorted(live.storage.event_ids()) == sorted([*ids, *report_consent_ids(live)])
    assert live.storage.count_events() == len(ids) + 1


def report_consent_ids(live: LiveServer) -> list[str]:
    return [r[0] for r in live.sql("SELECT event_id FROM events WHERE kind = 'consent'")]


async def test_withdraw_deletes_on_the_server_and_retries_until_confirmed(live: LiveServer,
                                                                          client_db: Database) -> None:
    enrollment = await enroll_and_consent(client_db, live)
    queue(client_db, enrollment.study_id, [f.message()])
    await run_sync(client_db, policy=fast_policy()[0])
    queue(client_db, enrollment.study_id, [f.message()])  # waiting: must never leave
    assert live.storage.count_events() == 2
    plan = iter(["drop_before", "http500", "drop_after"])
    port = int(live.base_url.rsplit(":", 1)[1])
    with FaultProxy(port, lambda n, line: next(plan, "pass")) as proxy:
        StudyStore(client_db).enroll(enrollment.study_id, StudyStore(client_db).current().protocol,  # type: ignore[union-attr]
                                     server_url=proxy.url, participant_id=enrollment.participant_id)
        policy, sleeps = fast_policy()
        result = await withdraw(client_db, policy=policy)
    assert len(sleeps.delays) == 3
    assert result.participant_id == enrollment.participant_id
    assert live.storage.count_events() == 0
    assert [r["withdrawn_at"] is not None for r in live.storage.compliance()] == [True]
    assert OutboxStore(client_db).counts()["approved"] == 0
    assert StudyStore(client_db).get(enrollment.study_id).withdrawn_at is not None  # type: ignore[union-attr]
    assert get_participant_token(enrollment.study_id) is None
    assert SettingsStore(client_db).get(WITHDRAWAL_PENDING_KEY) is None


async def test_withdrawal_owed_to_an_unreachable_server_is_sent_by_the_next_sync(live: LiveServer,
                                                                                client_db: Database) -> None:
    enrollment = await enroll_and_consent(client_db, live)
    await run_sync(client_db, policy=fast_policy()[0])
    real_url = live.base_url
    store = StudyStore(client_db)
    store.enroll(enrollment.study_id, store.current().protocol, server_url="http://127.0.0.1:9",  # type: ignore[union-attr]
                 participant_id=enrollment.participant_id)
    with pytest.raises(ServerUnreachable):
        await withdraw(client_db, policy=fast_policy(max_attempts=2)[0])
    # Locally withdrawn at once: nothing queued, the study no longer current, the request still owed.
    assert store.current() is None
    status = sync_status(client_db)
    assert status.withdrawal_pending
    assert live.storage.count_events() == 1
    pending = SettingsStore(client_db).get(WITHDRAWAL_PENDING_KEY)
    SettingsStore(client_db).set(WITHDRAWAL_PENDING_KEY, {**pending, "server_url": real_url})
    await run_sync(client_db, policy=fast_policy()[0])
    assert live.storage.count_events() == 0
    assert not sync_status(client_db).withdrawal_pending
    # A repeated request (reply lost) is answered "confirmed" by the tombstone; here the token is gone,
    # so finishing again has nothing to do.
    with pytest.raises(Exception, match="No withdrawal"):
        await finish_withdrawal(client_db)


def test_withdraw_command(live: LiveServer, client_db: Database, tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(cli, ["enroll", live.base_url, live.code(), "--data-dir", client_dir(tmp_path)]).exit_code == 0
    result = runner.invoke(cli, ["withdraw", "--data-dir", client_dir(tmp_path)], input="n\n")
    assert result.exit_code == 1  # declined: nothing happened
    assert StudyStore(client_db).current() is not None
    result = runner.invoke(cli, ["withdraw", "--yes", "--data-dir", client_dir(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "The server confirmed" in result.output
    assert [r["withdrawn_at"] is not None for r in live.storage.compliance()] == [True]
    result = runner.invoke(cli, ["sync", "--data-dir", client_dir(tmp_path)])
    assert result.exit_code == 1
    assert "not enrolled" in result.output
    assert "Traceback" not in result.output
    assert SettingsStore(client_db).get(LAST_SYNC_KEY) is None
