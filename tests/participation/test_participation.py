"""Participation without Textual: its states and what each allows, against a live collection server."""

from __future__ import annotations

from pathlib import Path

from sqlite_utils import Database

from studyapp.participation import Participation, ParticipationState
from studyapp.store.conversations import ConversationStore
from studyapp.store.outbox import OutboxStore
from studyapp.store.studies import StudyStore
from studyapp.study.protocol import protocol_from_dict
from studyapp.sync.client import SyncError
from tests.server import live as f
from tests.server.live import LiveServer
from tests.support.keyring import MemoryKeyring
from tests.sync.helpers import fast_policy

PATH = "studyapp.db"


async def test_not_enrolled_collects_and_syncs_nothing(db: Database, tmp_path: Path) -> None:
    participation = Participation(db, tmp_path / PATH)
    assert participation.state is ParticipationState.NOT_ENROLLED
    assert not participation.syncs and participation.records is None and participation.privacy is None
    assert participation.status_line() is None
    await participation.run_sync()  # returns at once: there is nothing to sync
    await participation.aclose()


async def test_enroll_consent_collect(db: Database, tmp_path: Path, live: LiveServer,
                                      memory_keyring: MemoryKeyring) -> None:
    participation = Participation(db, tmp_path / PATH)
    await participation.enroll(live.base_url, live.code())
    assert participation.state is ParticipationState.CONSENT_NEEDED
    assert participation.syncs and participation.records is not None
    assert "Consent needed" in (participation.status_line() or "")

    assert participation.privacy is not None
    record = participation.privacy.consent.grant(protocol_from_dict(StudyStore(db).current().protocol),  # type: ignore[union-attr]
                                                 f.ALL_CATEGORIES)
    participation.consented(record)
    assert participation.state is ParticipationState.ENROLLED

    conversation = ConversationStore(db).create()
    ConversationStore(db).add_message(conversation.id, "user", "I write to ada@example.com every week.")
    participation.records_written()
    await participation.flush()
    [message] = [e for e in OutboxStore(db).list() if e.kind == "message"]
    assert "ada@example.com" not in message.payload["content"], "only anonymized text reaches the outbox"
    await participation.aclose()


async def test_a_protocol_that_no_longer_validates(db: Database, tmp_path: Path, live: LiveServer,
                                                   memory_keyring: MemoryKeyring) -> None:
    participation = Participation(db, tmp_path / PATH)
    await participation.enroll(live.base_url, live.code())
    study = StudyStore(db).current()
    assert study is not None
    StudyStore(db).update_protocol(study.id, dict(study.protocol, comparisons={"probability": "often"}))
    participation.reload()
    assert participation.state is ParticipationState.PROTOCOL_UNUSABLE
    assert participation.enrolled and participation.syncs
    assert participation.records is None and participation.problem
    await participation.aclose()


async def test_a_withdrawal_the_server_did_not_confirm_is_pending_until_sync_sends_it(
        db: Database, tmp_path: Path, live: LiveServer, memory_keyring: MemoryKeyring) -> None:
    policy, _sleeps = fast_policy(max_attempts=2)  # retries without waiting
    participation = Participation(db, tmp_path / PATH, policy=policy)
    enrollment = await participation.enroll(live.base_url, live.code())
    study = StudyStore(db).current()
    assert study is not None
    # The server moved: the deletion request cannot be delivered now.
    with db.conn:
        db.execute("UPDATE studies SET server_url = 'http://127.0.0.1:9' WHERE id = ?", [study.id])
    try:
        await participation.withdraw()
    except SyncError:
        pass
    else:
        raise AssertionError("a withdrawal the server never heard of must not be reported as confirmed")
    assert participation.state is ParticipationState.WITHDRAWAL_PENDING
    assert participation.syncs and participation.records is None
    assert "withdrawal" in (participation.status_line() or "")

    # Reachable again: the pending request goes out with the next sync round.
    from studyapp.store.settings import SettingsStore
    from studyapp.sync.client import WITHDRAWAL_PENDING_KEY

    settings = SettingsStore(db)
    settings.set(WITHDRAWAL_PENDING_KEY, dict(settings.get(WITHDRAWAL_PENDING_KEY), server_url=live.base_url))
    rounds: list[object] = []

    def stop_after_first(round_: object) -> None:
        rounds.append(round_)
        participation.sync.stop()  # type: ignore[union-attr]

    await participation.run_sync(stop_after_first)
    assert participation.state is ParticipationState.NOT_ENROLLED
    tombstones = live.sql("SELECT participant_id FROM tombstones")
    assert [t[0] for t in tombstones] == [enrollment.participant_id]
    await participation.aclose()


async def test_enrolling_with_the_token_in_a_file_where_no_keyring_exists(db: Database, tmp_path: Path,
                                                                         live: LiveServer) -> None:
    import keyring
    import pytest
    from keyring.backends import fail

    from studyapp.secrets import get_participant_token, secrets_file

    previous = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    try:
        participation = Participation(db, tmp_path / PATH, policy=fast_policy()[0])
        code = live.code()
        with pytest.raises(SyncError, match="--store-token-in-file"):
            await participation.enroll(live.base_url, code)
        assert participation.state is ParticipationState.NOT_ENROLLED
        enrollment = await participation.enroll(live.base_url, code, store_token_in_file=True)
        assert enrollment.token_file == secrets_file()
        assert participation.state is ParticipationState.CONSENT_NEEDED
        token = get_participant_token(enrollment.study_id)
        assert token and live.storage.participant_for(token) == enrollment.participant_id
        await participation.withdraw()
        assert not secrets_file().exists()
        await participation.aclose()
    finally:
        keyring.set_keyring(previous)
