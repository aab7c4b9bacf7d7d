"""Does asking the study's questions slow the next turn? The time to the first token of a turn sent right
after answering a question, against the same turn in a study without questions.

Two real StudyApps (headless, Textual's pilot), both enrolled in a study with the same consent (so the privacy
gate runs in both), answering through the scripted server of the tests (it answers at once: what is measured is
nearly all the app's own time):

- ``asked``: the study asks an after_turn likert question after every reply (probability 1). Each run sends a
  message, waits for the reply and the question above the message box, answers it as a participant does (F5,
  then 4), waits until the answer is stored, and the next run's turn starts at once: its first token is the one
  measured. The answer is then on its way through the privacy gate (its worker thread) while that turn runs.
- ``none``: the same study without questions; each run sends a message and waits for the reply.

Each arm runs in blocks (a fresh app per block, the arms alternating) so that load from elsewhere on the shared
machine falls on both alike. A run's time is Enter pressed to the first reply text on screen (after the next
frame), as in bench_first_token.py. The first turn of every block (model client created, connection opened) is
left out. The difference of the medians comes with a 95 % bootstrap interval (runs resampled within each arm);
the time ``Asking.record`` takes on the event loop is reported too.

    .venv/bin/python bench/bench_asking.py [--blocks 6] [--runs 15]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from textual.pilot import Pilot

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import describe_ms, git_revision, machine
from bench_first_token import PARAMS, FirstFrame, user_text

from studyapp.context import AppContext
from studyapp.llm.config import ModelSettings
from studyapp.privacy.consent import ConsentService
from studyapp.store.questions import QuestionStore
from studyapp.study.asking import Asking
from studyapp.study.current import save_enrollment
from studyapp.study.protocol import parse_protocol
from studyapp.tui.app import StudyApp
from studyapp.tui.screens.chat import REPLY_GROUP, ChatScreen
from studyapp.tui.widgets.composer import Composer
from studyapp.tui.widgets.question import QuestionPrompt
from tests.support.protocols import ratings_study
from tests.support.scripted_llm import run_scripted_llm

SIZE = (120, 40)
CATEGORY = '''
[categories.question_answers]
required = false
'''
QUESTION = '''
[[questions]]
id = "written_for_you"
text = "Did that reply feel like it was written for you?"
type = "likert"
points = 5
labels = ["Not at all", "Completely"]
when = "after_turn"
probability = 1.0
daily_cap = 100000
'''


def enrolled_app(data_dir: Path, base_url: str, model: str, *, questions: bool) -> StudyApp:
    app_ctx = AppContext.create(data_dir)
    app_ctx.save_model_settings(ModelSettings(model=model, base_url=base_url, params=PARAMS))
    protocol = parse_protocol(ratings_study("bench-asking", "Asking", CATEGORY + (QUESTION if questions else "")))
    save_enrollment(app_ctx.db, protocol, participant_id="p1")
    app_ctx.db.execute("UPDATE studies SET enrolled_at = ?", [(datetime.now(UTC) - timedelta(days=1)).isoformat()])
    app_ctx.db.conn.commit()
    ConsentService(app_ctx.db).grant(protocol, ["ratings", "question_answers"])
    app = StudyApp(app_ctx, extract_debounce_s=None)
    # Comparisons never: every turn is an ordinary reply.
    from dataclasses import replace

    from studyapp.study.schedule import ComparisonScheduler

    schedule = app.services.study.protocol.comparisons
    app.services.study.scheduler = ComparisonScheduler(replace(schedule, probability=0.0))
    return app


async def until(condition: object, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        await asyncio.sleep(0.002)


async def block(label: str, app: StudyApp, runs: int, frame: FirstFrame, record_s: list[float], *,
                settle: bool = False, gate_s: list[float] | None = None) -> list[float]:
    """One app, ``runs`` measured turns (after one first turn); returns Enter -> first token of each."""
    times: list[float] = []
    gate_s = gate_s if gate_s is not None else []
    asking = app.services.asking
    original = Asking.record

    def timed_record(self: Asking, answer: object) -> None:
        started = time.perf_counter()
        original(self, answer)  # type: ignore[arg-type]
        record_s.append(time.perf_counter() - started)

    asking.record = timed_record.__get__(asking)  # type: ignore[method-assign]
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        assert isinstance(screen, ChatScreen)
        await app.services.participation.flush()  # the gate's start-up drain (and its anonymizer) out of the way
        store = QuestionStore(app.services.app_ctx.db)
        for run in range(runs + 1):
            await pilot.press("ctrl+n")
            await pilot.pause()
            app.query_one(Composer).load_text(user_text(label, run))
            await pilot.pause()
            frame.arm()
            started = time.perf_counter()
            await pilot.press("enter")
            await asyncio.wait_for(frame.done.wait(), timeout=120)
            assert frame.at is not None
            if run:
                times.append(frame.at - started)
            for worker in [w for w in screen.workers if w.group == REPLY_GROUP]:
                await worker.wait()
            await pilot.pause()
            if label == "asked":
                await answer_the_question(pilot, screen, store, answered=run)
            if settle:
                # The privacy gate has passed the answer to the outbox before the next turn (as it has by the
                # time a person typed their next message).
                started = time.perf_counter()
                await app.services.participation.flush()
                gate_s.append(time.perf_counter() - started)
    return times


async def answer_the_question(pilot: Pilot[None], screen: ChatScreen, store: QuestionStore, *, answered: int) -> None:
    """Wait for the question above the message box, answer it (F5, 4), and wait until it is stored."""
    prompt = screen.query_one(QuestionPrompt)
    await until(lambda: bool(prompt.display), "the question")
    await pilot.press("f5", "4")
    await until(lambda: sum(1 for a in store.list() if a.status == "answered") > answered, "the answer stored")


def bootstrap_median_difference(a: list[float], b: list[float], *, rounds: int = 5000,
                                seed: int = 1) -> tuple[float, float]:
    rng = random.Random(seed)
    diffs = sorted(statistics.median(rng.choices(a, k=len(a))) - statistics.median(rng.choices(b, k=len(b)))
                   for _ in range(rounds))
    return diffs[int(0.025 * rounds)], diffs[int(0.975 * rounds) - 1]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--blocks", type=int, default=6, help="Blocks per arm (the arms alternate).")
    parser.add_argument("--runs", type=int, default=15, help="Measured turns per block.")
    parser.add_argument("--settle", action="store_true",
                        help="Wait for the privacy gate to pass the answer on before the next turn (both arms).")
    args = parser.parse_args()
    print(f"# bench_asking  {machine()}  (commit {git_revision()})")
    print(f"{args.blocks} blocks x {args.runs} turns per arm, scripted server, empty history, "
          f"params {PARAMS.to_dict()}{', the gate settled before each turn' if args.settle else ''}")
    frame = FirstFrame()
    times: dict[str, list[float]] = {"asked": [], "none": []}
    record_s: list[float] = []
    gate_s: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-asking-") as tmp_name, run_scripted_llm() as scripted:
        scripted.set_default("Overnight oats with berries.")
        for number in range(args.blocks):
            order = ("asked", "none") if number % 2 == 0 else ("none", "asked")
            for label in order:
                data_dir = Path(tmp_name) / f"{label}-{number}"
                app = enrolled_app(data_dir, scripted.base_url, scripted.model, questions=label == "asked")
                got = await block(label, app, args.runs, frame, record_s, settle=args.settle,
                                  gate_s=gate_s if label == "asked" else None)
                times[label] += got
                print(f"    block {number} {label}: p50 {statistics.median(got) * 1000:.1f} ms",
                      file=sys.stderr, flush=True)
    for label, values in times.items():
        print(f"  {label:5}: Enter -> first token on screen  {describe_ms(values)}")
    low, high = bootstrap_median_difference(times["asked"], times["none"])
    difference = statistics.median(times["asked"]) - statistics.median(times["none"])
    print(f"  median(asked) - median(none) = {difference * 1000:+.1f} ms  "
          f"(95 % bootstrap interval {low * 1000:+.1f} .. {high * 1000:+.1f} ms)")
    print(f"  Asking.record on the event loop: {describe_ms(record_s)}")
    if gate_s:
        print(f"  the privacy gate passing an answer on (asked, off the loop): {describe_ms(gate_s)}")


if __name__ == "__main__":
    asyncio.run(main())
