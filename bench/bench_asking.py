"""Does asking the study's questions slow the next turn? The time to the first token of a turn sent right
after answering a question, against a turn after which nothing was asked.

One real StudyApp (headless, Textual's pilot), enrolled in a study whose after_turn likert question comes after
every reply (probability 1), its answers consented (so the privacy gate runs), answering through the scripted
server of the tests (it answers at once: what is measured is nearly all the app's own time). Before each turn a
seeded coin decides what follows it:

- ``asked``: the question comes above the message box; the participant answers it as a person does (F5, then 4);
  once the answer is stored the next turn starts at once, while the privacy gate passes the answer on in its
  thread (``--settle``: the next turn waits for the gate, as it has by the time a person typed a message);
- ``none``: nothing is asked (``Services.asking`` for that turn is an ``Asking`` over the same study without
  its questions), and the next turn starts once the reply is done.

The next turn's time (Enter pressed to the first reply text on screen, after the next frame, as in
bench_first_token.py) counts for the arm of the turn before it. Interleaving the arms turn by turn in one app
lets the load from elsewhere on the shared machine fall on both alike. The difference of the medians comes with
a 95 % bootstrap interval (turns resampled within each arm); the time ``Asking.record`` takes on the event loop
is reported too.

    .venv/bin/python bench/bench_asking.py [--runs 200] [--settle]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from dataclasses import replace
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
from studyapp.study.schedule import ComparisonScheduler
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


def enrolled_app(data_dir: Path, base_url: str, model: str) -> StudyApp:
    app_ctx = AppContext.create(data_dir)
    app_ctx.save_model_settings(ModelSettings(model=model, base_url=base_url, params=PARAMS))
    protocol = parse_protocol(ratings_study("bench-asking", "Asking", CATEGORY + QUESTION))
    save_enrollment(app_ctx.db, protocol, participant_id="p1")
    app_ctx.db.execute("UPDATE studies SET enrolled_at = ?", [(datetime.now(UTC) - timedelta(days=1)).isoformat()])
    app_ctx.db.conn.commit()
    ConsentService(app_ctx.db).grant(protocol, ["ratings", "question_answers"])
    app = StudyApp(app_ctx, extract_debounce_s=None)
    # Comparisons never: every turn is an ordinary reply.
    schedule = app.services.study.protocol.comparisons
    app.services.study.scheduler = ComparisonScheduler(replace(schedule, probability=0.0))
    return app


async def until(condition: object, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        await asyncio.sleep(0.002)


async def measure(app: StudyApp, runs: int, frame: FirstFrame, *, settle: bool,
                  seed: int = 1) -> tuple[dict[str, list[float]], list[float], list[float]]:
    """``runs`` measured turns after one first turn: (Enter -> first token by arm, record times, gate times)."""
    times: dict[str, list[float]] = {"asked": [], "none": []}
    record_s: list[float] = []
    gate_s: list[float] = []
    study = app.services.participation.study
    asking = app.services.asking
    silent = Asking(app.services.app_ctx.db, replace(study, protocol=replace(study.protocol, questions=())))
    original = Asking.record

    def timed_record(self: Asking, answer: object) -> None:
        started = time.perf_counter()
        original(self, answer)  # type: ignore[arg-type]
        record_s.append(time.perf_counter() - started)

    asking.record = timed_record.__get__(asking)  # type: ignore[method-assign]
    coin = random.Random(seed)
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        assert isinstance(screen, ChatScreen)
        await app.services.participation.flush()  # the gate's start-up (its anonymizer) out of the way
        store = QuestionStore(app.services.app_ctx.db)
        before: str | None = None  # the arm of the turn before this one
        answered = 0
        for run in range(runs + 1):
            arm = coin.choice(("asked", "none"))
            app.services.asking = asking if arm == "asked" else silent
            await pilot.press("ctrl+n")
            await pilot.pause()
            app.query_one(Composer).load_text(user_text(arm, run))
            await pilot.pause()
            frame.arm()
            started = time.perf_counter()
            await pilot.press("enter")
            await asyncio.wait_for(frame.done.wait(), timeout=120)
            assert frame.at is not None
            if before is not None:
                times[before].append(frame.at - started)
            for worker in [w for w in screen.workers if w.group == REPLY_GROUP]:
                await worker.wait()
            await pilot.pause()
            if arm == "asked":
                await answer_the_question(pilot, screen, store, answered=answered)
                answered += 1
            if settle:
                gate_started = time.perf_counter()
                await app.services.participation.flush()
                if arm == "asked":
                    gate_s.append(time.perf_counter() - gate_started)
            before = arm
            if run % 20 == 0:
                print(f"    run {run} of {runs}", file=sys.stderr, flush=True)
    return times, record_s, gate_s


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
    parser.add_argument("--runs", type=int, default=200, help="Measured turns (after one first turn).")
    parser.add_argument("--settle", action="store_true",
                        help="Wait for the privacy gate to pass the answer on before the next turn (both arms).")
    args = parser.parse_args()
    print(f"# bench_asking  {machine()}  (commit {git_revision()})")
    print(f"{args.runs} turns, arms interleaved by a seeded coin, scripted server, empty history, "
          f"params {PARAMS.to_dict()}{', the gate settled before each turn' if args.settle else ''}")
    frame = FirstFrame()
    with tempfile.TemporaryDirectory(prefix="bench-asking-") as tmp_name, run_scripted_llm() as scripted:
        scripted.set_default("Overnight oats with berries.")
        app = enrolled_app(Path(tmp_name) / "data", scripted.base_url, scripted.model)
        times, record_s, gate_s = await measure(app, args.runs, frame, settle=args.settle)
    for label, values in times.items():
        print(f"  after {label:5}: Enter -> first token on screen  {describe_ms(values)}")
    low, high = bootstrap_median_difference(times["asked"], times["none"])
    difference = statistics.median(times["asked"]) - statistics.median(times["none"])
    print(f"  median(asked) - median(none) = {difference * 1000:+.1f} ms  "
          f"(95 % bootstrap interval {low * 1000:+.1f} .. {high * 1000:+.1f} ms)")
    print(f"  Asking.record on the event loop: {describe_ms(record_s)}")
    if gate_s:
        print(f"  the privacy gate passing an answer on (off the loop): {describe_ms(gate_s)}")


if __name__ == "__main__":
    asyncio.run(main())
