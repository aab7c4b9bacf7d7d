"""Taking part in a study from the app: join with a code, consent, chat, review what leaves, and it arrives
anonymized on a real collection server (uvicorn on 127.0.0.1)."""

from __future__ import annotations

from collections.abc import Callable

from textual.widgets import Checkbox, Input

from studyapp.tui.app import StudyApp
from studyapp.tui.screens.chat import ChatScreen
from studyapp.tui.screens.consent import ConsentScreen
from studyapp.tui.screens.dialogs import ConfirmScreen
from studyapp.tui.screens.enroll import EnrollScreen
from studyapp.tui.screens.review import ReviewScreen
from studyapp.tui.widgets.message_view import MessageView
from tests.privacy.scan import scan_for_secrets
from tests.server.live import LiveServer, live, server_db  # noqa: F401
from tests.support.keyring import MemoryKeyring
from tests.support.postgres import pg_cluster, pg_url  # noqa: F401
from tests.support.scripted_llm import ScriptedLLM
from tests.tui.helpers import wait_for

SIZE = (110, 40)


def consent_shown(app: StudyApp) -> bool:
    """The consent screen is pushed *and* composed (its widgets can be queried, the nested terms field too)."""
    return (isinstance(app.screen, ConsentScreen) and bool(app.screen.query("#consent-error"))
            and bool(app.screen.query("#terms-input")))


async def test_join_consent_chat_review_and_upload(make_app: Callable[[], StudyApp], scripted_llm: ScriptedLLM,
                                                   live: LiveServer, memory_keyring: MemoryKeyring) -> None:
    scripted_llm.set_default("Nice to meet you.")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        assert isinstance(screen, ChatScreen)
        screen.action_enroll()
        await wait_for(pilot, lambda: isinstance(app.screen, EnrollScreen), what="the enrollment dialog")
        app.screen.query_one("#url", Input).value = live.base_url
        app.screen.query_one("#code", Input).value = live.code()
        app.screen.query_one("#code", Input).focus()
        await pilot.press("enter")
        await wait_for(pilot, lambda: consent_shown(app), what="the consent document",
                       timeout=20)
        consent = app.screen
        for box in consent.query(Checkbox):
            if box.id and box.id.startswith("cat-"):
                box.value = True
        # The employer the scrubber would not find, named at consent as a term to always remove.
        consent.query_one("#terms-input", Input).value = "Brightwave"
        consent.action_accept()
        await wait_for(pilot, lambda: isinstance(app.screen, ChatScreen), what="back to the chat")
        assert app.services.enrolled
        assert memory_keyring.passwords, "the participant token is in the keyring"
        [token] = memory_keyring.passwords.values()

        await pilot.press(*"My name is Alice Johnson, I work at Brightwave, write to alice.johnson@example.com",
                          "enter")
        await wait_for(pilot, lambda: [v.message.status for v in app.screen.query(MessageView)] ==
                       ["complete", "complete"], what="the reply", timeout=30)
        await app.services.participation.flush()
        await pilot.press("f3")
        await wait_for(pilot, lambda: isinstance(app.screen, ReviewScreen), what="the review screen")
        await pilot.press("A")  # approve everything shown
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, ChatScreen), what="back to the chat")
        await wait_for(pilot, lambda: live.count_records("message") >= 2, what="the upload", timeout=30)
        contents = [payload["content"] for _, payload in live.storage.records("message")]

        # The study publishes a new consent text: the app takes it on at its next sync and asks again.
        from tests.sync.test_protocol_updates import VERSION_2, publish

        publish(live, VERSION_2)
        app.screen.nudge_sync()
        await wait_for(pilot, lambda: consent_shown(app), what="the new consent", timeout=30)
        assert app.screen.document.version == "2"
        app.screen.action_accept()
        await wait_for(pilot, lambda: isinstance(app.screen, ChatScreen), what="back to the chat")
        assert not app.services.participation.needs_consent()

        # Withdrawing from the app: confirmed, and the server keeps nothing of this participant's records.
        app.screen.action_withdraw()
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the withdrawal question")
        await pilot.press("y")
        await wait_for(pilot, lambda: not app.services.enrolled, what="the withdrawal", timeout=30)
        assert live.count_records("message") == 0
        assert app.services.app_ctx.db.execute("SELECT count(*) FROM outbox").fetchone()[0] == 0

    assert any("Nice to meet you." in c for c in contents)
    [mine] = [c for c in contents if "write to" in c]
    assert "Alice" not in mine and "alice.johnson@example.com" not in mine and "Brightwave" not in mine
    assert "<PERSON_1>" in mine and "<TERM_1>" in mine
    # After the whole session, the participant token is nowhere under the data dir (any encoding).
    app.services.app_ctx.close()
    assert scan_for_secrets(app.services.app_ctx.data_dir, {"participant token": token}) == []


async def test_without_a_keyring_the_participant_can_choose_to_keep_the_token_in_a_file(
        make_app: Callable[[], StudyApp], live: LiveServer) -> None:
    import keyring
    from keyring.backends import fail

    from studyapp.secrets import get_participant_token, secrets_file

    previous = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    try:
        app = make_app()
        async with app.run_test(size=SIZE) as pilot:
            code = live.code()
            app.screen.action_enroll()
            await wait_for(pilot, lambda: isinstance(app.screen, EnrollScreen), what="the enrollment dialog")
            dialog = app.screen
            dialog.query_one("#url", Input).value = live.base_url
            dialog.query_one("#code", Input).value = code
            dialog.query_one("#code", Input).focus()
            await pilot.press("enter")
            # Not ticked: refused before the code is spent, and the dialog says what to tick.
            await wait_for(pilot, lambda: "Keep the token in a file" in str(dialog.query_one("#enroll-error")
                                                                              .render()), what="the refusal")
            assert live.storage.code_counts()["used"] == 0 and not secrets_file().exists()
            dialog.query_one("#token-in-file", Checkbox).value = True
            dialog.query_one("#code", Input).focus()
            await pilot.press("enter")
            await wait_for(pilot, lambda: consent_shown(app), what="the consent document", timeout=20)
            assert app.services.enrolled
            study_id = app.services.study.protocol.id
            token = get_participant_token(study_id)
            assert token and live.storage.participant_for(token) is not None
            assert secrets_file().stat().st_mode & 0o077 == 0
        app.services.app_ctx.close()
    finally:
        keyring.set_keyring(previous)
