"""The server's CPU per ingested event, against the raw insert's CPU per row, and where it goes (cProfile).

    .venv/bin/python bench/profile_ingest.py sqlite                 # 8,000 events, three runs
    .venv/bin/python bench/profile_ingest.py postgresql --profile   # the server thread's profile

CPU time, not wall-clock time, so the figures hold on a shared, loaded machine. The app runs under uvicorn in this
process's main thread with FastAPI's threadpool calls run inline (so all of the server's work is on that thread,
and ``time.thread_time`` counts it); 4 participants upload from another thread (bench_ingest.py's clients), and
their work is not counted. Then the same rows go into a fresh database with bench_ingest.py's raw insert, on this
thread. On PostgreSQL both figures leave out the PostgreSQL backend's own CPU. With ``--profile``, cProfile
(thread CPU time) prints the server's 40 most expensive functions of one run.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import bench_ingest as bench  # type: ignore[import-not-found]
import fastapi.dependencies.utils
import fastapi.routing
import uvicorn

from studyapp.server.app import create_app
from studyapp.server.backend import open_storage
from tests.support.net import bound_socket


async def _inline(func: Any, *args: Any, **kwargs: Any) -> Any:
    return func(*args, **kwargs)


# Every sync endpoint and dependency on the main thread: its CPU is then the server's.
fastapi.routing.run_in_threadpool = _inline  # type: ignore[assignment]
fastapi.dependencies.utils.run_in_threadpool = _inline  # type: ignore[assignment]


def one_run(dbs: bench.Databases, n: int, batch: int, profile: bool) -> tuple[float, float]:
    """(server thread CPU per event, raw insert CPU per row), in seconds."""
    study = bench.new_study(dbs.new(), 4)
    storage = open_storage(study.db, migrate=False)
    sock = bound_socket()
    server = uvicorn.Server(uvicorn.Config(create_app(storage), log_level="warning", lifespan="off"))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    per_client = bench.split(list(bench.events(n)), 4, batch)

    def clients() -> None:
        try:
            bench.wait_until_http_ok(f"{url}/health", timeout=60)
            bench.consent_all(url, study)
            bench.ingest(url, study, per_client)
        finally:
            server.should_exit = True

    threading.Thread(target=clients, daemon=True).start()
    profiler = cProfile.Profile(time.thread_time) if profile else None
    start = time.thread_time()
    if profiler is not None:
        profiler.enable()
    server.run(sockets=[sock])
    if profiler is not None:
        profiler.disable()
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(40)
    server_cpu = time.thread_time() - start
    storage.close()
    sock.close()
    raw_study = bench.new_study(dbs.new(), 1)
    rows = bench.stored_rows([b for batches in per_client for b in batches], raw_study.participants[0][0])
    start = time.thread_time()
    bench.raw_insert(raw_study.db, rows)
    return server_cpu / n, (time.thread_time() - start) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("backend", choices=("sqlite", "postgresql"))
    parser.add_argument("--events", type=int, default=8000)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="print the server thread's profile of one run")
    args = parser.parse_args()
    print(bench.machine())
    with tempfile.TemporaryDirectory(prefix="studyapp-profile-ingest-") as tmp:
        dbs = bench.Databases(args.backend, Path(tmp))
        try:
            for _ in range(1 if args.profile else args.runs):
                server, raw = one_run(dbs, args.events, args.batch, args.profile)
                print(f"{args.backend}: batches of {args.batch}: server thread CPU {server * 1e6:.1f} us per event "
                      f"(start-up and consent included); raw insert CPU {raw * 1e6:.1f} us per row "
                      f"(this process only)", flush=True)
        finally:
            dbs.close()


if __name__ == "__main__":
    main()
