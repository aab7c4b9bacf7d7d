"""The chat app driven with Textual's pilot, talking to a real (scripted) OpenAI-compatible server."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from textual.command import CommandList, CommandPalette
from textual.pilot import Pilot
from textual.widgets import Checkbox, Input, Static
from textual.worker import Worker, WorkerState

from studyapp.store.conversations import ConversationStore
from studyapp.study.schedule import ComparisonScheduler
from studyapp.tui.app import StudyApp
from studyapp.tui.screens.chat import EXTRACT_GROUP, PAGE_SIZE, ChatScreen
from studyapp.tui.screens.comparison import ComparisonScreen
from studyapp.tui.screens.dialogs import ConfirmScreen, PromptScreen
from studyapp.tui.screens.labeling import LabelingScreen
from studyapp.tui.screens.memory import MemoryScreen
from studyapp.tui.screens.search import SearchScreen
from studyapp.tui.screens.settings import SettingsScreen
from studyapp.tui.widgets.composer import Composer
from studyapp.tui.widgets.conversation_list import ConversationList
from studyapp.tui.widgets.message_view import MessageView
from tests.support.keyring import MemoryKeyring
from tests.support.scripted_llm import ScriptedLLM
from tests.tui.helpers import MakeApp, press_button, toasts, wait_for, wait_for_toast

SIZE = (110, 36)




def never_compare(app: StudyApp) -> None:
    schedule = app.services.study.protocol.comparisons
    app.services.study.scheduler = ComparisonScheduler(dataclasses.replace(schedule, probability=0.0))


def always_compare(app: StudyApp) -> None:
    schedule = app.services.study.protocol.comparisons
    app.services.study.scheduler = ComparisonScheduler(
        dataclasses.replace(schedule, probability=1.0, min_turns_between=0))


def views(app: StudyApp) -> list[MessageView]:
    return list(app.screen.query(MessageView))


def store_of(app: StudyApp) -> ConversationStore:
    return app.services.conversations


async def test_type_send_and_stream_a_reply(make_app: MakeApp, scripted_llm: ScriptedLLM) -> None:
    scripted_llm.add_text("Try **overnight oats** with berries.")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press(*"breakfast ideas?")
        await pilot.press("enter")
        await app.workers.wait_for_complete()
        await pilot.pause()
        shown = [(v.message.role, v.message.content, v.message.status) for v in views(app)]
        assert shown == [("user", "breakfast ideas?", "complete"),
                         ("assistant", "Try **overnight oats** with berries.", "complete")]
        assert app.query_one(Composer).text == ""
        conversations = store_of(app).list()
        assert [c.title for c in conversations] == ["breakfast ideas?"]
        assert app.screen.query_one(ConversationList).titles == ["breakfast ideas?"]


async def test_ctrl_j_adds_a_line_and_enter_sends_the_whole_message(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("a", "ctrl+j", "b")
        assert app.query_one(Composer).text == "a\nb"
        await pilot.press("enter")
        await app.workers.wait_for_complete()
        conversation = store_of(app).list()[0]
        assert store_of(app).messages(conversation.id)[0].content == "a\nb"


async def test_escape_stops_the_reply_and_keeps_what_arrived(make_app: MakeApp,
                                                             scripted_llm: ScriptedLLM) -> None:
    reply = scripted_llm.add_text("one two three four five", hold_after=2)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press(*"count", "enter")
        await reply.wait_held_async()
        await wait_for(pilot, lambda: len(views(app)) == 2 and views(app)[1].message.content == "one two",
                       what="the first two words on screen")
        await pilot.press("escape")
        await app.workers.wait_for_complete()
        await pilot.pause()
        reply.release()
        assistant = views(app)[1]
        assert assistant.message.status == "interrupted"
        assert assistant.has_class("-interrupted")
        conversation = store_of(app).list()[0]
        stored = store_of(app).messages(conversation.id)
        assert [(m.content, m.status) for m in stored] == [("count", "complete"), ("one two", "interrupted")]


async def test_sending_while_a_reply_streams_keeps_the_draft(make_app: MakeApp,
                                                             scripted_llm: ScriptedLLM) -> None:
    reply = scripted_llm.add_text("slow answer here", hold_after=1)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press(*"first", "enter")
        await reply.wait_held_async()
        await pilot.press(*"second", "enter")
        assert app.query_one(Composer).text == "second"
        reply.release()
        await app.workers.wait_for_complete()


async def test_server_error_is_shown_and_the_conversation_stays(make_app: MakeApp,
                                                                scripted_llm: ScriptedLLM) -> None:
    scripted_llm.add_error(500, {"error": {"message": "model crashed"}})
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press(*"hello", "enter")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assistant = views(app)[1]
        assert assistant.has_class("-error")
        assert "model crashed" in str(assistant.query_one(".note").render())
        assert [m.content for m in store_of(app).messages(store_of(app).list()[0].id)] == ["hello", ""]


async def test_switching_conversations_shows_each_ones_messages(make_app: MakeApp) -> None:
    app = make_app()
    store = store_of(app)
    older = store.create("Gardening")
    store.add_message(older.id, "user", "When do I plant garlic?")
    newer = store.create("Taxes")
    store.add_message(newer.id, "user", "Deadline for filing?")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, ChatScreen) and app.screen.conversation_id == newer.id
        assert [v.message.content for v in views(app)] == ["Deadline for filing?"]
        conversation_list = app.query_one(ConversationList)
        conversation_list.focus()
        await pilot.press("down", "enter")
        await pilot.pause()
        assert app.screen.conversation_id == older.id
        assert [v.message.content for v in views(app)] == ["When do I plant garlic?"]
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert app.screen.conversation_id is None and views(app) == []


async def test_search_jumps_to_the_hit(make_app: MakeApp) -> None:
    app = make_app()
    store = store_of(app)
    target = store.create("Trip")
    for i in range(120):
        store.add_message(target.id, "user", f"filler message {i}")
    hit_message = store.add_message(target.id, "user", "the ferry to Tangier leaves at nine")
    for i in range(120):
        store.add_message(target.id, "user", f"later message {i}")
    other = store.create("Other")
    store.add_message(other.id, "user", "unrelated")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+f")
        assert isinstance(app.screen, SearchScreen)
        await pilot.press(*"tangier")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ChatScreen), what="the search to close")
        await pilot.pause()
        assert app.screen.conversation_id == target.id
        hits = [v for v in views(app) if v.has_class("-hit")]
        assert [v.message.id for v in hits] == [hit_message.id]
        assert len(views(app)) <= PAGE_SIZE + 1


async def test_search_without_matches_says_so(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+f", *"nothinglikethis")
        screen = app.screen
        assert isinstance(screen, SearchScreen)
        screen.run_search("nothinglikethis")
        await pilot.pause()
        assert "No messages match" in str(screen.query_one("#search-status").render())
        await pilot.press("escape")
        assert isinstance(app.screen, ChatScreen)


async def test_rename_and_delete_with_confirmation(make_app: MakeApp) -> None:
    app = make_app()
    store = store_of(app)
    keep = store.create("Keep me")
    store.add_message(keep.id, "user", "x")
    doomed = store.create("Old title")
    store.add_message(doomed.id, "user", "y")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+e")
        await wait_for(pilot, lambda: isinstance(app.screen, PromptScreen), what="the rename dialog")
        app.screen.query_one(Input).value = "Plans for June"
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ChatScreen), what="the rename to finish")
        await pilot.pause()
        assert store.get(doomed.id).title == "Plans for June"  # type: ignore[union-attr]
        # Declining keeps the conversation.
        await pilot.press("ctrl+d")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the confirmation")
        await pilot.press("n")
        await pilot.pause()
        assert store.get(doomed.id) is not None
        await pilot.press("ctrl+d")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the confirmation")
        await pilot.press("y")
        await wait_for(pilot, lambda: store.get(doomed.id) is None, what="the deletion")
        await pilot.pause()
        assert app.screen.conversation_id == keep.id
        assert app.screen.query_one(ConversationList).titles == ["Keep me"]


async def test_command_palette_runs_our_commands(make_app: MakeApp) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+p")
        await wait_for(pilot, lambda: isinstance(app.screen, CommandPalette), what="the command palette")
        await pilot.press(*"Search messages")
        results = app.screen.query_one(CommandList)
        await wait_for(pilot, lambda: results.option_count > 0 and results.highlighted is not None,
                       what="palette results")
        assert "Search messages" in str(results.get_option_at_index(results.highlighted or 0).prompt)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, SearchScreen), what="the search screen")


async def test_a_long_conversation_opens_one_page_at_a_time(make_app: MakeApp) -> None:
    app = make_app()
    store = store_of(app)
    conversation = store.create("Long")
    rows = [(f"id-{i}", conversation.id, "user" if i % 2 == 0 else "assistant", f"message number {i}", "complete",
             "2026-01-01T00:00:00", "2026-01-01T00:00:00") for i in range(10_000)]
    with store.db.conn:
        store.db.conn.executemany(
            "INSERT INTO messages (id, conversation_id, role, content, status, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        shown = views(app)
        assert len(shown) == PAGE_SIZE
        assert shown[-1].message.content == "message number 9999"
        assert app.screen.query("#load-earlier")
        await pilot.press("ctrl+b")
        await pilot.pause()
        shown = views(app)
        assert len(shown) == 2 * PAGE_SIZE
        assert shown[0].message.content == f"message number {10_000 - 2 * PAGE_SIZE}"


async def test_settings_validate_and_keep_the_api_key_in_the_keyring(
    make_app: MakeApp, memory_keyring: MemoryKeyring, tmp_path: Path
) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+o")
        await wait_for(pilot, lambda: isinstance(app.screen, SettingsScreen), what="the settings")
        screen = app.screen
        await pilot.click("#remote")
        await pilot.pause()
        assert not screen.query_one("#base_url", Input).disabled
        screen.query_one("#base_url", Input).value = "not a url"
        screen.query_one("#model", Input).value = "llama3"
        await press_button(pilot, "#save")
        assert "must start with http" in str(screen.query_one("#settings-error").render())
        screen.query_one("#base_url", Input).value = "http://127.0.0.1:9/v1"
        screen.query_one("#api_key", Input).value = "sk-test-SECRET-4242"
        await press_button(pilot, "#save")
        await wait_for(pilot, lambda: isinstance(app.screen, ChatScreen), what="the settings to close")
        settings = app.services.model_settings()
        assert (settings.model, settings.base_url) == ("llama3", "http://127.0.0.1:9/v1")
        assert memory_keyring.passwords[("studyapp", "api_key:default")] == "sk-test-SECRET-4242"
    app.services.app_ctx.close()
    for path in (tmp_path / "data").rglob("*"):
        if path.is_file():
            assert b"SECRET-4242" not in path.read_bytes(), f"the API key leaked into {path}"


async def test_memory_shapes_replies_is_shown_and_grows_in_the_background(
    make_app: MakeApp, scripted_llm: ScriptedLLM
) -> None:
    app = make_app(extract_debounce_s=0)
    memory = app.services.memory
    vegetarian = memory.add("The user is vegetarian")

    def answer(body: dict) -> object:
        system = body["messages"][0]["content"]
        response_format = body.get("response_format") or {}
        schema = json.dumps(response_format)
        if '"use"' in schema:  # stage 2, selection
            return {"decisions": [{"id": 1, "use": True, "rationale": "a food request"}]}
        if '"attributes"' in schema:  # stage 1, extraction
            return {"attributes": [{"statement": "The user cooks for two", "reason": "they said so",
                                    "confidence": 0.9, "evidence": [1]}]}
        if '"action"' in schema:  # reconciliation with memory
            return {"decisions": [{"new": 1, "action": "add", "reason": "new fact"}]}
        return f"Reply to: {body['messages'][-1]['content']} ({'personal' if 'vegetarian' in system else 'generic'})"

    scripted_llm.set_default(answer)
    never_compare(app)
    async with app.run_test(size=SIZE) as pilot:
        assert isinstance(app.screen, ChatScreen)
        await pilot.press(*"I cook for two, dinner ideas?", "enter")
        await wait_for(pilot, lambda: len(views(app)) == 2 and views(app)[1].message.status == "complete",
                       what="the reply")
        reply_view = views(app)[1]
        assert reply_view.message.content.endswith("(personal)")
        assert "The user is vegetarian" in str(reply_view.query_one(".used").render())
        await wait_for(pilot, lambda: len(memory.attributes()) == 2, what="extraction to add an attribute")
        assert {a.text for a in memory.attributes()} == {"The user is vegetarian", "The user cooks for two"}
        await pilot.press("f2")
        await wait_for(pilot, lambda: isinstance(app.screen, MemoryScreen), what="the memory screen")
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, ChatScreen), what="back to the chat")
        # A conversation with memory off uses nothing from memory and teaches it nothing.
        await app.screen.action_new_private_conversation()
        await pilot.press(*"more dinner ideas", "enter")
        await wait_for(pilot, lambda: len(views(app)) == 2 and views(app)[1].message.status == "complete",
                       what="the private reply")
        assert views(app)[1].message.content.endswith("(generic)")
        conversation = store_of(app).get(app.screen.conversation_id or "")
        assert conversation is not None and not conversation.memory_enabled
    assert vegetarian.id in {a.id for a in memory.attributes()}


async def test_a_new_message_cancels_the_pending_extraction(make_app: MakeApp, scripted_llm: ScriptedLLM) -> None:
    app = make_app(extract_debounce_s=60)  # longer than the test: the extraction is still waiting
    never_compare(app)

    def extractions() -> list[Worker[None]]:
        return [w for w in app.workers if w.group == EXTRACT_GROUP]

    async with app.run_test(size=SIZE) as pilot:
        await pilot.press(*"first", "enter")
        await wait_for(pilot, lambda: any(w.is_running for w in extractions()), what="the extraction to wait")
        [waiting] = extractions()
        await pilot.press(*"second", "enter")
        await wait_for(pilot, lambda: [v.message.status for v in views(app)] == ["complete"] * 4,
                       what="the second reply")
        assert waiting.state == WorkerState.CANCELLED
        assert [w.is_running for w in extractions()] == [True], "the second reply waits for its own pause"
        assert not [r for r in scripted_llm.requests if r.get("response_format")], "no extraction ran"


async def test_a_comparison_turn_is_blinded_rated_and_continues_with_the_chosen_answer(
    make_app: MakeApp, scripted_llm: ScriptedLLM
) -> None:
    app = make_app()
    app.services.memory.add("The user is vegetarian")

    def answer(body: dict) -> object:
        schema = json.dumps(body.get("response_format") or {})
        if '"use"' in schema:
            return {"decisions": [{"id": 1, "use": True, "rationale": "a food request"}]}
        if body.get("response_format"):
            return {"attributes": []}
        system = body["messages"][0]["content"]
        return "Lentil curry tonight." if "vegetarian" in system else "Roast chicken tonight."

    scripted_llm.set_default(answer)
    always_compare(app)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press(*"what should I cook?", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ComparisonScreen) and app.screen.step == "rate",
                       what="both answers shown")
        screen = app.screen
        assert isinstance(screen, ComparisonScreen)
        shown = {screen.outcome.left_text, screen.outcome.right_text}  # type: ignore[union-attr]
        assert shown == {"Lentil curry tonight.", "Roast chicken tonight."}
        await pilot.press("1")  # Response 1 much better
        while screen.step == "relevance":
            await pilot.press("y")
        if screen.step == "comment":
            await pilot.press("enter")
        await wait_for(pilot, lambda: screen.step == "continue", what="the continue question")
        await pilot.press("1")  # Response 1 continues the conversation
        await wait_for(pilot, lambda: isinstance(app.screen, ChatScreen), what="back to the chat")
        await pilot.pause()
        [record] = app.services.study.comparisons.list()
        left_is_personal = record.personalized_side == "left"
        row = store_of(app).db.execute("SELECT rating, chosen FROM ratings WHERE comparison_id = ?",
                                       [record.id]).fetchone()
        # Stored from the personalized arm's point of view, whichever side it was shown on.
        assert row == ((5, "personalized") if left_is_personal else (1, "generic"))
        thread = [v.message.content for v in views(app)]
        assert thread == ["what should I cook?",
                          "Lentil curry tonight." if left_is_personal else "Roast chicken tonight."]


STATEMENTS = ["The user has a dog", "The user lives in a flat", "The user works from home"]


def learns_three_things(body: dict) -> object:
    """The scripted model: every extraction finds the three STATEMENTS (enough for the study's reviews)."""
    schema = json.dumps(body.get("response_format") or {})
    if '"attributes"' in schema:
        return {"attributes": [{"statement": s, "reason": "they said so", "confidence": 0.8, "evidence": [1]}
                               for s in STATEMENTS]}
    if '"action"' in schema:
        return {"decisions": [{"new": i, "action": "add", "reason": "new"} for i in range(1, 4)]}
    if '"use"' in schema:
        return {"decisions": []}
    return "Noted."


def app_with_a_message_to_learn_from(make_app: MakeApp, scripted_llm: ScriptedLLM) -> StudyApp:
    scripted_llm.set_default(learns_three_things)
    app = make_app(extract_debounce_s=0)
    never_compare(app)
    conversation = store_of(app).create("Home")
    store_of(app).add_message(conversation.id, "user", "my dog hates my flat when I work from home")
    return app


async def learn(pilot: Pilot[None], chat: ChatScreen) -> None:
    """Run the background extraction now (the app was made without debounce) and wait until it is over, or
    something came up in front of the chat."""
    extraction = chat.extract_later(chat.conversation_id)
    await wait_for(pilot, lambda: extraction.is_finished or pilot.app.screen is not chat, what="the extraction")


def label_rows(app: StudyApp) -> list[tuple[str, str]]:
    return store_of(app).db.execute("SELECT label, source FROM attribute_labels ORDER BY labeled_at").fetchall()


def status_text(chat: ChatScreen) -> str:
    return str(chat.query_one("#status", Static).render())


@pytest.mark.parametrize("typed_before", ["", "3 kids"], ids=["starts-typing-after", "typing-across"])
async def test_reviews_falling_due_while_the_participant_types_never_take_the_keyboard(
    make_app: MakeApp, scripted_llm: ScriptedLLM, typed_before: str
) -> None:
    text = "3 kids and 1 dog"
    app = app_with_a_message_to_learn_from(make_app, scripted_llm)
    async with app.run_test(size=SIZE) as pilot:
        chat = app.screen
        assert isinstance(chat, ChatScreen)
        composer = chat.query_one(Composer)
        await pilot.press(*typed_before)
        await learn(pilot, chat)
        assert app.services.labeling_plan().due, "the study's reviews fell due"
        await pilot.press(*text.removeprefix(typed_before))
        await pilot.pause()
        # Every keystroke reached the message; none answered a question the participant never saw.
        assert label_rows(app) == []
        assert app.screen is chat and app.focused is composer
        assert composer.text == text
        await pilot.press("enter")
        await wait_for(pilot, lambda: [v.message.status for v in views(app)][-2:] == ["complete", "complete"],
                       what="the reply")
        await app.workers.wait_for_complete()  # the extraction after the reply, too
        await pilot.pause()
        assert [v.message.content for v in views(app) if v.message.role == "user"][-1] == text
        assert label_rows(app) == [] and app.screen is chat


async def test_the_participant_opens_the_review_and_labels_record_where_they_were_given(
    make_app: MakeApp, scripted_llm: ScriptedLLM
) -> None:
    app = app_with_a_message_to_learn_from(make_app, scripted_llm)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        chat = app.screen
        assert isinstance(chat, ChatScreen)
        assert "Label what the assistant learned" in [c.title for c in app.get_system_commands(chat)]
        await pilot.press("f4")
        await wait_for_toast(pilot, lambda t: t.startswith("Nothing to label now"), what="nothing to label")
        assert app.screen is chat

        await learn(pilot, chat)
        assert app.screen is chat
        assert "3 attributes to label" in status_text(chat) and "press F4" in status_text(chat)
        chat.announce_labeling()  # e.g. after the next extraction: said once, not again
        # Notifications are shown in the order they were made: once this one is up, a second one would be too.
        app.notify("(test: shown after the announcements)")
        await wait_for_toast(pilot, lambda t: t.startswith("(test:"), what="the notifications so far")
        assert len([t for t in toasts(app) if t.startswith("About you\n")]) == 1

        # A click on the status line opens it; Esc leaves it for later.
        await pilot.click("#status")
        await wait_for(pilot, lambda: isinstance(app.screen, LabelingScreen), what="the review")
        app.screen.grace_s = 0  # type: ignore[attr-defined]
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is chat, what="back to the chat")
        assert label_rows(app) == []

        await pilot.press("f4")
        await wait_for(pilot, lambda: isinstance(app.screen, LabelingScreen), what="the review")
        app.screen.grace_s = 0  # type: ignore[attr-defined]
        await pilot.press("1", "2", "3")
        await wait_for(pilot, lambda: app.screen is chat, what="the review to finish")
        assert app.focused is chat.query_one(Composer)
        labels = {a.text: a.label for a in app.services.memory.attributes()}
        assert labels == {"The user has a dog": "makes_sense", "The user lives in a flat": "maybe",
                          "The user works from home": "doesnt_make_sense"}
        assert label_rows(app) == [("makes_sense", "label_prompt"), ("maybe", "label_prompt"),
                                   ("doesnt_make_sense", "label_prompt")]
        assert "to label" not in status_text(chat) and "press F4" not in status_text(chat)

        await pilot.press("f2")
        await wait_for(pilot, lambda: isinstance(app.screen, MemoryScreen), what="the memory screen")
        await pilot.pause()
        await pilot.press("2")
        await pilot.pause()
        assert label_rows(app)[-1] == ("maybe", "memory_screen")


async def test_settings_without_a_keyring_say_the_key_was_not_saved(make_app: MakeApp,
                                                                    tmp_path: Path) -> None:
    import keyring
    from keyring.backends import fail

    previous = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    try:
        app = make_app()
        async with app.run_test(size=SIZE, notifications=True) as pilot:
            await pilot.press("ctrl+o")
            await wait_for(pilot, lambda: isinstance(app.screen, SettingsScreen), what="the settings")
            screen = app.screen
            assert "STUDYAPP_API_KEY" in str(screen.query_one(".warning").render())
            await pilot.click("#remote")
            await pilot.pause()
            screen.query_one("#base_url", Input).value = "http://127.0.0.1:9/v1"
            screen.query_one("#model", Input).value = "llama3"
            screen.query_one("#api_key", Input).value = "sk-UNSAVED-777"
            await press_button(pilot, "#save")
            await wait_for(pilot, lambda: isinstance(app.screen, ChatScreen), what="the settings to close")
            await wait_for_toast(pilot, lambda t: "NOT saved" in t and "STUDYAPP_API_KEY" in t,
                                 what="the key was not saved")
            assert app.services.model_settings().model == "llama3"
        app.services.app_ctx.close()
    finally:
        keyring.set_keyring(previous)
    for path in (tmp_path / "data").rglob("*"):
        if path.is_file():
            assert b"UNSAVED-777" not in path.read_bytes()


async def test_upload_status_names_rejected_events_and_their_reasons(make_app: MakeApp) -> None:
    from studyapp.store.outbox import OutboxStore
    from studyapp.study.current import save_enrollment
    from studyapp.study.protocol import load_protocol

    app = make_app()
    db = app.services.app_ctx.db
    protocol = load_protocol(Path(__file__).parents[2] / "examples" / "study.toml")
    save_enrollment(db, protocol, participant_id="p-1", server_url="http://127.0.0.1:9")
    outbox = OutboxStore(db)
    event = outbox.add(study_id=protocol.id, kind="message", category="conversation_text",
                       payload={}, consent_version="1", approved=True)
    outbox.reject(event, "field 'content' is missing")
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        app.screen.action_sync_status()
        note = await wait_for_toast(pilot, lambda t: t.startswith("Uploads\n"), what="the upload status")
        assert "1 rejected" in note and "field 'content' is missing" in note


async def test_without_a_keyring_the_api_key_goes_to_a_private_file_when_the_participant_ticks_it(
        make_app: MakeApp, tmp_path: Path) -> None:
    import keyring
    from keyring.backends import fail

    from studyapp.secrets import get_api_key, secrets_file

    previous = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    try:
        app = make_app()
        async with app.run_test(size=SIZE, notifications=True) as pilot:
            await pilot.press("ctrl+o")
            await wait_for(pilot, lambda: isinstance(app.screen, SettingsScreen), what="the settings")
            screen = app.screen
            await pilot.click("#remote")
            await pilot.pause()
            screen.query_one("#base_url", Input).value = "http://127.0.0.1:9/v1"
            screen.query_one("#model", Input).value = "llama3"
            screen.query_one("#api_key", Input).value = "sk-IN-FILE-888"
            screen.query_one("#api-key-in-file", Checkbox).value = True
            await press_button(pilot, "#save")
            await wait_for(pilot, lambda: isinstance(app.screen, ChatScreen), what="the settings to close")
            await wait_for_toast(pilot, lambda t: str(secrets_file()) in t, what="where the key is kept")
            assert get_api_key("default") == "sk-IN-FILE-888"
            assert secrets_file().stat().st_mode & 0o077 == 0
        app.services.app_ctx.close()
    finally:
        keyring.set_keyring(previous)
    for path in (tmp_path / "data").rglob("*"):
        if path.is_file():
            assert b"IN-FILE-888" not in path.read_bytes()
