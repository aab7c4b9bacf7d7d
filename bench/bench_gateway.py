"""The model gateway (/llm/v1): what it adds to the first token, and many streams held at once by one server process.

The collection server runs as its own process (``studyapp-server serve``, uvicorn on 127.0.0.1, SQLite in a
temporary folder) with gateway models configured as researchers do (``models add --api-key-env``). The upstream
is the scripted OpenAI-compatible server of the tests (tests/support/scripted_llm.py): it answers at once, so what
the gateway adds is not hidden behind a model's own time. For the first token it runs in a process of its own; for
the concurrency phase in this one (its replies are held and released from here).

1. First token: the same streaming request, alternately straight to the upstream and through the gateway, each on
   its own keep-alive connection, each read to its end; the time to the first text delta of each (p50/p95) and the
   difference; and the server process's CPU time per relayed request (the whole request: what it costs whatever
   the machine's load, where the latency also holds the waits for a core). The gateway's work per request: the
   participant's admission (one write transaction: enrolled, under the day's tokens, under the minute's rate), the
   upstream request, and the usage counts at the end.
2. Concurrency: N streams (default 200) at once through the gateway, from 20 participants. Every upstream reply
   pauses after its first two words until all N have reached the participants and are held open at the same time;
   then all are released and each must arrive complete, with [DONE]. The same N streams straight to the upstream
   are the baseline: the goal is no error the gateway adds. The server's RSS is read while all N are held.

    .venv/bin/python bench/bench_gateway.py [--runs 200] [--streams 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import machine, percentile

from tests.server import live as f
from tests.support.net import free_port, wait_until_http_ok
from tests.support.scripted_llm import ScriptedLLM, run_scripted_llm

KEY = "sk-bench-upstream-key"
KEY_ENV = "STUDYAPP_BENCH_GATEWAY_KEY"
MODEL = "study-chat"
FAST_MODEL = "study-chat-own-process"
PARTICIPANTS = 20
ANSWER = "Try a short walk after lunch and a fixed bedtime this week"
MESSAGES = [{"role": "user", "content": "How can I sleep better?"}]


async def first_token(client: httpx.AsyncClient, model: str) -> tuple[float, str]:
    """Seconds to the first text delta of a streaming request (read to its end); and the whole text."""
    started = time.perf_counter()
    first: float | None = None
    text = ""
    body = {"model": model, "messages": MESSAGES, "stream": True, "temperature": 0}
    async with client.stream("POST", "chat/completions", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data:") or line.strip() == "data: [DONE]":
                continue
            choices = json.loads(line[5:]).get("choices") or [{}]
            delta = (choices[0].get("delta") or {}).get("content")
            if delta:
                first = first if first is not None else time.perf_counter() - started
                text += delta
    if first is None:
        raise RuntimeError("the stream carried no text")
    return first, text


def ms(values: list[float]) -> str:
    v = [x * 1000 for x in values]
    return f"p50 {statistics.median(v):7.2f} ms   p95 {percentile(v, 95):7.2f} ms   min {min(v):7.2f} ms"


def cpu_s(pid: int) -> float:
    """CPU time (user + system) the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# The first-token upstream runs in a process of its own: in this one it would share the interpreter lock with the
# benchmark's client, and each hand-over between the two can wait out the lock's switch interval (5 ms).
UPSTREAM_PROCESS = f"""
import sys
from tests.support.scripted_llm import ScriptedLLM
llm = ScriptedLLM(api_key={KEY!r})
llm.set_default({ANSWER!r})
llm.start()
print(llm.port, flush=True)
sys.stdin.read()  # until the benchmark closes it
llm.stop()
"""


async def first_token_phase(upstream: str, upstream_model: str, gateway: str, token: str, runs: int,
                            server_pid: int) -> None:
    direct_times: list[float] = []
    gateway_times: list[float] = []
    async with (httpx.AsyncClient(base_url=upstream + "/", headers={"Authorization": f"Bearer {KEY}"},
                                  timeout=30) as direct,
                httpx.AsyncClient(base_url=gateway + "/llm/v1/", timeout=30,
                                  headers={"Authorization": f"Bearer {token}", "X-Studyapp-Role": "assistant"}) as gw):
        for _ in range(5):  # warm both connections and the server's code paths
            await first_token(direct, upstream_model)
            await first_token(gw, FAST_MODEL)
        cpu_before = cpu_s(server_pid)
        for _ in range(runs):
            t, text = await first_token(direct, upstream_model)
            direct_times.append(t)
            assert text == ANSWER
            t, text = await first_token(gw, FAST_MODEL)
            gateway_times.append(t)
            assert text == ANSWER, text
        cpu = cpu_s(server_pid) - cpu_before
    added = [g - d for g, d in zip(gateway_times, direct_times, strict=True)]
    print(f"first token, straight to the upstream: {ms(direct_times)}   (n={runs})")
    print(f"first token, through the gateway:      {ms(gateway_times)}")
    difference = statistics.median(gateway_times) - statistics.median(direct_times)
    print(f"added by the gateway (p50 of the two): {difference * 1000:7.2f} ms   (per pair: {ms(added)})")
    # Independent of how long the process waited for a core on a shared machine: the server's own work.
    print(f"server CPU time per relayed streaming request (whole request, {runs} requests): "
          f"{cpu / runs * 1000:.2f} ms")


async def one_stream(client: httpx.AsyncClient, model: str, reached: asyncio.Event, arrived: list[int],
                     n: int) -> str | None:
    """One held stream: report when its first two words arrived, then read it to the end; None if complete,
    else what went wrong."""
    body = {"model": model, "messages": MESSAGES, "stream": True}
    text = ""
    done = False
    try:
        async with client.stream("POST", "chat/completions", json=body) as response:
            if response.status_code != 200:
                await response.aread()
                return f"HTTP {response.status_code}: {response.text[:200]}"
            counted = False
            async for line in response.aiter_lines():
                if line.strip() == "data: [DONE]":
                    done = True
                    continue
                if not line.startswith("data:"):
                    continue
                choices = json.loads(line[5:]).get("choices") or [{}]
                text += (choices[0].get("delta") or {}).get("content") or ""
                if not counted and len(text.split()) >= 2:
                    counted = True
                    arrived[0] += 1
                    if arrived[0] == n:
                        reached.set()
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}"
    if not done or text != ANSWER:
        return f"incomplete stream (done={done}, {len(text)} characters)"
    return None


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def concurrency_phase(llm: ScriptedLLM, label: str, base_url: str, tokens: list[str], model: str, n: int,
                            server_pid: int | None) -> list[str]:
    llm.set_default(None)
    replies = [llm.add_text(ANSWER, hold_after=2) for _ in range(n)]
    reached = asyncio.Event()
    arrived = [0]
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=n)
    clients = [httpx.AsyncClient(base_url=base_url, limits=limits, timeout=120,
                                 headers={"Authorization": f"Bearer {t}", "X-Studyapp-Role": "assistant"})
               for t in tokens]
    started = time.perf_counter()
    try:
        tasks = [asyncio.create_task(one_stream(clients[i % len(clients)], model, reached, arrived, n))
                 for i in range(n)]
        try:
            await asyncio.wait_for(reached.wait(), 120)
            held = True
        except TimeoutError:
            held = False
        opened = time.perf_counter() - started
        held_upstream = sum(r.held.is_set() for r in replies)
        rss = f", server RSS {rss_mib(server_pid):.0f} MiB" if server_pid else ""
        for r in replies:
            r.release()
        results = await asyncio.gather(*tasks)
    finally:
        for c in clients:
            await c.aclose()
    errors = [r for r in results if r is not None]
    print(f"{label}: {n} streams open at once (all first words in {opened:.2f} s, {held_upstream} held upstream"
          f"{rss}); complete after release: {n - len(errors)}; errors: {len(errors)}" + ("" if held else " (timeout)"))
    for e in errors[:5]:
        print("  ", e)
    return errors


def server_errors(log: Path) -> list[str]:
    text = log.read_text(encoding="utf-8", errors="replace")
    return [line for line in text.splitlines() if any(w in line for w in ("Traceback", "Exception", "ERROR"))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=200, help="First-token pairs (straight, through the gateway).")
    parser.add_argument("--streams", type=int, default=200, help="Streams held open at once.")
    args = parser.parse_args()
    print(machine())
    with tempfile.TemporaryDirectory(prefix="studyapp-bench-gateway-") as tmp, run_scripted_llm(api_key=KEY) as llm:
        work = Path(tmp)
        db = work / "server.db"
        storage, _ = f.new_storage(db)
        upstream_proc = subprocess.Popen([sys.executable, "-c", UPSTREAM_PROCESS], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, text=True,
                                         env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
        assert upstream_proc.stdout is not None
        upstream = f"http://127.0.0.1:{upstream_proc.stdout.readline().strip()}/v1"
        storage.add_gateway_model(name=FAST_MODEL, base_url=upstream, upstream_model=llm.model, api_key_env=KEY_ENV,
                                  api_key_file=None)
        storage.add_gateway_model(name=MODEL, base_url=llm.base_url, upstream_model=llm.model, api_key_env=KEY_ENV,
                                  api_key_file=None)
        storage.set_gateway_limits(daily_tokens=10**9, requests_per_minute=10**6)
        codes = storage.create_codes(PARTICIPANTS)
        storage.close()
        port = free_port()
        log = work / "server.log"
        with log.open("wb") as log_file:
            proc = subprocess.Popen([sys.executable, "-m", "studyapp.server.cli", "serve", "--db", str(db),
                                     "--port", str(port)], stdout=log_file, stderr=subprocess.STDOUT,
                                    env={**os.environ, KEY_ENV: KEY})
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until_http_ok(f"{url}/health", timeout=60, alive=lambda: proc.poll() is None)
            tokens = [httpx.post(f"{url}/v1/enroll", json={"code": c}).json()["token"] for c in codes]
            asyncio.run(first_token_phase(upstream, llm.model, url, tokens[0], args.runs, proc.pid))
            direct_errors = asyncio.run(concurrency_phase(llm, "straight to the upstream", llm.base_url + "/",
                                                          [KEY], llm.model, args.streams, None))
            gateway_errors = asyncio.run(concurrency_phase(llm, "through the gateway", f"{url}/llm/v1/", tokens,
                                                           MODEL, args.streams, proc.pid))
        finally:
            proc.terminate()
            proc.wait(30)
            upstream_proc.communicate("", timeout=30)
        errors = server_errors(log)
    print(f"errors added by the gateway: {len(gateway_errors) - len(direct_errors)}; "
          f"errors in the server log: {len(errors)}")
    for line in errors[:10]:
        print("  ", line)
    if gateway_errors or errors:
        sys.exit(1)


if __name__ == "__main__":
    main()
