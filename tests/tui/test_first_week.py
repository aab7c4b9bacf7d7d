"""The rough edges a participant meets in their first week: what the screens say, and that they do it."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Input, RadioSet

from studyapp.context import AppContext
from studyapp.domain import AttributeChange, NewAttribute
from studyapp.tui.app import StudyApp
from studyapp.tui.screens.chat import ChatScreen
from studyapp.tui.screens.settings import SettingsScreen
from studyapp.tui.widgets.message_view import MessageView
from tests.support.keyring import MemoryKeyring
from tests.support.scripted_llm import ScriptedLLM
from tests.tui.helpers import MakeApp, press_button, screen_lines, text_in, wait_for, wait_for_toast

SIZE = (110, 36)
SMALL = (80, 24)




# Settings: the participant's choice wins over --model/--base-url for the rest of the run -------------------------

async def test_settings_choice_overrides_the_command_line_for_this_run(
    tmp_path: Path, scripted_llm: ScriptedLLM, memory_keyring: MemoryKeyring
) -> None:
    # Started as `studyapp --model gone --base-url http://127.0.0.1:9/v1`: nothing answers there.
    app_ctx = AppContext.create(tmp_path / "data", model="gone", base_url="http://127.0.0.1:9/v1")
    app = StudyApp(app_ctx, extract_debounce_s=None)
    scripted_llm.add_text("Hello from the chosen model.")
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await pilot.press("ctrl+o")
        await wait_for(pilot, lambda: isinstance(app.screen, SettingsScreen), what="the settings")
        screen = app.screen
        assert isinstance(screen.focused, RadioSet) and screen.focused.id == "kind", screen.focused
        screen.query_one("#base_url", Input).value = scripted_llm.base_url
        screen.query_one("#model", Input).value = scripted_llm.model
        await press_button(pilot, "#save")
        await wait_for(pilot, lambda: isinstance(app.screen, ChatScreen), what="the settings to close")
        notice = await wait_for_toast(pilot, lambda t: "Now chatting with" in t, what="the settings notice")
        assert f"{scripted_llm.model} at {scripted_llm.base_url}" in notice
        assert "--model" in notice and "rest of this run" in notice
        settings = app.services.model_settings()
        assert (settings.model, settings.base_url) == (scripted_llm.model, scripted_llm.base_url)
        await pilot.press(*"hi", "enter")
        await app.workers.wait_for_complete()
        await pilot.pause()
        replies = [v.message for v in app.screen.query(MessageView) if v.message.role == "assistant"]
        assert [(m.content, m.status) for m in replies] == [("Hello from the chosen model.", "complete")]


# Nothing is cut off at 80×24 -------------------------------------------------------------------------------------

LONG_ATTRIBUTE = "The user is vegetarian and cooks for a family of four every evening"


def footer_missing(app: StudyApp) -> list[str]:
    """The footer's bindings (key and description) that do not fit on its row."""
    footer = " ".join(screen_lines(app)[-1].split())
    shown = [b for _, b, enabled, _ in app.screen.active_bindings.values() if b.show and enabled]
    return [f"{b.key} {b.description}" for b in shown
            if f"{app.get_key_display(b)} {b.description}" not in footer]


async def test_dialogs_help_and_footers_are_whole_at_80_by_24(make_app: MakeApp) -> None:
    from studyapp.study.current import save_enrollment
    from studyapp.study.protocol import load_protocol
    from studyapp.tui.screens.dialogs import ConfirmScreen
    from studyapp.tui.screens.labeling import LabelingScreen
    from studyapp.tui.screens.memory import HELP as MEMORY_HELP
    from studyapp.tui.screens.memory import MemoryScreen
    from studyapp.tui.screens.review import HELP as REVIEW_HELP
    from studyapp.tui.screens.review import ReviewScreen

    app = make_app()
    app.services.memory.store.apply_changes(
        [AttributeChange("add", "extracted", new=NewAttribute(text, "You said so while asking for recipes", 0.8, []))
         for text in (LONG_ATTRIBUTE, "The user has a dog", "The user lives in a flat")], actor="model")
    async with app.run_test(size=SMALL) as pilot:
        chat = app.screen
        await pilot.pause()
        assert text_in(app, "#empty-hint") == ("Chatting with embedded SmolLM2-135M-Instruct (offline). "
                                               "Type a message and press Enter.")
        assert footer_missing(app) == []

        await pilot.press("f4")
        await wait_for(pilot, lambda: isinstance(app.screen, LabelingScreen), what="the label prompt")
        await pilot.pause()
        shown = text_in(app, ".dialog")
        for button in ("1 Makes sense", "2 Maybe", "3 Doesn't make sense", "Later (Esc)"):
            assert button in shown, (button, shown)
        app.pop_screen()

        await pilot.press("f2")
        await wait_for(pilot, lambda: isinstance(app.screen, MemoryScreen), what="the memory screen")
        await pilot.pause()
        assert text_in(app, "#memory-help") == MEMORY_HELP
        assert footer_missing(app) == []
        app.screen.query_one("#memory-table").move_cursor(row=0)
        await pilot.press("f")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the forget question")
        await pilot.pause()
        assert text_in(app, ".dialog .question") == (f"Forget “{LONG_ATTRIBUTE}”? The assistant will no longer "
                                                     "use it.")
        await pilot.press("escape", "escape")
        await wait_for(pilot, lambda: app.screen is chat, what="back to the chat")

        await pilot.press("ctrl+o")
        await wait_for(pilot, lambda: isinstance(app.screen, SettingsScreen), what="the settings")
        await pilot.pause()
        assert "API key (kept in the OS keyring; leave empty to keep the saved one)" in text_in(app, ".dialog")
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is chat, what="back to the chat")

        protocol = load_protocol(Path(__file__).parents[2] / "examples" / "study.toml")
        save_enrollment(app.services.app_ctx.db, protocol, participant_id="p-1", server_url="http://127.0.0.1:9")
        app.services.participation.reload()
        await app.services.study_changed()
        await pilot.press("f3")
        # Opening it waits for the record pump, whose anonymizer loads spaCy on first use: slow on a busy machine.
        await wait_for(pilot, lambda: isinstance(app.screen, ReviewScreen), what="the upload review", timeout=60)
        await pilot.pause()
        assert text_in(app, "#review-help") == REVIEW_HELP
        assert footer_missing(app) == []
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is chat, what="back to the chat")

        chat.action_withdraw()
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the withdrawal question")
        await pilot.pause()
        assert text_in(app, ".dialog .question") == (
            f"Withdraw from {protocol.title}? Nothing more is sent, the waiting uploads are deleted, and the "
            "research team is asked to delete everything of yours on their server.")
        assert "Withdraw Cancel" in text_in(app, ".dialog .buttons")


# Search: ↓ then Enter opens a hit, as the hint says ------------------------------------------------------------

async def test_down_then_enter_opens_the_chosen_search_hit(make_app: MakeApp) -> None:
    from studyapp.tui.screens.search import SearchScreen

    app = make_app()
    store = app.services.conversations
    first = store.create("Ferry")
    first_hit = store.add_message(first.id, "user", "the ferry to Tangier leaves at nine")
    second = store.create("Hotel")
    second_hit = store.add_message(second.id, "user", "a hotel in Tangier near the port")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+f")
        await wait_for(pilot, lambda: isinstance(app.screen, SearchScreen), what="the search")
        screen = app.screen
        await pilot.press(*"tangier")
        await wait_for(pilot, lambda: len(screen._hits) == 2, what="both hits listed")
        hits = list(screen._hits)
        assert "↓ to choose" in str(screen.query_one("#search-status").render())
        await pilot.press("down")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ChatScreen), what="the first hit to open")
        await pilot.pause()
        assert app.screen.conversation_id == hits[0].message.conversation_id
        marked = [v.message.id for v in app.screen.query(MessageView) if v.has_class("-hit")]
        assert marked == [hits[0].message.id]

        # ↓ twice chooses the second.
        await pilot.press("ctrl+f")
        await wait_for(pilot, lambda: isinstance(app.screen, SearchScreen), what="the search again")
        screen = app.screen
        await pilot.press(*"tangier")
        await wait_for(pilot, lambda: len(screen._hits) == 2, what="both hits listed again")
        await pilot.press("down", "down", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ChatScreen), what="the second hit to open")
        await pilot.pause()
        assert app.screen.conversation_id == hits[1].message.conversation_id
    assert {h.message.id for h in hits} == {first_hit.id, second_hit.id}


# Consent: categories in words, choices on this screen, ticked boxes that look ticked --------------------------

async def test_consent_screen_names_categories_in_words_and_marks_ticked_boxes(tmp_path: Path) -> None:
    from textual.widgets import Checkbox

    from studyapp.privacy.consent import ConsentService
    from studyapp.store.db import open_database
    from studyapp.study.protocol import load_protocol
    from studyapp.tui.screens.consent import ConsentScreen
    from tests.privacy.test_screens import Host

    protocol = load_protocol(Path(__file__).parents[2] / "examples" / "study.toml")
    # The choices are on the same screen as the document.
    assert "next screen" not in protocol.current_consent.text
    db = open_database(tmp_path / "studyapp.db")
    app = Host(ConsentScreen(protocol, ConsentService(db)))
    async with app.run_test(size=(100, 40)) as pilot:
        screen = app.screen
        await pilot.pause()
        choices = text_in(app, "#consent-choices")
        for name in protocol.categories:
            assert f"{name} (required)" not in choices and ("_" not in name or name not in choices), name
        for spec in protocol.categories.values():
            assert spec.description in choices
        assert "Whether an answer should have used what the assistant knows about you (required)" in choices

        screen.query_one("#cat-ratings", Checkbox).value = True
        await pilot.pause()

        def row_of(selector: str) -> str:
            region = screen.query_one(selector).region
            return screen_lines(app)[region.y + 1][region.x:region.right]  # the row between the borders

        ticked, unticked = row_of("#cat-ratings"), row_of("#cat-attributes")
        assert "✔" in ticked and "✔" not in unticked, (ticked, unticked)
    db.close()


# Upload review: relevance answers and comparisons as the participant saw them ----------------------------------

async def test_review_shows_relevance_answers_and_comparisons_as_the_participant_saw_them(tmp_path: Path) -> None:
    from textual.widgets import DataTable

    from studyapp.privacy.anonymize import Anonymizer
    from studyapp.privacy.collect import Collector
    from studyapp.privacy.consent import ConsentService
    from studyapp.privacy.review import ReviewService
    from studyapp.store.db import open_database
    from studyapp.store.memory import MemoryStore
    from studyapp.tui.screens.review import ReviewScreen
    from tests.privacy.conftest import make_protocol
    from tests.privacy.test_screens import Host

    db = open_database(tmp_path / "studyapp.db")
    protocol = make_protocol(required=("ratings", "relevance_labels"), optional=("attributes",),
                             review_uploads=True)
    consent, anonymizer = ConsentService(db), Anonymizer(db)
    consent.grant(protocol, ["ratings", "relevance_labels"], include_earlier=True)  # the records carry a fixed day
    # In the participant's memory only: the attributes category is not shared, so its text is never queued.
    attribute = MemoryStore(db).add_participant_attribute("The user is vegetarian")
    collector = Collector(db, protocol, anonymizer, consent)
    day = "2026-03-02T09:30:00+00:00"
    comparison_id = collector.collect("comparison", {
        "comparison_id": "c1", "conversation_id": "conv1", "personalized_side": "right", "model": "m",
        "created_at": day, "skipped": False, "prompt": "What should I cook tonight?",
        "generic_response": "Roast chicken tonight.", "personalized_response": "Lentil curry tonight.",
        "rating": 5, "rating_shown": 5, "chosen": "personalized", "state": "rated", "rated_at": day})
    relevance_id = collector.collect("relevance_label", {
        "comparison_id": "c1", "attribute_id": attribute.id, "selected_by_model": True, "model_relevant": True,
        "human_relevant": True, "relevance_status": "yes", "asked_when": "after_rating", "ask_probability": 1.0,
        "labeled_at": day})
    assert comparison_id and relevance_id
    app = Host(ReviewScreen(ReviewService(db, protocol, anonymizer)))
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        table = app.screen.query_one("#review-table", DataTable)

        async def preview_of(event_id: str) -> str:
            table.move_cursor(row=table.get_row_index(event_id))
            await pilot.pause()
            return str(app.screen.query_one("#review-preview").render())

        shown = await preview_of(relevance_id)
        assert str(table.get_row(relevance_id)[3]) == "Should it have shaped the answer? Yes"
        assert "“The user is vegetarian”" in shown
        assert "Should this have shaped the answer? Your answer: Yes" in shown
        assert "What should I cook tonight?" in shown  # the request the question was about
        assert '"attribute_id"' in shown  # and below, exactly what is sent

        shown = await preview_of(comparison_id)
        request, first, second = (shown.index(s) for s in ("Your request", "Response 1", "Response 2"))
        assert request < first < second
        # The personalized answer was on the right: Response 2.
        assert shown.index("Roast chicken tonight.") < second < shown.index("Lentil curry tonight.")
        assert "Your rating: Response 2 much better" in shown
        assert "Response 2 continued the conversation" in shown
        assert '"personalized_side": "right"' in shown
    db.close()


# Memory-off conversations stay marked when reopened ------------------------------------------------------------

async def test_a_memory_off_conversation_is_marked_when_reopened(make_app: MakeApp) -> None:
    from studyapp.tui.widgets.conversation_list import ConversationList

    app = make_app()
    store = app.services.conversations
    private = store.create("Gift ideas for Sam", memory_enabled=False)
    store.add_message(private.id, "user", "what should I give Sam?")
    usual = store.create("Sourdough starter")
    store.add_message(usual.id, "user", "my starter smells of acetone")
    store.touch(usual.id)  # the usual one opens first
    async with app.run_test(size=SIZE) as pilot:
        chat = app.screen
        await pilot.pause()
        assert chat.conversation_id == usual.id
        screen = "\n".join(screen_lines(app))
        sidebar = text_in(app, "#conversations")
        assert "Gift ideas for Sam · memory off" in sidebar and "Sourdough starter · memory off" not in sidebar
        assert "memory off" not in screen_lines(app)[0] and "Memory off" not in text_in(app, "#status")

        chat.query_one(ConversationList).post_message(ConversationList.Chosen(private.id))
        await wait_for(pilot, lambda: chat.conversation_id == private.id, what="the private conversation")
        await pilot.pause()
        assert "Gift ideas for Sam · memory off" in screen_lines(app)[0]  # the header
        assert "Memory off in this conversation" in text_in(app, "#status")
        assert "memory off" not in screen.split("\n")[0]


# Small text ----------------------------------------------------------------------------------------------------

async def test_the_attributes_that_shaped_a_reply_read_as_a_list() -> None:
    from textual.app import App, ComposeResult

    from studyapp.domain import Message

    reply = Message(n=2, id="m2", conversation_id="c1", role="assistant", content="Try the lentil curry.",
                    status="complete", created_at="2026-03-02T09:30:00+00:00")

    class Host(App[None]):
        def compose(self) -> ComposeResult:
            yield MessageView(reply)

    app = Host()
    async with app.run_test(size=SIZE) as pilot:
        view = app.query_one(MessageView)
        view.set_used(["The user is vegetarian.", "I am allergic to peanuts.", "Cooks for two"])
        await pilot.pause()
        line = text_in(app, ".used")
        assert ".;" not in line
        assert line == "Shaped by your memory: The user is vegetarian. · I am allergic to peanuts. · Cooks for two"


async def test_stopping_before_any_text_says_nothing_arrived(make_app: MakeApp, scripted_llm: ScriptedLLM) -> None:
    reply = scripted_llm.add_text("never shown", hold_after=0)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press(*"count", "enter")
        await reply.wait_held_async()
        await wait_for(pilot, lambda: len(list(app.screen.query(MessageView))) == 2, what="the empty reply")
        await pilot.press("escape")
        await app.workers.wait_for_complete()
        await pilot.pause()
        reply.release()
        assistant = list(app.screen.query(MessageView))[1]
        assert (assistant.message.content, assistant.message.status) == ("", "interrupted")
        note = str(assistant.query_one(".note").render())
        assert note == "Stopped before any text arrived."
