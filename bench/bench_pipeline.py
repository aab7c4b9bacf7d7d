"""Benchmark: personalization cost against the embedded model as memory grows.

    .venv/bin/python bench/bench_pipeline.py [--sizes 10 100 500] [--repeats 3]

Prints, for each memory size:
- selection (stage 2): prompt tokens (SmolLM2 tokenizer over the message text, +4 per message for the chat
  template), whether prompt + expected output fits the 2048-token context, latency of the one structured
  call, how many attributes the model answered for (the rest are recorded "no decision from model");
  sizes that do not fit are reported and the largest size that fits is measured instead (the output budget is
  40 tokens per attribute, so with the 2048 context the prompt is not the only limit);
- extraction (stage 1 + reconciliation) of two new user messages against a memory of that size:
  latency, model calls, prompt tokens (reconciliation shows at most 20 similar attributes, so it stays flat);
- message-to-first-token for the participant with personalization off (generic reply) and on (selection
  over a 10-attribute memory, then the personalized reply), medians over --repeats, and their ratio.

Everything runs on a temporary database; nothing is downloaded.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from studyapp.domain import Attribute
from studyapp.llm.base import ChatMessage, ChatParams
from studyapp.llm.local import LocalModel
from studyapp.personalize.extract import Extractor
from studyapp.personalize.generate import build_messages
from studyapp.personalize.memory import Proposal, Reconciler
from studyapp.personalize.select import NO_DECISION, TOKENS_PER_DECISION, Selector
from studyapp.store.conversations import ConversationStore
from studyapp.store.db import open_database
from studyapp.store.memory import MemoryStore

N_CTX = 2048
REQUEST = "Can you suggest a dinner I could cook tonight after work?"
_SUBJECTS = ["cooking", "running", "chess", "jazz", "gardening", "photography", "cycling", "Japanese", "pottery",
             "hiking", "baking", "sailing", "painting", "yoga", "birdwatching", "knitting", "climbing", "poetry",
             "astronomy", "woodworking", "tennis", "swimming", "origami", "history", "robotics"]
_VERBS = ["enjoys", "is learning", "has practised", "wants to get better at", "teaches", "recently took up",
          "reads about", "spends weekends on", "dislikes", "is curious about", "grew up with", "pays for lessons in",
          "watches videos on", "is tired of", "talks often about", "plans a trip around", "collects books on",
          "writes a blog about", "has a friend who does", "is saving money for"]


def synthetic_texts(n: int) -> list[str]:
    """n distinct, plausible attribute sentences (no near-duplicates among them)."""
    out = []
    for i in range(n):
        subject = _SUBJECTS[i % len(_SUBJECTS)]
        verb = _VERBS[(i // len(_SUBJECTS)) % len(_VERBS)]
        out.append(f"The user {verb} {subject} (note {i + 1}).")
    return out


def attributes(texts: list[str]) -> list[Attribute]:
    return [Attribute(id=f"a{i}", text=t, reason="", confidence=0.8, status="active", origin="model",
                      evidence=[], created_at="", updated_at="") for i, t in enumerate(texts)]


class Tokens:
    def __init__(self, model: LocalModel) -> None:
        self.model = model

    def text(self, text: str) -> int:
        return len(self.model._llama.tokenize(text.encode(), add_bos=False)) if text else 0

    def count(self, messages: list[ChatMessage]) -> int:
        llama = self.model._llama  # loaded by the warm-up call; the bench may look inside
        return sum(len(llama.tokenize(m["content"].encode(), add_bos=False)) + 4 for m in messages)


async def timed(coro: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    value = await coro
    return value, (time.perf_counter() - started) * 1000


async def first_token_ms(model: LocalModel, messages: list[ChatMessage], params: ChatParams) -> float:
    started = time.perf_counter()
    stream = model.stream(messages, params)
    try:
        async for delta in stream:
            if delta:
                return (time.perf_counter() - started) * 1000
    finally:
        await stream.aclose()  # type: ignore[attr-defined]
        await model.idle()
    return (time.perf_counter() - started) * 1000


async def bench_selection(model: LocalModel, tokens: Tokens, sizes: list[int]) -> list[dict[str, Any]]:
    selector = Selector(model)
    rows = []

    def fits(n: int) -> tuple[int, bool]:
        prompt = tokens.count(selector.build_messages(REQUEST, attributes(synthetic_texts(n))))
        return prompt, prompt + 64 + TOKENS_PER_DECISION * n <= N_CTX

    measured_rows: dict[int, dict[str, Any]] = {}
    for n in sizes:
        prompt, ok = fits(n)
        row: dict[str, Any] = {"size": n, "prompt_tokens": prompt, "fits": ok}
        measured = n
        if not ok:
            lo, hi = 1, n
            while lo < hi:  # largest size that fits
                mid = (lo + hi + 1) // 2
                lo, hi = (mid, hi) if fits(mid)[1] else (lo, mid - 1)
            measured = lo
        if measured in measured_rows:
            # Same prompt again would hit llama.cpp's prompt cache: report the earlier measurement.
            row.update({k: v for k, v in measured_rows[measured].items() if k not in row})
            rows.append(row)
            continue
        result, ms = await timed(selector.select(REQUEST, attributes(synthetic_texts(measured))))
        answered = sum(1 for d in result.decisions if not d.rationale.startswith(NO_DECISION))
        answer_tokens = tokens.text(result.structured.raw) if result.structured else 0
        row.update(measured_size=measured, measured_prompt_tokens=fits(measured)[0], latency_ms=ms,
                   ok=result.ok, attempts=len(result.structured.attempts) if result.structured else 0,
                   selected=len(result.selected_ids), answered=answered, answer_tokens=answer_tokens)
        measured_rows[measured] = row
        rows.append(row)
    return rows


async def bench_extraction(model: LocalModel, tokens: Tokens, sizes: list[int]) -> list[dict[str, Any]]:
    rows = []
    for n in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            db = open_database(Path(tmp) / "bench.db")
            store = MemoryStore(db)
            for text in synthetic_texts(n):
                store.add_participant_attribute(text)
            conversations = ConversationStore(db)
            conv = conversations.create()
            # Different words per size, so llama.cpp cannot reuse the previous prompt's cache.
            for text in (f"I started running {n} minutes in the mornings before my shift.",
                         "I'm a nurse and I cook a lot of quick vegetarian meals."):
                conversations.add_message(conv.id, "user", text)
            extractor = Extractor(model, store)
            pending = store.pending_user_messages(conv.id)
            extract_prompt = tokens.count(extractor.build_messages(pending))
            result, ms = await timed(extractor.run(conv.id))
            reconcile_prompt = None
            if result.proposals:
                reconciler = Reconciler(model, store)
                shown = reconciler._most_similar(result.proposals, store.list_attributes())
                reconcile_prompt = tokens.count([
                    {"role": "system", "content": reconciler.template.text},
                    {"role": "user", "content": reconciler._prompt(shown, result.proposals)},
                ])
            rows.append({"size": n, "latency_ms": ms, "status": result.status,
                         "proposals": len(result.proposals), "extract_prompt_tokens": extract_prompt,
                         "reconcile_prompt_tokens": reconcile_prompt,
                         "model_calls": 1 + (1 if reconcile_prompt else 0)})
            db.close()
    return rows


async def bench_reconciliation(model: LocalModel, tokens: Tokens, sizes: list[int]) -> list[dict[str, Any]]:
    """The reconciliation call alone, with two fixed proposals (the tiny model rarely proposes any)."""
    rows = []
    for n in sizes:
        proposals = [Proposal(f"The user runs {n} minutes every morning.", "said so", 0.8, ["m1"]),
                     Proposal("The user works as a nurse.", "said so", 0.9, ["m2"])]
        existing = attributes(synthetic_texts(n))
        reconciler = Reconciler(model)
        shown = reconciler._most_similar(proposals, existing)
        prompt = tokens.count([{"role": "system", "content": reconciler.template.text},
                               {"role": "user", "content": reconciler._prompt(shown, proposals)}])
        plan, ms = await timed(reconciler.plan(proposals, existing))
        rows.append({"size": n, "shown": len(shown), "prompt_tokens": prompt, "latency_ms": ms,
                     "ok": not plan.failed, "changes": len(plan.changes),
                     "answer_tokens": tokens.text(plan.structured.raw) if plan.structured else 0})
    return rows


async def bench_first_token(model: LocalModel, repeats: int) -> dict[str, Any]:
    selector = Selector(model)
    memory = attributes(synthetic_texts(10))
    params = ChatParams(temperature=0.0, max_tokens=32)
    with tempfile.TemporaryDirectory() as tmp:
        db = open_database(Path(tmp) / "bench.db")
        conversations = ConversationStore(db)
        conv = conversations.create()
        request = conversations.add_message(conv.id, "user", REQUEST)
        history = [request]
        off, on, select = [], [], []
        for _ in range(repeats):
            generic, _ = build_messages(history, None)
            off.append(await first_token_ms(model, generic, params))
            selection, select_ms = await timed(selector.select(REQUEST, memory))
            # The personalized prompt as the participant would get it (one attribute if none was selected,
            # so the measured prompt is the personalized one either way).
            personalized, _ = build_messages(history, selection.selected or [memory[0].text])
            ttft = await first_token_ms(model, personalized, params)
            select.append(select_ms)
            on.append(select_ms + ttft)
        db.close()
    off_ms, on_ms = statistics.median(off), statistics.median(on)
    return {"off_ms": off_ms, "on_ms": on_ms, "select_ms": statistics.median(select), "ratio": on_ms / off_ms,
            "repeats": repeats, "memory_size": 10}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 500])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    model = LocalModel(n_ctx=N_CTX)
    _, load_ms = await timed(model.ping())
    tokens = Tokens(model)
    print(f"# bench_pipeline  {datetime.now(UTC).isoformat(timespec='seconds')}  model: {model.name}  "
          f"context {N_CTX} tokens  (load + first answer {load_ms:.0f} ms)")

    print("\n## Selection (stage 2): one structured call for the whole memory")
    print(f"{'memory':>7} {'prompt tok':>10} {'fits 2048':>9} {'measured at':>11} {'prompt tok':>10} "
          f"{'answer tok':>10} {'latency ms':>10} {'ok':>3} {'tries':>5} {'answered':>8} {'selected':>8}")
    for r in await bench_selection(model, tokens, args.sizes):
        print(f"{r['size']:>7} {r['prompt_tokens']:>10} {'yes' if r['fits'] else 'NO':>9} {r['measured_size']:>11} "
              f"{r['measured_prompt_tokens']:>10} {r['answer_tokens']:>10} {r['latency_ms']:>10.0f} "
              f"{'y' if r['ok'] else 'n':>3} "
              f"{r['attempts']:>5} {r['answered']:>8} {r['selected']:>8}")

    print("\n## Extraction (stage 1 + reconciliation) of 2 new user messages against a memory")
    print(f"{'memory':>7} {'latency ms':>10} {'status':>7} {'proposals':>9} {'calls':>5} {'extract tok':>11} "
          f"{'reconcile tok':>13}")
    for r in await bench_extraction(model, tokens, args.sizes):
        print(f"{r['size']:>7} {r['latency_ms']:>10.0f} {r['status']:>7} {r['proposals']:>9} {r['model_calls']:>5} "
              f"{r['extract_prompt_tokens']:>11} {r['reconcile_prompt_tokens'] or '-':>13}")

    print("\n## Reconciliation call alone: 2 proposals against a memory (model sees the 20 most similar)")
    print(f"{'memory':>7} {'shown':>5} {'prompt tok':>10} {'answer tok':>10} {'latency ms':>10} {'ok':>3} "
          f"{'changes':>7}")
    for r in await bench_reconciliation(model, tokens, args.sizes):
        print(f"{r['size']:>7} {r['shown']:>5} {r['prompt_tokens']:>10} {r['answer_tokens']:>10} "
              f"{r['latency_ms']:>10.0f} {'y' if r['ok'] else 'n':>3} {r['changes']:>7}")

    print("\n## Message to first token (participant's view), memory of 10 attributes")
    ft = await bench_first_token(model, args.repeats)
    print(f"personalization off: {ft['off_ms']:.0f} ms   on (select {ft['select_ms']:.0f} ms + personalized "
          f"first token): {ft['on_ms']:.0f} ms   "
          f"ratio on/off: {ft['ratio']:.1f}x   (median of {ft['repeats']})")
    await model.aclose()


if __name__ == "__main__":
    asyncio.run(main())
