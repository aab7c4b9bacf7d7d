"""The main screen: conversations on the left, the conversation and the message box on the right."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from contextlib import aclosing
from datetime import datetime
from typing import TYPE_CHECKING

from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Button, Footer, Header, Label, Static

from studyapp.chat import ReplyDelta, ReplyFinished, ReplyStarted, UserSaved
from studyapp.domain import Conversation, SearchHit
from studyapp.participation import ParticipationState
from studyapp.study.asking import Answer, AnswerError, Ask
from studyapp.tui.screens.dialogs import ConfirmScreen, PromptScreen
from studyapp.tui.screens.search import SearchScreen
from studyapp.tui.screens.settings import SettingsResult, SettingsScreen
from studyapp.tui.services import Services
from studyapp.tui.widgets.composer import Composer
from studyapp.tui.widgets.conversation_list import ConversationList
from studyapp.tui.widgets.message_view import ConversationView, MessageView
from studyapp.tui.widgets.question import QuestionPrompt, QuestionResponse
from studyapp.turns import ComparisonOffered, Preparing

if TYPE_CHECKING:
    from studyapp.sync.background import SyncRound

# The study's screens (comparison, consent, upload review, labeling, memory ...) are imported where they open: the chat
# screen comes up without loading them.

# How a conversation without memory is marked wherever it is named (list, header, status line).
MEMORY_OFF = "memory off"


def heading(conversation: Conversation) -> str:
    """A conversation's title as the header and the list show it: marked when memory is off in it."""
    return conversation.title if conversation.memory_enabled else f"{conversation.title} · {MEMORY_OFF}"


# Messages mounted per page: more than a screenful, few enough that opening stays quick (Markdown
# widgets are not cheap to mount).
PAGE_SIZE = 25
REPLY_GROUP = "reply"
EXTRACT_GROUP = "extract"
JUDGE_GROUP = "judge"
# Extraction waits for a pause in the conversation, and a new message cancels it (it never delays a reply).
# The default pause; StudyApp(extract_debounce_s=...) sets another (None: no extraction after replies).
EXTRACT_DEBOUNCE_S = 3.0
# How often the study's daily, weekly and end-of-study questions are looked for while the app is open.
SURVEY_CHECK_S = 60.0
# A survey opens by itself only after the message box has been left alone this long (and is empty): a survey
# that appeared just as the participant started a message would take their first keystrokes.
SURVEY_QUIET_S = 5.0


class ChatScreen(Screen[None]):
    BINDINGS = [
        Binding("ctrl+n", "new_conversation", "New", priority=True),
        Binding("ctrl+f", "search", "Search", priority=True),
        # Rename and delete are in the command palette (and the README's keys): the footer keeps its room for
        # what a participant needs every day.
        Binding("ctrl+e", "rename", "Rename", show=False, priority=True),
        Binding("ctrl+d", "delete", "Delete", show=False, priority=True),
        Binding("ctrl+o", "settings", "Settings", priority=True),
        Binding("f2", "memory", "Memory"),
        Binding("f3", "review_uploads", "Uploads"),
        Binding("f4", "label_attributes", "Label"),
        # The study's questions: to the question waiting above the message box and back, or open the survey.
        # A function key, so it never collides with typing. Not in the footer (no room at 80 columns, and a
        # footer redrawn whenever a question comes or goes would cost the next turn): the question itself and
        # the survey's notice say "F5".
        Binding("f5", "questions", "Questions", show=False, priority=True),
        # Not in the footer: the status line says "Esc stops" exactly while a reply can be stopped (redrawing
        # the footer when a reply starts cost ~140 ms of the first token on a long history).
        Binding("escape", "stop", "Stop reply", show=False),
        Binding("ctrl+b", "load_earlier", "Earlier messages", show=False, priority=True),
        Binding("ctrl+l", "focus_conversations", "Conversations", show=False),
    ]

    def __init__(self, services: Services, *, extract_debounce_s: float | None = EXTRACT_DEBOUNCE_S) -> None:
        super().__init__()
        self.services = services
        self.conversation_id: str | None = None
        # For a new conversation (not saved until its first message): use memory or not.
        self.new_memory_enabled = True
        # Whether the open (or new) conversation is one without memory: the status line says so.
        self.memory_off = False
        self.extract_debounce_s = extract_debounce_s
        # Attributes whose labeling was already announced (the notification comes once, not after every reply).
        self.announced_labeling: set[str] = set()
        # The study's questions asked in the moment (after a reply or a rating), shown one at a time above the
        # message box, and how many came together (for "1 of 2").
        self.waiting_questions: list[Ask] = []
        self.asked_together = 0
        # Survey questions (daily, weekly, at_end) handed out and not yet answered or put off; whether the
        # survey is on screen, and whether its notice was given.
        self.survey_asks: list[Ask] = []
        self.survey_open = False
        self.survey_announced = False
        self.survey_quiet_s = SURVEY_QUIET_S
        # When the message box last changed (time.monotonic()); starting the app counts, so a survey due at start
        # is announced, not opened under the participant's first keystrokes.
        self.typed_at = time.monotonic()

    # Layout --------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="body"):
            with Vertical(id="sidebar"):
                yield Button("+ New conversation", id="new", classes="new-conversation")
                yield ConversationList(id="conversations")
            with Vertical(id="main"):
                yield ConversationView(id="conversation")
                yield Label("", id="empty-hint", markup=False)
                yield QuestionPrompt(id="question-prompt")
                yield Composer(id="composer")
        yield Static("", id="status", markup=False)
        yield Footer()

    async def on_mount(self) -> None:
        conversations = self.services.conversations.list(limit=1)
        await self.open_conversation(conversations[0].id if conversations else None)
        self.query_one(QuestionPrompt).display = False
        self.query_one(Composer).focus()
        self.announce_labeling()
        self.start_participation()
        self.check_surveys()
        self.set_interval(SURVEY_CHECK_S, self.check_surveys)

    # Taking part in a study ----------------------------------------------------------------

    def start_participation(self) -> None:
        """Show what studyapp.participation says: sync in every state but "not enrolled" (a withdrawal the
        server has not confirmed is retried until it is), the consent screen when an answer is owed."""
        participation = self.services.participation
        if participation.syncs:
            self.background_sync()
        state = participation.state
        if state is ParticipationState.PROTOCOL_UNUSABLE:
            self.notify(f"The study's protocol stored on this computer cannot be used: {participation.problem}"
                        " Nothing is collected until the study server sends a valid one (asked at every sync).",
                        severity="error", timeout=15, markup=False)
        elif state is ParticipationState.CONSENT_NEEDED:
            self.ask_consent()

    @work(exclusive=True, group="sync")
    async def background_sync(self) -> None:
        def on_round(round_: SyncRound) -> None:
            self.update_status()
            if round_.protocol_changed:
                self.new_protocol()

        await self.services.participation.run_sync(on_round)

    @work(group="dialogs")
    async def new_protocol(self) -> None:
        """The study published a new protocol version (participation took it on): ask again if its consent changed."""
        await self.services.study_changed()
        self.update_status()
        if self.services.participation.state is ParticipationState.CONSENT_NEEDED:
            self.notify("The study changed its consent document: nothing more is collected until you read it.",
                        severity="warning", timeout=10)
            self.ask_consent()

    def action_sync_status(self) -> None:
        """What waits to be sent, what the server refused and why (as `studyapp doctor` prints it)."""
        from studyapp.sync.status import sync_status

        self.notify(str(sync_status(self.services.app_ctx.db)), title="Uploads", timeout=20, markup=False)
        self.nudge_sync()

    def nudge_sync(self) -> None:
        self.services.participation.nudge_sync()

    @work(group="dialogs")
    async def ask_consent(self) -> None:
        from studyapp.tui.screens.consent import ConsentScreen

        participation = self.services.participation
        if participation.privacy is None:
            return
        privacy = participation.privacy
        record = await self.app.push_screen_wait(ConsentScreen(participation.study.protocol, privacy.consent,
                                                               privacy.review))
        if record is None:
            self.notify("Nothing is collected until you agree to the study's consent (palette: Study consent).",
                        severity="warning", timeout=8)
        participation.consented(record)
        self.update_status()

    def action_consent(self) -> None:
        if self.services.participation.privacy is None:
            self.notify("You are not enrolled in a study: nothing leaves this computer. Palette: Join a study.")
            return
        self.ask_consent()

    @work(group="dialogs")
    async def action_enroll(self) -> None:
        from studyapp.tui.screens.enroll import EnrollScreen

        if self.services.enrolled:
            self.notify(f"You already take part in {self.services.study.protocol.title}.", markup=False)
            return
        enrollment = await self.app.push_screen_wait(EnrollScreen(self.services.participation.enroll))
        if enrollment is None:
            return
        await self.services.study_changed()
        kept = f" Your token is in a file only you can read: {enrollment.token_file}." if enrollment.token_file else ""
        self.notify(f"Joined {enrollment.title}.{kept} Please read the consent document.", markup=False)
        self.update_status()
        self.start_participation()

    @work(group="dialogs")
    async def action_withdraw(self) -> None:
        from studyapp.sync.client import SyncError

        if not self.services.enrolled:
            self.notify("You are not enrolled in a study.")
            return
        title = self.services.study.protocol.title
        question = (f"Withdraw from {title}? Nothing more is sent, the waiting uploads are deleted, and the "
                    "research team is asked to delete everything of yours on their server.")
        if not await self.app.push_screen_wait(ConfirmScreen(question, "Withdraw")):
            return
        self.workers.cancel_group(self, "sync")
        try:
            await self.services.participation.withdraw()
            self.notify("Withdrawn: the server confirmed it deleted your records.")
        except SyncError as exc:
            self.notify(f"Withdrawn on this computer. {exc} The deletion request is retried in the background "
                        "until the server confirms it.", severity="warning", timeout=10, markup=False)
        await self.services.study_changed()
        self.update_status()
        self.start_participation()

    @work(group="dialogs")
    async def action_review_uploads(self) -> None:
        from studyapp.tui.screens.review import ReviewScreen

        participation = self.services.participation
        if participation.privacy is None:
            self.notify("You are not enrolled in a study: nothing is waiting to be sent.")
            return
        await participation.flush()  # the pump's worker may be anonymizing what was just written
        await self.app.push_screen_wait(ReviewScreen(participation.privacy.review))
        self.nudge_sync()
        self.update_status()

    # Conversations -------------------------------------------------------------------

    def refresh_list(self) -> None:
        self.query_one(ConversationList).set_conversations(self.services.conversations.list(), self.conversation_id)

    async def open_conversation(self, conversation_id: str | None, *, around: SearchHit | None = None) -> None:
        store = self.services.conversations
        view = self.query_one(ConversationView)
        self.conversation_id = conversation_id
        hint = self.query_one("#empty-hint", Label)
        if conversation_id is None:
            self.sub_title = "New conversation" if self.new_memory_enabled else f"New conversation · {MEMORY_OFF}"
            self.memory_off = not self.new_memory_enabled
            await view.show([], has_earlier=False)
            self._show_model_hint()
            hint.display = True
        else:
            conversation = store.get(conversation_id)
            self.sub_title = heading(conversation) if conversation else ""
            self.memory_off = conversation is not None and not conversation.memory_enabled
            hint.display = False
            if around is not None:
                messages = store.messages_around(conversation_id, around.message.n, before=PAGE_SIZE // 2,
                                                 after=PAGE_SIZE // 2)
            else:
                messages = store.messages(conversation_id, limit=PAGE_SIZE)
            has_earlier = bool(messages) and bool(store.messages(conversation_id, before_n=messages[0].n, limit=1))
            await view.show(messages, has_earlier=has_earlier)
            self._show_used_attributes()
            if around is not None:
                target = view.query_one(f"#m{around.message.n}", MessageView)
                target.add_class("-hit")
                view.call_after_refresh(view.scroll_to_widget, target, animate=False, top=True)
            else:
                view.call_after_refresh(view.scroll_end, animate=False)
        self.refresh_list()
        self.update_status()  # memory may be off in this one

    def _show_model_hint(self) -> None:
        self.query_one("#empty-hint", Label).update(
            f"Chatting with {self.services.model_settings().describe()}. Type a message and press Enter.")

    def model_changed(self) -> None:
        """Another model answers now: say so where the model is named."""
        if self.conversation_id is None and self.new_memory_enabled:
            self._show_model_hint()
        self.update_status()

    def _show_used_attributes(self) -> None:
        previous: MessageView | None = None
        for message_view in self.query_one(ConversationView).query(MessageView):
            if message_view.message.role == "assistant":
                request = previous.message if previous is not None else None
                message_view.set_used(self.services.memory_use(message_view.message, request=request))
            previous = message_view

    async def action_new_conversation(self, memory_enabled: bool = True) -> None:
        self.new_memory_enabled = memory_enabled
        await self.open_conversation(None)
        if not memory_enabled:
            self.query_one("#empty-hint", Label).update(
                "Memory is off for this conversation: nothing is learned from it and nothing from your memory "
                "is used in it.")
        self.query_one(Composer).focus()

    async def action_new_private_conversation(self) -> None:
        await self.action_new_conversation(memory_enabled=False)

    def action_memory(self) -> None:
        from studyapp.tui.screens.memory import MemoryScreen

        self.app.push_screen(MemoryScreen(self.services.memory, on_viewed=self.services.memory_viewed))

    @on(Button.Pressed, "#new")
    async def _new_pressed(self) -> None:
        await self.action_new_conversation()

    @on(ConversationList.Chosen)
    async def _chosen(self, event: ConversationList.Chosen) -> None:
        if event.conversation_id != self.conversation_id:
            await self.open_conversation(event.conversation_id)
        self.query_one(Composer).focus()

    @on(Button.Pressed, "#load-earlier")
    async def action_load_earlier(self) -> None:
        view = self.query_one(ConversationView)
        first = view.first_n()
        if self.conversation_id is None or first is None:
            return
        store = self.services.conversations
        older = store.messages(self.conversation_id, before_n=first, limit=PAGE_SIZE)
        has_earlier = bool(older) and bool(store.messages(self.conversation_id, before_n=older[0].n, limit=1))
        await view.prepend(older, has_earlier=has_earlier)

    @work(group="dialogs")
    async def action_rename(self) -> None:
        if self.conversation_id is None:
            self.notify("Send a message first: a new conversation is saved with its first message.")
            return
        conversation = self.services.conversations.get(self.conversation_id)
        title = await self.app.push_screen_wait(PromptScreen("Rename conversation", conversation.title if conversation
                                                             else ""))
        if title is not None and self.conversation_id is not None:
            self.services.conversations.rename(self.conversation_id, title)
            self.sub_title = heading(self.services.conversations.get(self.conversation_id))  # type: ignore[arg-type]
            self.refresh_list()

    @work(group="dialogs")
    async def action_delete(self) -> None:
        if self.conversation_id is None:
            return
        if self._replying():
            self.notify("Stop the reply (Esc) before deleting this conversation.", severity="warning")
            return
        conversation = self.services.conversations.get(self.conversation_id)
        title = conversation.title if conversation else "this conversation"
        if await self.app.push_screen_wait(ConfirmScreen(f"Delete “{title}” and all its messages?", "Delete")):
            self.services.conversations.delete(self.conversation_id)
            remaining = self.services.conversations.list(limit=1)
            await self.open_conversation(remaining[0].id if remaining else None)
            self.notify(f"Deleted “{title}”.", markup=False)

    @work(group="dialogs")
    async def action_search(self) -> None:
        hit = await self.app.push_screen_wait(SearchScreen(self.services.conversations.search))
        if hit is not None:
            await self.open_conversation(hit.message.conversation_id, around=hit)

    @work(group="dialogs")
    async def action_settings(self) -> None:
        status = await asyncio.to_thread(self.services.keyring_status)  # a keyring may ask a desktop service
        result: SettingsResult | None = await self.app.push_screen_wait(
            SettingsScreen(self.services.model_settings(), keyring_hint="" if status.available else status.hint)
        )
        if result is None:
            return
        message = await self.services.apply_settings(result.settings, result.api_key, in_file=result.api_key_in_file)
        self.notify(message, severity="warning" if "keyring" in message.lower() else "information", markup=False)
        self.model_changed()

    def action_focus_conversations(self) -> None:
        self.query_one(ConversationList).focus()

    # Sending -------------------------------------------------------------------------

    def _replying(self) -> bool:
        return any(w.group == REPLY_GROUP and w.is_running for w in self.workers)

    @on(Composer.Submitted)
    async def _submitted(self, event: Composer.Submitted) -> None:
        if self._replying():
            self.notify("A reply is still arriving: wait for it, or press Esc to stop it.")
            return
        event.composer.clear()
        # The participant carried on past the question about the last reply: it counts as skipped.
        await self.skip_waiting_questions()
        # Background model work gives way: the participant's reply comes first.
        self.workers.cancel_group(self, EXTRACT_GROUP)
        self.workers.cancel_group(self, JUDGE_GROUP)
        self.run_turn(self.conversation_id, event.text.strip())

    @work(exclusive=True, group=REPLY_GROUP)
    async def run_turn(self, conversation_id: str | None, text: str) -> None:
        """Render one turn as studyapp.turns.TurnController runs it (the screen decides nothing here)."""
        view = self.query_one(ConversationView)
        reply_view: MessageView | None = None
        try:
            async with aclosing(self.services.turns.run(conversation_id, text,
                                                        memory_enabled=self.new_memory_enabled)) as events:
                async for event in events:
                    if isinstance(event, UserSaved):
                        if conversation_id is None:
                            self.conversation_id = event.conversation.id
                            self.sub_title = heading(event.conversation)
                            self.query_one("#empty-hint", Label).display = False
                        await view.add(event.message)
                        self.refresh_list()
                    elif isinstance(event, Preparing):
                        self.update_status("Preparing… (Esc stops)")
                    elif isinstance(event, ComparisonOffered):
                        await self._run_comparison(event)
                    elif isinstance(event, ReplyStarted):
                        reply_view = await view.add(event.message)
                        reply_view.set_used(self.services.memory_use(event.message, attributes=event.attributes))
                        self.update_status("Answering… (Esc stops)")
                    elif isinstance(event, ReplyDelta) and reply_view is not None:
                        await reply_view.append(event.text)
                    elif isinstance(event, ReplyFinished) and reply_view is not None:
                        await reply_view.finish(event.message)
                        self.nudge_sync()
                        if event.message.status == "error":
                            self.notify(event.message.error or "The reply failed.", severity="error", timeout=8,
                                        markup=False)
                        elif event.message.status == "complete":
                            # Experience sampling: a question about this reply, now that it is whole.
                            await self.ask_in_the_moment(self.services.asking.after_turn(event.message.id))
        except asyncio.CancelledError:
            if reply_view is not None:
                stored = self.services.conversations.get_message(reply_view.message.id)
                if stored is not None:
                    await reply_view.finish(stored)
            raise
        finally:
            self.update_status()
            self.extract_later(self.conversation_id)

    async def _run_comparison(self, offer: ComparisonOffered) -> None:
        """A comparison turn: both answers side by side, blinded; the chosen one continues the conversation."""
        from studyapp.tui.screens.comparison import ComparisonScreen

        saved, runner = offer.saved, offer.runner
        screen = ComparisonScreen(
            lambda progress: runner.run(saved.conversation.id, saved.message, offer.choices, progress=progress),
            labels=self.services.study.protocol.rating_scale.labels,
            on_shown=runner.mark_shown,
        )
        result = await self.app.push_screen_wait(screen)
        self.services.turns.finish_comparison(offer, result)
        self.nudge_sync()  # a comparison is a study record whatever became of it (failed, cancelled too)
        if result.status == "failed":
            self.notify(result.error or "The comparison failed.", severity="error", timeout=8, markup=False)
        elif result.status == "cancelled":
            self.notify("Stopped. Send your message again to get an answer.")
        await self.open_conversation(saved.conversation.id)
        if result.status in ("rated", "skipped"):  # both answers exist: the judge rates a skipped pair too
            self.judge_later()
        if result.status == "rated" and result.comparison_id is not None:
            await self.ask_in_the_moment(self.services.asking.after_comparison(result.comparison_id))

    @work(exclusive=True, group=JUDGE_GROUP)
    async def judge_later(self) -> None:
        """The LLM judge on every rated comparison not judged yet; a new message cancels it (it catches up
        after the next reply), so judging never holds up the participant's answer."""
        if await self.services.judge_pending():
            self.services.records_written()

    @work(exclusive=True, group=EXTRACT_GROUP)
    async def extract_later(self, conversation_id: str | None) -> None:
        if conversation_id is None or self.extract_debounce_s is None:
            return
        await asyncio.sleep(self.extract_debounce_s)
        results = await self.services.extract(conversation_id)
        added = sum(1 for r in results for e in r.events if e.action == "add")
        self.update_status()
        refresh = getattr(self.app.screen, "refresh_rows", None)  # the memory screen, if it is open
        if added and callable(refresh):
            refresh()
        self.judge_later()
        if added:
            self.notify(f"Learned {added} new thing(s) about you. Press F2 to see and judge your memory.")
            self.announce_labeling()

    def announce_labeling(self) -> None:
        """Say once that the study asks for attribute labels. Never opens them: a dialog that appears while
        the participant types takes their keystrokes as answers, and a label is research data."""
        due = {a.id for a in self.services.labeling_plan().due}
        if due - self.announced_labeling:
            self.notify("Some things the assistant learned about you wait for your judgement: press F4 (or click "
                        "the status line) when you are ready.", title="About you", timeout=10)
        self.announced_labeling |= due

    # The study's own questions ([[questions]]) -------------------------------------------------------

    async def ask_in_the_moment(self, asks: Sequence[Ask]) -> None:
        """Show questions asked after a reply or a rating above the message box, one at a time. They never take
        the keyboard (the participant moves to them with F5) and never cover a reply. Questions still waiting
        from before count as skipped: the moment they asked about has passed."""
        if not asks:
            return
        await self.skip_waiting_questions(show_next=False)
        self.waiting_questions = list(asks)
        self.asked_together = len(asks)
        await self._show_waiting_question()

    async def skip_waiting_questions(self, *, show_next: bool = True) -> None:
        """The participant carried on past the waiting questions (sent a message, or newer questions came)."""
        waiting, self.waiting_questions = self.waiting_questions, []
        for ask in waiting:
            self._record(ask, "skipped")
        if waiting and show_next:
            await self._show_waiting_question()

    async def _show_waiting_question(self) -> None:
        prompt = self.query_one(QuestionPrompt)
        had_keyboard = prompt.holds_focus
        ask = self.waiting_questions[0] if self.waiting_questions else None
        await prompt.show(ask, position=(self.asked_together - len(self.waiting_questions) + 1, self.asked_together))
        # Answering one after another, the next question keeps the keyboard; after the last, the message box has it.
        if had_keyboard and ask is not None:
            prompt.take_focus()
        elif had_keyboard:
            self.query_one(Composer).focus()

    @on(QuestionPrompt.Answered)
    async def _question_answered(self, event: QuestionPrompt.Answered) -> None:
        await self._close_question(event.ask.ask_id, "answered", event.response)

    @on(QuestionPrompt.Skipped)
    async def _question_skipped(self, event: QuestionPrompt.Skipped) -> None:
        await self._close_question(event.ask.ask_id, "skipped")

    async def _close_question(self, ask_id: str, status: str, response: QuestionResponse | None = None) -> None:
        ask = next((a for a in self.waiting_questions if a.ask_id == ask_id), None)
        if ask is None:
            return  # already closed (skipped by a message sent meanwhile)
        self.waiting_questions.remove(ask)
        self._record(ask, status, response)
        await self._show_waiting_question()

    def _record(self, ask: Ask, status: str, response: QuestionResponse | None = None) -> None:
        """Store an answer or a skip: one short transaction on the event loop, as a rating is stored; Asking wakes
        the privacy gate, which anonymizes a text answer in its own thread."""
        given = response or QuestionResponse()
        answer = Answer(ask, status, answered_at=datetime.now().astimezone(), number=given.number,
                        option=given.option, text=given.text)
        try:
            self.services.asking.record(answer)
        except AnswerError as exc:  # the widgets offer only fitting answers; say so rather than fail
            self.notify(str(exc), severity="error", markup=False)
        self.nudge_sync()

    def action_questions(self) -> None:
        """F5: to the waiting question and back to the message box; with none waiting, open the survey."""
        prompt = self.query_one(QuestionPrompt)
        if self.waiting_questions:
            if prompt.holds_focus:
                self.query_one(Composer).focus()
            else:
                prompt.take_focus()
        elif self.survey_asks:
            self.open_survey(by_participant=True)
        else:
            self.notify("No questions from the study wait for you now.")

    def check_surveys(self) -> None:
        """Look for the daily, weekly and end-of-study questions due now (at start, then every SURVEY_CHECK_S)."""
        if self.survey_open:
            return
        due = self.services.asking.surveys_due()  # also ends yesterday's waiting survey as unanswered
        self.survey_asks = self.services.asking.still_open(self.survey_asks)
        held = {a.ask_id for a in self.survey_asks}
        new = [a for a in due if a.ask_id not in held]
        if new:
            self.survey_asks += new
            self.survey_announced = False
        if self.survey_asks:
            self.offer_survey()

    def offer_survey(self) -> None:
        """Open the survey when nothing is under way (no reply arriving, the message box empty and left alone,
        no other screen open); otherwise say once that questions wait, and how to open them."""
        quiet = time.monotonic() - self.typed_at >= self.survey_quiet_s
        # A question above the message box may be half answered (a text answer being typed): never open over it.
        if (self.app.screen is self and not self._replying() and not self.query_one(Composer).text and quiet
                and not self.waiting_questions):
            self.open_survey(by_participant=False)
        elif not self.survey_announced:
            self.survey_announced = True
            count = len(self.survey_asks)
            self.notify(f"The study has {count} question{'s' if count != 1 else ''} for you: press F5 when you "
                        "are ready.", title="Questions", timeout=10)

    @on(Composer.Changed, "#composer")
    def _typed(self) -> None:
        self.typed_at = time.monotonic()

    @work(group="dialogs")
    async def open_survey(self, *, by_participant: bool) -> None:
        """The survey screen; its answers and skips are recorded, and with Later the unanswered ones are put off
        (the study asks them again later)."""
        from studyapp.tui.screens.survey import SurveyScreen

        if self.survey_open or not self.survey_asks:
            return
        asks, self.survey_open = list(self.survey_asks), True
        try:
            result = await self.app.push_screen_wait(
                SurveyScreen(asks, title=self.services.study.protocol.title, focus_first=by_participant))
        finally:
            self.survey_open = False
        self.survey_asks = [a for a in self.survey_asks if a not in asks]
        put_off: list[Ask] = []
        for ask in asks:
            response = result.responses.get(ask.ask_id)
            if response is not None:
                self._record(ask, "answered", response)
            elif result.later:
                put_off.append(ask)
            else:
                self._record(ask, "skipped")
        if put_off:
            self.services.asking.postpone(put_off)
            self.notify("The study will ask the rest again later.")

    def action_label_attributes(self) -> None:
        """The study's attribute labels, opened by the participant (F4, the palette, or the status line)."""
        from studyapp.tui.screens.labeling import LabelingScreen

        due = self.services.labeling_plan().due
        if not due:
            self.notify("Nothing to label now. Your memory (F2) lists everything the assistant believes about you.")
            return
        self.app.push_screen(LabelingScreen(due, self.services.memory, on_viewed=self.services.memory_viewed))

    @on(events.Click, "#status")
    def _status_clicked(self) -> None:
        self.action_label_attributes()

    def on_screen_resume(self) -> None:
        # Back from a dialog or the memory screen: labels given there change what the status line counts.
        self.update_status()

    def action_stop(self) -> None:
        if self._replying():
            self.workers.cancel_group(self, REPLY_GROUP)
            self.notify("Stopped. What arrived is kept.")

    def update_status(self, activity: str = "") -> None:
        parts = [f"Model: {self.services.model_settings().describe()}"]
        if self.memory_off:
            parts.append("Memory off in this conversation")
        parts += self.services.status_parts()
        if self.services.labeling_plan().due:
            parts.append("press F4")  # next to the study's "N attributes to label"
        if activity:
            parts.append(activity)
        for status in self.query("#status").results(Static):  # absent while the app shuts down
            status.update("  ·  ".join(parts))
