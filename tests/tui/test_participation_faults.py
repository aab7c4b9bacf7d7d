"""Taking part when something is off: a withdrawal the server has not confirmed, a stored protocol that no
longer validates. Nothing goes silent: the app says what is wrong and keeps trying (live server, pilot)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from studyapp.context import AppContext
from studyapp.store.collect_queue import CollectQueue
from studyapp.store.conversations import ConversationStore
from studyapp.store.outbox import OutboxStore
from studyapp.store.studies import StudyStore
from studyapp.sync.withdraw import begin_withdrawal
from studyapp.tui.app import StudyApp
from studyapp.tui.services import Services
from tests.server.live import LiveServer, live, sqlite_server_db  # noqa: F401
from tests.support.keyring import MemoryKeyring
from tests.sync.helpers import enroll_and_consent
from tests.tui.helpers import wait_for

SIZE = (110, 40)


def status_text(app: StudyApp) -> str:
    return str(app.screen.query_one("#status").render())


async def test_a_withdrawal_the_server_has_not_confirmed_is_retried_at_start(
        make_app: Callable[[], StudyApp], live: LiveServer, memory_keyring: MemoryKeyring, tmp_path: Path) -> None:
    app_ctx = AppContext.create(tmp_path / "data")
    enrollment = await enroll_and_consent(app_ctx.db, live)
    begin_withdrawal(app_ctx.db)  # withdrawn here; the app was closed before the server could be told
    services = Services(app_ctx)
    assert not services.enrolled
    assert "Sync: withdrawal: waiting for the server" in services.status_parts()
    await services.aclose()
    app_ctx.close()

    def tombstones() -> int:
        return live.storage.conn.execute("SELECT count(*) FROM tombstones WHERE participant_id = ?",
                                         [enrollment.participant_id]).fetchone()[0]

    assert tombstones() == 0
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: tombstones() == 1, what="the server confirming the withdrawal", timeout=20)
        await wait_for(pilot, lambda: "withdrawal" not in status_text(app), what="the status line")
        assert "not enrolled" in status_text(app)
    assert live.storage.count_records("consent") == 0, "the server deleted the participant's records"


async def test_an_unusable_stored_protocol_is_said_and_replaced_from_the_server_with_nothing_lost(
        make_app: Callable[[], StudyApp], live: LiveServer, memory_keyring: MemoryKeyring, tmp_path: Path) -> None:
    app_ctx = AppContext.create(tmp_path / "data")
    await enroll_and_consent(app_ctx.db, live)
    study = StudyStore(app_ctx.db).current()
    assert study is not None
    broken = dict(study.protocol, comparisons=dict(study.protocol["comparisons"], probability=3))
    StudyStore(app_ctx.db).update_protocol(study.id, broken)
    conversations = ConversationStore(app_ctx.db)
    conversation = conversations.create()
    conversations.add_message(conversation.id, "user", "Written while the protocol could not be used.")

    services = Services(app_ctx)
    assert services.enrolled, "a protocol that does not validate leaves the install enrolled"
    assert services.participation.problem and "probability" in services.participation.problem
    assert "cannot be used" in services.status_parts()[0]
    assert services.participation.records is None, "nothing passes the gate under a protocol that cannot be read"
    await services.aclose()
    assert CollectQueue(app_ctx.db).count() == 1, "the message waits in the intake"
    app_ctx.close()

    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        # Background sync asks the server for the protocol, stores the valid one, and the waiting message
        # goes through the gate and up.
        await wait_for(pilot, lambda: app.services.participation.problem is None, what="a valid protocol", timeout=20)
        outbox = OutboxStore(app.services.app_ctx.db)
        await wait_for(pilot, lambda: any(e.kind == "message" for e in outbox.list()) or
                       live.storage.count_records("message") == 1, what="the message queued", timeout=20)
        app.screen.nudge_sync()  # type: ignore[attr-defined]
        await wait_for(pilot, lambda: live.storage.count_records("message") == 1, what="the upload", timeout=20)
