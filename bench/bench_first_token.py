"""What the chat app adds to the first token: Enter pressed to the first reply text on screen, minus the
server's own time to first token, measured in the same run.

The app is the real StudyApp (headless, Textual's pilot) on a copy of the 100,000-message history (so
the sidebar holds 200 conversations, as a long-time participant's does), with model settings pointing at
an OpenAI-compatible server: the real ``llama_cpp.server`` with SmolLM2-135M (tests/support/llama_server)
and the scripted server of the tests (answers at once: what is left is nearly all client time).

Each run: Ctrl+N (a new conversation, memory on and empty, so no selection call), the message is put in
the composer, then the clock starts and Enter is pressed. The clock stops when the first non-empty text
has been appended to the reply's Markdown widget and the next frame has been refreshed (a
``call_after_refresh`` after Textual's ``Markdown.append``). Right before and right after each app turn,
a bare httpx streaming request with the same shape (the app's system prompt and parameters, a user
message of the same length but different words, so neither profits from the server's prompt-prefix
reuse more than the other) measures the server's own time to first token on a warm keep-alive
connection; the mean of the two is the server's time for that run. The first app turn (model client
created, connection opened) is reported apart; the rest are paired per run.

The chat screen's background extraction (which would send requests of its own after a pause) is put
off for the whole run through its ``extract_debounce_s`` attribute, so it cannot compete with the runs.

With ``--diagnose``, the scripted server is run once more with ``ChatScreen.refresh_list`` (the sidebar
rebuild after the participant's message is saved) switched off, which shows what that rebuild costs.

    .venv/bin/python bench/bench_first_token.py [--runs 7] [--no-llama] [--no-scripted] [--empty] [--diagnose]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import describe_ms, git_revision, machine, raw_stream_first_token, startup_history
from textual.widgets import Markdown

from studyapp.context import AppContext
from studyapp.domain import Message
from studyapp.llm.base import ChatParams
from studyapp.llm.config import ModelSettings
from studyapp.personalize.generate import build_messages
from studyapp.tui.app import StudyApp
from studyapp.tui.screens.chat import REPLY_GROUP, ChatScreen
from studyapp.tui.widgets.composer import Composer
from studyapp.tui.widgets.message_view import MessageView
from tests.support.llama_server import run_llama_server
from tests.support.scripted_llm import run_scripted_llm

PARAMS = ChatParams(temperature=0.0, max_tokens=8, seed=1)
SIZE = (120, 40)
FRUITS = ["berries", "banana", "mango", "apple", "pear", "kiwi", "plums", "cherries", "figs", "peach",
          "grapes", "melon", "oranges", "apricot", "lemon", "lime"]


class FirstFrame:
    """Notes when the first reply text reaches the screen (installed on Textual's Markdown.append)."""

    def __init__(self) -> None:
        self.armed = False
        self.done = asyncio.Event()
        self.at: float | None = None
        original = Markdown.append
        tracker = self

        def append(widget: Markdown, markdown: str) -> Awaitable[None]:
            pending = original(widget, markdown)

            async def tracked() -> None:
                await pending
                parent = widget.parent
                if (tracker.armed and isinstance(parent, MessageView) and parent.message.role == "assistant"
                        and widget.source.strip()):
                    tracker.armed = False
                    widget.call_after_refresh(tracker._frame)

            return tracked()

        Markdown.append = append  # type: ignore[method-assign,assignment]

    def arm(self) -> None:
        self.armed, self.at = True, None
        self.done = asyncio.Event()

    def _frame(self) -> None:
        self.at = time.perf_counter()
        self.done.set()


def user_text(prefix: str, run: int) -> str:
    return f"{prefix} {run}: suggest a quick breakfast with {FRUITS[run % len(FRUITS)]} in one sentence."


async def server_first_token(client: httpx.AsyncClient, model: str, text: str) -> float:
    """The server's own time to first token: a bare streaming request, stopped at the first text."""
    message = Message(n=0, id="x", conversation_id="x", role="user", content=text, status="complete",
                      created_at="")
    messages, _ = build_messages([message], [], context_messages=20)
    body = {"model": model, "messages": messages, "stream": True, **PARAMS.to_dict()}
    return await raw_stream_first_token(client, body)


async def measure(label: str, base_url: str, model: str, data_dir: Path, runs: int, frame: FirstFrame) -> None:
    app_ctx = AppContext.create(data_dir)
    app_ctx.save_model_settings(ModelSettings(model=model, base_url=base_url, params=PARAMS))
    app = StudyApp(app_ctx)
    app_s: list[float] = []
    server_s: list[float] = []
    async with httpx.AsyncClient(base_url=base_url + "/", timeout=120) as client, \
            app.run_test(size=SIZE) as pilot:
        screen = app.screen
        assert isinstance(screen, ChatScreen)
        screen.extract_debounce_s = 24 * 3600.0
        await server_first_token(client, model, user_text("Warm", 0))  # opens the bare client's connection
        for run in range(runs + 1):
            before = await server_first_token(client, model, user_text("Pre", run))
            await pilot.press("ctrl+n")
            await pilot.pause()
            app.query_one(Composer).load_text(user_text("App", run))
            await pilot.pause()
            frame.arm()
            started = time.perf_counter()
            await pilot.press("enter")
            await asyncio.wait_for(frame.done.wait(), timeout=120)
            assert frame.at is not None
            took = frame.at - started
            # The rest of the reply; not app.workers.wait_for_complete(): the put-off extraction waits too.
            for worker in [w for w in screen.workers if w.group == REPLY_GROUP]:
                await worker.wait()
            await pilot.pause()
            after = await server_first_token(client, model, user_text("Raw", run))
            # The server's time just before and just after the app's turn: load from elsewhere on the
            # machine drifts, and the mean of both brackets the turn.
            server = (before + after) / 2
            print(f"    run {run}: app {took * 1000:7.1f} ms   server before {before * 1000:7.1f} ms, "
                  f"after {after * 1000:7.1f} ms", file=sys.stderr, flush=True)
            if run == 0:
                print(f"  {label}: first turn of the session (client created, connection opened): "
                      f"app {took * 1000:.1f} ms, server {server * 1000:.1f} ms")
                continue
            app_s.append(took)
            server_s.append(server)
    diffs = [a - s for a, s in zip(app_s, server_s, strict=True)]
    print(f"  {label}: Enter -> first token on screen  {describe_ms(app_s)}")
    print(f"  {label}: server's own first token (httpx) {describe_ms(server_s)}")
    print(f"  {label}: added by the client, per run     {describe_ms(diffs)}")
    print(f"  {label}: median(app) - median(server) = "
          f"{(statistics.median(app_s) - statistics.median(server_s)) * 1000:.1f} ms")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--no-llama", action="store_true", help="Skip the real llama_cpp.server.")
    parser.add_argument("--no-scripted", action="store_true", help="Skip the scripted server.")
    parser.add_argument("--empty", action="store_true", help="Start from an empty database, not 100,000 messages.")
    parser.add_argument("--diagnose", action="store_true",
                        help="Also run the scripted server with the sidebar rebuild (ChatScreen.refresh_list) "
                             "switched off: what rebuilding the conversation list on every send costs.")
    args = parser.parse_args()
    print(f"# bench_first_token  {machine()}  (commit {git_revision()})")
    frame = FirstFrame()
    with tempfile.TemporaryDirectory(prefix="bench-first-token-") as tmp_name:
        tmp = Path(tmp_name)

        def fresh_data_dir(name: str) -> Path:
            data_dir = tmp / name
            data_dir.mkdir()
            if not args.empty:
                shutil.copy(startup_history().path / "studyapp.db", data_dir / "studyapp.db")
            return data_dir

        print(f"history: {'empty' if args.empty else '100,000 messages, 200 conversations'}; "
              f"params {PARAMS.to_dict()}; {args.runs} runs after one first turn")
        if not args.no_scripted:
            with run_scripted_llm() as scripted:
                await measure("scripted", scripted.base_url, scripted.model, fresh_data_dir("scripted"),
                              args.runs, frame)
        if args.diagnose:
            rebuild = ChatScreen.refresh_list
            ChatScreen.refresh_list = lambda self: None  # type: ignore[method-assign]
            try:
                with run_scripted_llm() as scripted:
                    await measure("scripted, sidebar rebuild off", scripted.base_url, scripted.model,
                                  fresh_data_dir("scripted-no-rebuild"), args.runs, frame)
            finally:
                ChatScreen.refresh_list = rebuild  # type: ignore[method-assign]
        if not args.no_llama:
            with run_llama_server() as server:
                await measure("llama_cpp.server SmolLM2", server.base_url, server.model,
                              fresh_data_dir("llama"), args.runs, frame)


if __name__ == "__main__":
    asyncio.run(main())
