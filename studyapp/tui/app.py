"""The participant's chat app (Textual). Thin: screens, widgets and styles live beside it."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence

from textual import work
from textual.app import App, SystemCommand
from textual.screen import Screen

from studyapp.context import AppContext
from studyapp.llm.base import ChatModel
from studyapp.store.db import integrity_problem
from studyapp.tui.screens.chat import EXTRACT_DEBOUNCE_S, ChatScreen
from studyapp.tui.services import Services

IMPORTED_AT = time.perf_counter()

FIRST_START_NOTICE = ("The embedded model (SmolLM2-135M) is here so you can try the app; it is too small to judge "
                      "answers by. For real conversations choose a model in Settings (Ctrl+O).")


class StudyApp(App[None]):
    CSS_PATH = ["styles/app.tcss", "styles/questions.tcss"]
    TITLE = "studyapp"

    def __init__(self, app_ctx: AppContext, *, model_factory: Callable[[], ChatModel] | None = None,
                 extract_debounce_s: float | None = EXTRACT_DEBOUNCE_S,
                 local_servers: Sequence[tuple[str, str]] | None = None) -> None:
        """``extract_debounce_s``: the pause after a reply before memory extraction runs (a new message
        cancels it); 0 runs it at once, None never starts it after a reply (tests and benchmarks).
        ``local_servers``: the (name, base URL) pairs the first start asks for a running model server
        (default: studyapp.llm.discover.candidate_servers(); empty: ask none)."""
        super().__init__()
        self.services = Services(app_ctx, model_factory=model_factory)
        self.local_servers = local_servers
        self.extract_debounce_s = extract_debounce_s
        self.started_ms: float | None = None

    def get_default_screen(self) -> Screen[None]:
        return ChatScreen(self.services, extract_debounce_s=self.extract_debounce_s)

    def on_ready(self) -> None:
        # Kept at hand for the start-up benchmark and `textual console`.
        self.started_ms = (time.perf_counter() - IMPORTED_AT) * 1000
        self.log.info(f"studyapp started in {self.started_ms:.0f} ms")
        if not self.services.app_ctx.check_integrity:
            self.check_integrity()
        notice = self.services.app_ctx.take_notice()
        if notice:
            self.notify(notice, title="Your files are private now", timeout=15)
        if self.services.recovered:
            self.notify(f"{self.services.recovered} reply(ies) cut off last time were kept and marked interrupted.")
        if self.services.first_start:
            self.welcome()

    def welcome(self) -> None:
        """The first start on this database: say what the embedded model is for, and offer a model server that
        already runs on this computer (the participant chose no other model yet)."""
        self.services.mark_started()
        if not self.services.model_settings().is_local:
            return
        self.notify(FIRST_START_NOTICE, title="Welcome", timeout=20, markup=False)
        self.offer_local_server()

    @work(exclusive=True, group="first-start", exit_on_error=False)
    async def offer_local_server(self) -> None:
        """Ask the usual local servers (async, short timeout: the app stays responsive) and offer what answers."""
        # Loaded here, not at start: httpx is not needed for the first frame.
        from studyapp.llm import discover
        from studyapp.tui.screens.local_server import LocalServerScreen

        servers = await discover.find_local_servers(self.local_servers)
        if not servers or not self.services.model_settings().is_local:
            return
        choice = await self.push_screen_wait(LocalServerScreen(servers))
        if choice is None:
            return
        message = await self.services.use_local_server(*choice)
        self.notify(message, markup=False)
        if isinstance(self.screen, ChatScreen):
            self.screen.model_changed()

    @work(thread=True, exit_on_error=False)
    def check_integrity(self) -> None:
        """The database's full check, off the event loop; a damaged file stops the app before more is written."""
        problem = integrity_problem(self.services.app_ctx.database_path)
        if problem is not None:
            self.call_from_thread(self.exit, None, 1, str(problem))

    def _handle_exception(self, error: Exception) -> None:
        # Textual's hook for an unhandled exception (it would print a traceback and exit). A damaged
        # database is the participant's problem to solve, not a bug: name the file and what to do instead.
        if isinstance(error, sqlite3.DatabaseError):
            path = self.services.app_ctx.database_path
            problem = integrity_problem(path)
            self._return_code = 1
            self.exit(None, 1, str(problem) if problem else f"{path}: the database failed ({error}). "
                      "Nothing was overwritten; run `studyapp doctor` to check it.")
            return
        super()._handle_exception(error)

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        if isinstance(screen, ChatScreen):
            yield SystemCommand("New conversation", "Start a new conversation", screen.action_new_conversation)
            yield SystemCommand("Search messages", "Search all past messages", screen.action_search)
            yield SystemCommand("Rename conversation", "Rename the open conversation", screen.action_rename)
            yield SystemCommand("Delete conversation", "Delete the open conversation", screen.action_delete)
            yield SystemCommand("Model settings", "Choose the model and its parameters", screen.action_settings)
            yield SystemCommand("Memory", "See, judge, edit and forget what the assistant knows about you",
                                screen.action_memory)
            yield SystemCommand("Label what the assistant learned",
                                "Say whether the attributes waiting for your judgement make sense (F4)",
                                screen.action_label_attributes)
            yield SystemCommand("Questions from the study",
                                "Answer the question waiting above the message box, or the study's waiting "
                                "questions (F5)", screen.action_questions)
            yield SystemCommand("Join a study", "Enroll with the code from the research team", screen.action_enroll)
            yield SystemCommand("Study consent", "Read the consent document and choose what may be collected",
                                screen.action_consent)
            yield SystemCommand("Review uploads", "See exactly what will be sent; approve or withhold it",
                                screen.action_review_uploads)
            yield SystemCommand("Upload status", "What waits to be sent, what the server refused and why",
                                screen.action_sync_status)
            yield SystemCommand("Withdraw from the study", "Stop taking part and have your records deleted",
                                screen.action_withdraw)
            yield SystemCommand("New conversation without memory",
                                "Nothing is learned from it and nothing from memory is used in it",
                                screen.action_new_private_conversation)

    async def on_unmount(self) -> None:
        await self.services.aclose()
