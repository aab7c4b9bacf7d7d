"""Time to first token: what OpenAICompatModel adds on top of the server's own time to first token.

For each server, the same streaming request is sent alternately (a) with a bare httpx streaming request that
stops at the first SSE event carrying text, and (b) through ``OpenAICompatModel.stream`` until its first
delta. Both reuse one keep-alive connection, as the app does. Servers: the real ``llama_cpp.server`` with
SmolLM2-135M (model time dominates), and the scripted server from the tests (answers at once, so the
difference is almost all client overhead).

    .venv/bin/python bench/bench_llm_first_token.py [--runs 10]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import raw_stream_first_token

from studyapp.llm.base import ChatParams
from studyapp.llm.openai_compat import OpenAICompatModel
from tests.support.llama_server import run_llama_server
from tests.support.scripted_llm import run_scripted_llm

MESSAGES = [{"role": "user", "content": "Say hello to a new participant in one sentence."}]
PARAMS = ChatParams(temperature=0.0, max_tokens=16, seed=1)


async def raw_first_token(client: httpx.AsyncClient, model: str) -> float:
    body = {"model": model, "messages": MESSAGES, "stream": True, **PARAMS.to_dict()}
    return await raw_stream_first_token(client, body)


async def client_first_token(model: OpenAICompatModel) -> float:
    started = time.perf_counter()
    stream = model.stream(MESSAGES, PARAMS)
    try:
        async for delta in stream:
            if delta:
                return time.perf_counter() - started
    finally:
        await stream.aclose()
    raise RuntimeError("the model streamed no text")


def summary(values: list[float]) -> str:
    ms = sorted(v * 1000 for v in values)
    p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
    return f"p50 {statistics.median(ms):7.2f} ms   p95 {p95:7.2f} ms   min {ms[0]:7.2f} ms"


async def measure(label: str, base_url: str, model_name: str, runs: int) -> None:
    async with httpx.AsyncClient(base_url=base_url + "/", timeout=120) as client:
        model = OpenAICompatModel(base_url, model_name, timeout_s=120)
        try:
            # Warm-up: model weights in cache, connections open, first-request costs paid on both paths.
            await raw_first_token(client, model_name)
            await client_first_token(model)
            raw: list[float] = []
            ours: list[float] = []
            for _ in range(runs):
                raw.append(await raw_first_token(client, model_name))
                ours.append(await client_first_token(model))
        finally:
            await model.aclose()
    added = [o - r for o, r in zip(ours, raw, strict=True)]
    print(f"\n{label} ({runs} runs, interleaved)")
    print(f"  server, raw httpx stream:       {summary(raw)}")
    print(f"  OpenAICompatModel.stream:       {summary(ours)}")
    print(f"  added by the client (paired):   p50 {statistics.median(added) * 1000:7.2f} ms")


async def cold_first_tokens(base_url: str, model_name: str) -> tuple[float, float]:
    """First token from a brand-new client on each path (client construction and connection included)."""
    started = time.perf_counter()
    client = httpx.AsyncClient(base_url=base_url + "/", timeout=120)
    try:
        await raw_first_token(client, model_name)
        raw = time.perf_counter() - started
    finally:
        await client.aclose()
    started = time.perf_counter()
    model = OpenAICompatModel(base_url, model_name, timeout_s=120)
    try:
        await client_first_token(model)
        ours = time.perf_counter() - started
    finally:
        await model.aclose()
    return raw, ours


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(f"bench_llm_first_token  {stamp}  python {sys.version.split()[0]}")
    with run_llama_server() as server:
        asyncio.run(measure("llama_cpp.server + SmolLM2-135M-Instruct Q4_1, max_tokens 16, temperature 0",
                            server.base_url, server.model, args.runs))
        raw_cold, ours_cold = asyncio.run(cold_first_tokens(server.base_url, server.model))
        print(f"  brand-new client, first token:  raw httpx {raw_cold * 1000:.2f} ms, "
              f"OpenAICompatModel {ours_cold * 1000:.2f} ms")
    with run_scripted_llm() as llm:
        llm.set_default("Hello and welcome to the study, it is good to have you here.")
        asyncio.run(measure("scripted server (answers at once; the difference is client overhead)",
                            llm.base_url, llm.model, args.runs))


if __name__ == "__main__":
    main()
