"""The embedded model's first answers: which sampling settings keep SmolLM2-135M on topic, in the participant's
language and out of loops (issue 17).

Each candidate setting (sampling parameters plus an optional system prompt) answers every prompt of one prompt set
once per seed, through ``LocalModel.stream`` as the app does (same parameter filtering, same system prompt
handling). Two prompt sets, never mixed:

- ``tuning``: 10 everyday prompts used only to choose the defaults (``--set tuning`` runs every candidate);
- ``report``: the fixed set of 20 prompts the issue reports on, run only for the settings before (``before``) and
  after (``defaults``, read from studyapp.llm.config) the change, so the reported numbers are not tuned on.

Per candidate it prints:

- **language**: share of replies whose language, as langdetect identifies it, is the prompt's language. An empty
  reply counts as wrong. langdetect is seeded (``DetectorFactory.seed = 0``) so the same text always gets the same
  answer; it runs offline from the profiles inside its wheel.
- **loop**: share of replies that end in a loop, meaning either (a) the reply hit ``max_tokens``
  (llama.cpp's ``finish_reason == "length"``), or (b) its last 200 characters (whitespace collapsed) are periodic
  with a period of at most 66 characters: the same stretch of text repeated at least 3 times, as in
  "e não e não e não". The two causes are also counted separately (``hit limit``, ``repeating tail``).
- mean reply length in characters, and mean seconds per reply (llama.cpp with ``--threads`` threads).

The language identifier is a bench-only dependency: ``pip install 'studyapp[bench]'`` (or
``pip install 'langdetect>=1.0.9,<2'``).

    .venv/bin/python bench/bench_local_defaults.py --set tuning [--seeds 1 2] [--threads 1]
    .venv/bin/python bench/bench_local_defaults.py --set report --candidates before defaults

``--show`` prints every reply (what a newcomer would read); ``--json PATH`` saves them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import machine

from studyapp.llm.base import ChatParams
from studyapp.llm.local import LocalModel

try:
    from langdetect import DetectorFactory, LangDetectException, detect
except ImportError:  # pragma: no cover - a clear message instead of a traceback
    sys.exit("This benchmark identifies languages with langdetect: pip install 'studyapp[bench]' "
             "(or pip install 'langdetect>=1.0.9,<2'), then run it again.")

DetectorFactory.seed = 0

# The fixed set of 20 the issue reports on: (language, prompt). Mostly English, as participants' messages are.
REPORT_PROMPTS: list[tuple[str, str]] = [
    ("en", "What should I eat before a morning run?"),
    ("en", "Can you suggest a quick vegetarian dinner for two?"),
    ("en", "How do I politely decline a meeting invitation?"),
    ("en", "Give me three tips for sleeping better."),
    ("en", "What is a good way to start learning the guitar?"),
    ("en", "Write a short birthday message for my sister."),
    ("en", "How can I save money on groceries?"),
    ("en", "What should I pack for a weekend hiking trip?"),
    ("en", "Explain what a budget spreadsheet is in simple words."),
    ("en", "How often should I water a basil plant?"),
    ("en", "What are some easy stretches after sitting all day?"),
    ("en", "Recommend a board game for a family with young kids."),
    ("en", "How do I make a good cup of coffee at home?"),
    ("en", "What can I do on a rainy Sunday afternoon?"),
    ("de", "Was kann ich heute Abend schnell kochen?"),
    ("de", "Wie kann ich mich morgens besser motivieren?"),
    ("es", "¿Qué puedo desayunar antes de ir al gimnasio?"),
    ("es", "¿Cómo puedo aprender vocabulario más rápido?"),
    ("fr", "Que puis-je cuisiner avec des pommes de terre et des œufs ?"),
    ("fr", "Comment organiser ma semaine de travail ?"),
]

# Used only to choose the defaults; none of them is in the report set.
TUNING_PROMPTS: list[tuple[str, str]] = [
    ("en", "What is a healthy snack for the afternoon?"),
    ("en", "How do I write a polite email asking for a day off?"),
    ("en", "Suggest a name for a grey kitten."),
    ("en", "How long should I boil an egg for a soft yolk?"),
    ("en", "What is a good gift for a friend who likes reading?"),
    ("en", "How can I focus better when working from home?"),
    ("de", "Welche Bücher kannst du mir für den Urlaub empfehlen?"),
    ("es", "¿Qué hago si mi planta tiene hojas amarillas?"),
    ("fr", "Quel sport puis-je faire en hiver ?"),
    ("en", "Tips for a first day at a new job?"),
]

SYSTEM_PROMPT = "You are a helpful assistant. Answer in the language of the user's message, briefly."


@dataclass(frozen=True)
class Candidate:
    params: ChatParams
    system_prompt: str | None = None


def _defaults() -> Candidate:
    """What the app now sends to the embedded model (studyapp.llm.config)."""
    from studyapp.llm import config

    return Candidate(config.default_params(config.LOCAL), config.LOCAL_SYSTEM_PROMPT)


CANDIDATES: dict[str, Candidate] = {
    # The settings before issue 17: ChatParams' generic defaults, no system prompt.
    "before": Candidate(ChatParams(temperature=0.7, max_tokens=512)),
    "t0.7-rp1.1-sys": Candidate(ChatParams(temperature=0.7, max_tokens=256,
                                           extra={"min_p": 0.05, "repeat_penalty": 1.1}), SYSTEM_PROMPT),
    "t0.3-rp1.1-sys": Candidate(ChatParams(temperature=0.3, max_tokens=256,
                                           extra={"min_p": 0.1, "repeat_penalty": 1.1}), SYSTEM_PROMPT),
    "t0.3-rp1.1": Candidate(ChatParams(temperature=0.3, max_tokens=256,
                                       extra={"min_p": 0.1, "repeat_penalty": 1.1})),
    "t0.3-rp1.2-sys": Candidate(ChatParams(temperature=0.3, max_tokens=256,
                                           extra={"min_p": 0.1, "repeat_penalty": 1.2}), SYSTEM_PROMPT),
    "t0.2-p0.9-rp1.15-sys": Candidate(ChatParams(temperature=0.2, top_p=0.9, max_tokens=256,
                                                 extra={"min_p": 0.1, "repeat_penalty": 1.15}), SYSTEM_PROMPT),
}
TUNING_CANDIDATES = [name for name in CANDIDATES if name != "before"]

TAIL_CHARS = 200
MAX_PERIOD = TAIL_CHARS // 3


def repeating_tail(reply: str) -> bool:
    """True if the last 200 characters (whitespace collapsed) repeat one stretch of ≤66 characters ≥3 times."""
    text = re.sub(r"\s+", " ", reply).strip()
    if len(text) < TAIL_CHARS:
        return False
    tail = text[-TAIL_CHARS:]
    return any(all(tail[i] == tail[i + period] for i in range(TAIL_CHARS - period))
               for period in range(1, MAX_PERIOD + 1))


def language_of(reply: str) -> str | None:
    try:
        return detect(reply) if reply.strip() else None
    except LangDetectException:  # no letters at all
        return None


@dataclass
class Outcome:
    prompt: str
    expected: str
    seed: int
    reply: str
    finish_reason: str | None
    seconds: float
    language: str | None = None
    hit_limit: bool = False
    repeating: bool = False

    def __post_init__(self) -> None:
        self.language = language_of(self.reply)
        self.hit_limit = self.finish_reason == "length"
        self.repeating = repeating_tail(self.reply)

    @property
    def in_language(self) -> bool:
        return self.language == self.expected

    @property
    def looped(self) -> bool:
        return self.hit_limit or self.repeating


@dataclass
class Result:
    name: str
    outcomes: list[Outcome] = field(default_factory=list)

    def row(self) -> str:
        n = len(self.outcomes)

        def share(flag: str) -> str:
            hits = sum(bool(getattr(o, flag)) for o in self.outcomes)
            return f"{hits}/{n} ({100 * hits / n:.0f}%)"

        length = statistics.mean(len(o.reply) for o in self.outcomes)
        seconds = statistics.mean(o.seconds for o in self.outcomes)
        return (f"| {self.name} | {share('in_language')} | {share('looped')} | {share('hit_limit')} | "
                f"{share('repeating')} | {length:.0f} | {seconds:.1f} |")


async def run_candidate(model: LocalModel, name: str, candidate: Candidate, prompts: list[tuple[str, str]],
                        seeds: list[int], show: bool) -> Result:
    model.system_prompt = candidate.system_prompt
    result = Result(name)
    for seed in seeds:
        params = ChatParams(temperature=candidate.params.temperature, top_p=candidate.params.top_p,
                            max_tokens=candidate.params.max_tokens, seed=seed, extra=candidate.params.extra)
        for expected, prompt in prompts:
            started = time.perf_counter()
            reply = "".join([d async for d in model.stream([{"role": "user", "content": prompt}], params)])
            outcome = Outcome(prompt, expected, seed, reply, model.last_finish_reason,
                              time.perf_counter() - started)
            result.outcomes.append(outcome)
            if show:
                flags = f"lang={outcome.language} loop={outcome.looped} finish={outcome.finish_reason}"
                print(f"--- {name} seed {seed} [{expected}] {prompt}\n{reply.strip()}\n    ({flags})", flush=True)
    return result


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", choices=("tuning", "report"), default="tuning",
                        help="tuning: the 10 prompts the defaults are chosen on; report: the fixed 20")
    parser.add_argument("--candidates", nargs="+", default=None,
                        help=f"names among {', '.join([*CANDIDATES, 'defaults'])} (default: all tuning "
                             "candidates for --set tuning, 'before defaults' for --set report)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--threads", type=int, default=1, help="llama.cpp threads (the machine is shared)")
    parser.add_argument("--show", action="store_true", help="print every reply")
    parser.add_argument("--json", type=Path, default=None, help="save every reply and its verdicts here")
    args = parser.parse_args()
    names = args.candidates or (TUNING_CANDIDATES if args.set == "tuning" else ["before", "defaults"])
    unknown = [n for n in names if n not in CANDIDATES and n != "defaults"]
    if unknown:
        sys.exit(f"Unknown candidate(s) {', '.join(unknown)}; choose among {', '.join([*CANDIDATES, 'defaults'])}.")
    prompts = TUNING_PROMPTS if args.set == "tuning" else REPORT_PROMPTS
    print(f"# {machine()}")
    print(f"# {args.set} set: {len(prompts)} prompts x seeds {args.seeds}; llama.cpp threads {args.threads}")
    model = LocalModel(n_threads=args.threads)
    await model.load()
    results = []
    try:
        for name in names:
            candidate = _defaults() if name == "defaults" else CANDIDATES[name]
            print(f"# {name}: {candidate.params.to_dict()} system prompt {candidate.system_prompt!r}", flush=True)
            results.append(await run_candidate(model, name, candidate, prompts, args.seeds, args.show))
            print(results[-1].row(), flush=True)
    finally:
        await model.aclose()
    print("\n| setting | in prompt's language | ends in a loop | hit limit | repeating tail | mean chars | s/reply |")
    print("|---|---|---|---|---|---|---|")
    for result in results:
        print(result.row())
    if args.json:
        args.json.write_text(json.dumps({r.name: [{**o.__dict__} for o in r.outcomes] for r in results},
                                        ensure_ascii=False, indent=1))


if __name__ == "__main__":
    asyncio.run(main())
