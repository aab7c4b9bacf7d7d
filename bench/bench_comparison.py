"""Comparison turns: time from the participant's message to both answers shown, against a single answer.

A comparison generates two arms concurrently, so with a server that streams concurrent requests in
parallel it should take about as long as its slower arm alone (ratio ~1.0); with the embedded model, which
runs one generation at a time, the arms run one after the other and the comparison should take about the
sum of the two (ratio ~1.0 against the sum). Each run goes through ``ComparisonRunner.run`` into a real
SQLite file (both messages, flushes, the comparison row), exactly as the app does.

    .venv/bin/python bench/bench_comparison.py [--runs 5] [--tokens-per-s 40] [--no-local]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from studyapp.domain import Message
from studyapp.llm.base import ChatModel, ChatParams
from studyapp.llm.openai_compat import OpenAICompatModel
from studyapp.personalize.generate import build_messages
from studyapp.store.comparisons import ComparisonStore
from studyapp.store.conversations import ConversationStore
from studyapp.store.db import open_database
from studyapp.study.comparison import AttributeChoice, ComparisonRunner
from tests.support.scripted_llm import run_scripted_llm

ATTRIBUTES = [AttributeChoice("Is vegetarian", "a1"), AttributeChoice("Lives in a small flat", "a2")]
QUESTION = "What should I cook tonight? Give me one idea in two sentences."


async def single_arm(model: ChatModel, history: Sequence[Message], attributes: Sequence[str] | None,
                     params: ChatParams) -> float:
    """Seconds to stream one ordinary reply to the end."""
    messages, _ = build_messages(history, attributes)
    started = time.perf_counter()
    async for _ in model.stream(messages, params):
        pass
    return time.perf_counter() - started


async def comparison(runner: ComparisonRunner, conversations: ConversationStore) -> tuple[float, Message]:
    conv = conversations.create("bench")
    prompt = conversations.add_message(conv.id, "user", QUESTION)
    started = time.perf_counter()
    await runner.run(conv.id, prompt, ATTRIBUTES)
    return time.perf_counter() - started, prompt


def report(title: str, both: list[float], reference: list[float], reference_name: str) -> dict[str, Any]:
    b, r = statistics.median(both), statistics.median(reference)
    # Each run's pair is measured back to back, so its ratio is robust to a machine that gets busier.
    paired = statistics.median(x / y for x, y in zip(both, reference, strict=True))

    def runs(values: list[float]) -> str:
        return ", ".join(f"{v * 1000:.0f}" for v in values)

    print(title)
    print(f"  both arms shown        median {b * 1000:8.0f} ms  (runs: {runs(both)})")
    print(f"  {reference_name:<22} median {r * 1000:8.0f} ms  (runs: {runs(reference)})")
    print(f"  ratio of medians       {b / r:8.2f}")
    print(f"  median paired ratio    {paired:8.2f}")
    return {"both_ms": b * 1000, "reference_ms": r * 1000, "ratio": b / r, "paired_ratio": paired}


async def bench_scripted(runs: int, tokens_per_s: float, folder: Path) -> None:
    # The arms differ in length, as real ones do: the personalized one is the slower here.
    generic = " ".join(f"g{i}" for i in range(40))
    personal = " ".join(f"p{i}" for i in range(60))
    with run_scripted_llm(tokens_per_s=tokens_per_s) as llm:
        llm.set_default(lambda body: personal if "Is vegetarian" in body["messages"][0]["content"] else generic)
        model = OpenAICompatModel(llm.base_url, llm.model)
        db = open_database(folder / "scripted.db")
        conversations = ConversationStore(db)
        runner = ComparisonRunner(model, conversations, ComparisonStore(db), params=ChatParams(max_tokens=200))
        await comparison(runner, conversations)  # warm-up: connections, templates
        both, slower = [], []
        for _ in range(runs):
            seconds, prompt = await comparison(runner, conversations)
            both.append(seconds)
            history = conversations.messages(prompt.conversation_id)
            slower.append(await single_arm(model, history, [a.text for a in ATTRIBUTES], runner.params))
        await model.aclose()
        db.close()
    report(f"Scripted OpenAI-compatible server, {tokens_per_s:g} tokens/s per stream, arms of 40 and 60 tokens "
           f"({runs} runs)", both, slower, "slower arm alone")


async def bench_local(runs: int, folder: Path) -> None:
    from studyapp.llm.local import LocalModel, unavailable_reason

    reason = unavailable_reason()
    if reason:
        print(f"Embedded model: skipped ({reason})")
        return
    model = LocalModel()
    await model.load()
    params = ChatParams(temperature=0.0, max_tokens=48, seed=1)
    db = open_database(folder / "local.db")
    conversations = ConversationStore(db)
    runner = ComparisonRunner(model, conversations, ComparisonStore(db), params=params)
    await comparison(runner, conversations)  # warm-up
    both, total = [], []
    for _ in range(runs):
        seconds, prompt = await comparison(runner, conversations)
        both.append(seconds)
        history = conversations.messages(prompt.conversation_id)
        generic = await single_arm(model, history, None, params)
        personal = await single_arm(model, history, [a.text for a in ATTRIBUTES], params)
        total.append(generic + personal)
    await model.aclose()
    db.close()
    report(f"Embedded SmolLM2-135M (llama-cpp-python, arms one after the other), max 48 tokens ({runs} runs)",
           both, total, "sum of the two arms")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tokens-per-s", type=float, default=40.0)
    parser.add_argument("--no-local", action="store_true", help="Skip the embedded model.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        await bench_scripted(args.runs, args.tokens_per_s, Path(tmp))
        if not args.no_local:
            await bench_local(args.runs, Path(tmp))


if __name__ == "__main__":
    asyncio.run(main())
