"""Long histories: opening a 10,000-message conversation in the app, and searching 1,000,000 messages.

Open: the real StudyApp (headless, pilot) on the 100,000-message data dir of bench_startup (200
conversations, one of 10,000 messages). Each run first opens a small conversation, then times
``ChatScreen.open_conversation`` of the 10,000-message one, the call the sidebar's selection makes,
from the request until its page is mounted and the next frame refreshed. Loading one earlier page
(Ctrl+B, ``action_load_earlier``) is timed the same way.

Search: ``ConversationStore.search`` (SQLite FTS5, porter stemming, every word a prefix, best 50 by
rank, with snippets) over a database of 1,000,000 messages in 2,000 conversations, 100 queries of 1-2
words a participant might remember (drawn from the same vocabulary as the messages, stop words left
out), after one warm-up query. Opening that database (``open_database``: checks, pragmas, migrations)
is timed too, since the app does it at every start.

Both databases are built once into the benchmark cache (see _common.py): 100,000 messages take about
half a minute, 1,000,000 about five minutes on 2 shared cores.

With ``--diagnose``, the parts of opening are timed alone: mounting the page of 50 messages, mounting
10, and rebuilding the sidebar's conversation list (``ChatScreen.refresh_list``).

    .venv/bin/python bench/bench_history.py [--runs 7] [--queries 100] [--skip-search] [--skip-open] [--diagnose]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import TextMaker, build_history, describe_ms, git_revision, machine, percentile, startup_history

SIZE = (120, 40)


async def after_refresh(widget: object) -> None:
    """Wait for the next refresh of the screen (the frame that shows what was just mounted)."""
    done = asyncio.get_running_loop().create_future()
    widget.call_after_refresh(lambda: done.done() or done.set_result(None))  # type: ignore[attr-defined]
    await done


async def bench_open(runs: int, diagnose: bool) -> None:
    from studyapp.context import AppContext
    from studyapp.tui.app import StudyApp
    from studyapp.tui.screens.chat import ChatScreen
    from studyapp.tui.widgets.message_view import ConversationView, MessageView

    history = startup_history()
    big = history.big_conversation_id
    with tempfile.TemporaryDirectory(prefix="bench-history-") as tmp_name:
        data_dir = Path(tmp_name) / "data"
        data_dir.mkdir()
        shutil.copy(history.path / "studyapp.db", data_dir / "studyapp.db")
        app = StudyApp(AppContext.create(data_dir))
        opened: list[float] = []
        earlier: list[float] = []
        async with app.run_test(size=SIZE) as pilot:
            screen = app.screen
            assert isinstance(screen, ChatScreen)
            screen.extract_debounce_s = 24 * 3600.0
            conversations = app.services.conversations
            small = next(c.id for c in conversations.list() if c.id != big)
            total = conversations.count_messages(big)  # type: ignore[arg-type]
            for run in range(runs + 1):
                await screen.open_conversation(small)
                await pilot.pause()
                started = time.perf_counter()
                await screen.open_conversation(big)
                await after_refresh(screen)
                took = time.perf_counter() - started
                view = screen.query_one(ConversationView)
                mounted = len(view.query(MessageView))
                await pilot.pause()
                started = time.perf_counter()
                await screen.action_load_earlier()
                await after_refresh(screen)
                took_earlier = time.perf_counter() - started
                if run == 0:
                    print(f"conversation of {total:,} messages: {mounted} mounted on open, "
                          f"{len(view.query(MessageView))} after one 'load earlier'")
                    continue
                opened.append(took)
                earlier.append(took_earlier)
                await pilot.pause()
            if diagnose:
                await split_open(app, pilot, big, runs)  # type: ignore[arg-type]
    print(f"open the {total:,}-message conversation (request -> page mounted and painted), {runs} runs:")
    print(f"  {describe_ms(opened)}")
    print(f"load one earlier page (Ctrl+B):\n  {describe_ms(earlier)}")


async def split_open(app: object, pilot: object, conversation_id: str, runs: int) -> None:
    """Where opening goes: mounting the page of messages vs rebuilding the sidebar's conversation list."""
    from studyapp.tui.screens.chat import PAGE_SIZE
    from studyapp.tui.widgets.message_view import ConversationView

    screen = app.screen  # type: ignore[attr-defined]
    view = screen.query_one(ConversationView)
    messages = app.services.conversations.messages(conversation_id, limit=PAGE_SIZE)  # type: ignore[attr-defined]
    steps = {
        f"mount a page of {len(messages)} messages": lambda: view.show(messages, has_earlier=True),
        "mount 10 messages": lambda: view.show(messages[-10:], has_earlier=True),
        f"rebuild the sidebar ({len(app.services.conversations.list())} conversations)":  # type: ignore[attr-defined]
            screen.refresh_list,
    }
    results: dict[str, list[float]] = {label: [] for label in steps}
    for run in range(runs + 1):
        for label, step in steps.items():
            await view.show([], has_earlier=False)
            await pilot.pause()  # type: ignore[attr-defined]
            started = time.perf_counter()
            result = step()
            if result is not None:
                await result
            await after_refresh(screen)
            if run:
                results[label].append(time.perf_counter() - started)
    print("where opening goes (each step alone, then the frame):")
    for label, values in results.items():
        print(f"  {label:40s} {describe_ms(values)}")


def bench_search(queries: int) -> None:
    from studyapp.store.conversations import ConversationStore
    from studyapp.store.db import open_database

    history = build_history("history-1m", messages=1_000_000, conversations=2000)
    if history.build_s is not None:
        print(f"built {history.messages:,} messages in {history.build_s:.0f} s")
    path = history.path / "studyapp.db"
    size_mb = path.stat().st_size / 1e6
    opens = []
    for _ in range(3):
        started = time.perf_counter()
        db = open_database(path)
        opens.append(time.perf_counter() - started)
        db.close()
    db = open_database(path)
    store = ConversationStore(db)
    maker = TextMaker(seed=2)
    texts = [maker.query() for _ in range(queries)]
    started = time.perf_counter()
    store.search("breakfast")
    warm_up = time.perf_counter() - started
    timings: list[tuple[float, str, int]] = []
    for text in texts:
        started = time.perf_counter()
        hits = store.search(text)
        timings.append((time.perf_counter() - started, text, len(hits)))
    db.close()
    values = [t for t, _, _ in timings]
    print(f"database: {history.messages:,} messages, {history.conversations:,} conversations, {size_mb:.0f} MB")
    print(f"open_database (quick_check, pragmas, migrations): median "
          f"{statistics.median(opens) * 1000:.0f} ms of 3")
    print(f"first search after opening (cold caches): {warm_up * 1000:.1f} ms")
    print(f"ConversationStore.search, {queries} queries of 1-2 words (best 50 by rank, with snippets):")
    print(f"  {describe_ms(values)}")
    print(f"  p50 {statistics.median(values) * 1000:.1f} ms, p95 {percentile(values, 95) * 1000:.1f} ms; "
          f"queries with 50 hits (the limit): {sum(1 for *_, n in timings if n == 50)}, "
          f"with none: {sum(1 for *_, n in timings if n == 0)}")
    slowest = sorted(timings, reverse=True)[:5]
    print("  slowest: " + "; ".join(f"{text!r} {t * 1000:.0f} ms" for t, text, _ in slowest))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--skip-open", action="store_true")
    parser.add_argument("--skip-search", action="store_true")
    parser.add_argument("--diagnose", action="store_true",
                        help="Also time the parts of opening: mounting messages, rebuilding the sidebar.")
    args = parser.parse_args()
    print(f"# bench_history  {machine()}  (commit {git_revision()})")
    if not args.skip_open:
        asyncio.run(bench_open(args.runs, args.diagnose))
    if not args.skip_search:
        bench_search(args.queries)


if __name__ == "__main__":
    main()
