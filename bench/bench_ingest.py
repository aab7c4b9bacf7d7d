"""Ingest through HTTP, validation and auth, beside the raw insert of the same rows, on both server backends.

    .venv/bin/python bench/bench_ingest.py                          # SQLite, PostgreSQL 1 and 4 workers
    .venv/bin/python bench/bench_ingest.py --events 4000 --backends sqlite      # a quick run
    .venv/bin/python bench/bench_ingest.py --stored 0,1000000,10000000 --batches 200   # the rate as storage grows

Ingest: ``studyapp-server serve`` runs as a process of its own (uvicorn on 127.0.0.1; ``--workers N`` on
PostgreSQL) on a fresh database holding the benchmark study. ``--clients`` participants are enrolled and have
consented; each then uploads its share of the pre-generated events (POST /v1/events, batches of ``--batches``:
the app's 200 and the server's maximum of 1000), all at once from one asyncio process (httpx). The bodies are
encoded before the clock starts, so the clients cost little of the machine the server runs on. Every event must
come back accepted.

Raw: the same events as the server stores them (event_id, participant, kind, record key, day, payload JSON,
received_at; prepared before the clock starts) go into a fresh database of the same backend with the same schema
and indexes (the server's own migrations), one transaction per batch of the same size, from one connection:
``executemany`` on SQLite (WAL, synchronous=NORMAL as the server), ``COPY`` on PostgreSQL.

PostgreSQL runs as a throwaway cluster (tests/support/postgres.py: fsync and synchronous_commit off), the same
cluster for ingest and raw, so the ratio compares like with like.

``--stored`` measures ingest on one growing database instead: before each measurement, events are added
(``bulk_insert_events``: checked, then one COPY on PostgreSQL, executemany on SQLite) up to that many stored;
after it, the raw insert of as many rows into the same database.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.*, run from anywhere

from _common import ROOT, machine  # type: ignore[import-not-found]

from studyapp.server import app as app_mod
from studyapp.server.backend import open_storage
from studyapp.server.ingest import dumps, now
from studyapp.server.validation import check_event
from tests.server import live as f
from tests.support.net import free_port, wait_until_http_ok

TS = "2026-11-25T10:00:00+00:00"
CONTENT = ("I went hiking near [LOCATION_1] with [PERSON_1] last weekend and want ideas for the next trip; "
           "we like lakes, quiet trails and a good lunch place.")


def events(n: int) -> Iterator[dict[str, Any]]:
    """A study's mix (as bench_export.py): 70% messages, 15% attributes, 5% each attribute labels, comparisons and
    relevance labels, every id a fresh UUID."""
    for i in range(n):
        r = i % 20
        if r < 14:
            kind, payload = "message", {"conversation_id": f"c{i // 40}", "message_id": str(uuid.uuid4()),
                                        "role": "user" if i % 2 else "assistant", "content": CONTENT,
                                        "created_at": TS, "status": "complete"}
        elif r < 17:
            kind, payload = "attribute", {"attribute_id": str(uuid.uuid4()), "text": "Likes hiking by lakes",
                                          "reason": "mentioned trips twice", "confidence": 0.8, "origin": "model",
                                          "status": "active", "created_at": TS, "updated_at": TS}
        elif r == 17:
            kind, payload = "attribute_label", {"attribute_id": str(uuid.uuid4()), "label": "maybe",
                                                "labeled_at": TS}
        elif r == 18:
            kind, payload = "comparison", {
                "comparison_id": str(uuid.uuid4()), "conversation_id": "c1", "personalized_side": "left",
                "model": "gpt-4o-mini", "created_at": TS, "skipped": False, "prompt": CONTENT,
                "generic_response": CONTENT, "personalized_response": CONTENT, "rating": 4,
                "chosen": "personalized", "rated_at": TS}
        else:
            kind, payload = "relevance_label", {"comparison_id": str(uuid.uuid4()),
                                                "attribute_id": str(uuid.uuid4()), "selected_by_model": True,
                                                "model_relevant": False, "human_relevant": None}
        yield {"event_id": str(uuid.uuid4()), "kind": kind, "payload": payload}


# -- databases -------------------------------------------------------------------------------------------------


class Databases:
    """Fresh server databases of one backend: SQLite files in a folder, or databases of a throwaway cluster."""

    def __init__(self, backend: str, folder: Path) -> None:
        self.backend, self.folder = backend, folder
        self.cluster: Any = None
        self.made = 0
        if backend == "postgresql":
            from tests.support.postgres import start_cluster

            self.cluster = start_cluster()

    def new(self) -> str:
        self.made += 1
        if self.cluster is not None:
            return str(self.cluster.create_database())
        return str(self.folder / f"server-{self.made}.db")

    def drop(self, db: str) -> None:
        if self.cluster is not None:
            import psycopg

            with psycopg.connect(self.cluster.url(), autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{db.rsplit("/", 1)[1]}" WITH (FORCE)')
        else:
            for suffix in ("", "-wal", "-shm"):
                Path(db + suffix).unlink(missing_ok=True)

    def close(self) -> None:
        if self.cluster is not None:
            self.cluster.stop()
            shutil.rmtree(self.cluster.root, ignore_errors=True)


def size_bytes(db: str) -> int:
    if db.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(db) as conn:
            return int(conn.execute("SELECT pg_database_size(current_database())").fetchone()[0])  # type: ignore[index]
    return sum(Path(db + s).stat().st_size for s in ("", "-wal") if Path(db + s).exists())


@dataclass
class Study:
    db: str
    participants: list[tuple[str, str]]  # (participant_id, token)
    researcher_token: str


def new_study(db: str, participants: int) -> Study:
    """A migrated database holding the study and ``participants`` enrolled participants (tokens for HTTP)."""
    storage, researcher_token = f.new_storage(db)
    try:
        enrolled = [storage.enroll(code) for code in storage.create_codes(participants)]
    finally:
        storage.close()
    return Study(db, [e for e in enrolled if e is not None], researcher_token)


# -- the server ------------------------------------------------------------------------------------------------


@contextmanager
def server(db: str, workers: int, log: Path) -> Iterator[str]:
    """``studyapp-server serve`` on ``db`` as a process of its own (this checkout's code); yields its URL."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "studyapp.server.cli", "serve", "--db", db, "--port", str(port),
                                 "--workers", str(workers)], stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_http_ok(f"{url}/health", timeout=120, alive=lambda: proc.poll() is None)
        yield url
    finally:
        proc.terminate()
        proc.wait(60)


async def _client(url: str, token: str, bodies: list[bytes], sizes: list[int]) -> int:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    accepted = 0
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=300) as client:
        for body, size in zip(bodies, sizes, strict=True):
            response = await client.post("/v1/events", content=body)
            if response.status_code != 200:
                raise RuntimeError(f"upload answered {response.status_code}: {response.text[:300]}")
            got = json.loads(response.content)["accepted"]
            if got != size:
                raise RuntimeError(f"{size - got} events of a batch were not accepted: {response.text[:300]}")
            accepted += got
    return accepted


def encode(batches: list[list[dict[str, Any]]]) -> tuple[list[bytes], list[int]]:
    return [json.dumps({"events": b}).encode() for b in batches], [len(b) for b in batches]


def ingest(url: str, study: Study, per_client: list[list[list[dict[str, Any]]]]) -> float:
    """Upload each participant's batches concurrently (one connection each); events per second."""
    encoded = [encode(batches) for batches in per_client]

    async def run() -> int:
        counts = await asyncio.gather(*(_client(url, token, bodies, sizes)
                                        for (_, token), (bodies, sizes) in zip(study.participants, encoded,
                                                                                strict=False)))
        return sum(counts)

    start = time.perf_counter()
    n = asyncio.run(run())
    return n / (time.perf_counter() - start)


def consent_all(url: str, study: Study) -> None:
    for _, token in study.participants:
        response = httpx.post(f"{url}/v1/events", json={"events": [f.consent()]},
                              headers={"Authorization": f"Bearer {token}"}, timeout=60)
        response.raise_for_status()


def split(all_events: list[dict[str, Any]], clients: int, batch: int) -> list[list[list[dict[str, Any]]]]:
    share = len(all_events) // clients
    out = []
    for c in range(clients):
        mine = all_events[c * share:(c + 1) * share]
        out.append([mine[i:i + batch] for i in range(0, len(mine), batch)])
    return out


# -- raw insert ------------------------------------------------------------------------------------------------

COLUMNS = "event_id, participant_id, kind, record_key, day, payload, received_at"


def stored_rows(batches: list[list[dict[str, Any]]], participant_id: str) -> list[list[tuple[Any, ...]]]:
    """The rows the server stores for these events (prepared outside the clock)."""
    received_at = now()
    out = []
    for batch in batches:
        rows = []
        for e in batch:
            checked = check_event(e["event_id"], e["kind"], e["payload"])
            rows.append((e["event_id"], participant_id, e["kind"], checked.record_key, checked.day,
                         dumps(checked.payload), received_at))
        out.append(rows)
    return out


def raw_insert(db: str, batches: list[list[tuple[Any, ...]]]) -> float:
    """Rows per second, one transaction per batch, one connection."""
    n = sum(len(b) for b in batches)
    if db.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(db, autocommit=True) as conn:
            start = time.perf_counter()
            for batch in batches:
                with conn.transaction(), conn.cursor() as cur, \
                        cur.copy(f"COPY events ({COLUMNS}) FROM STDIN") as copy:
                    for row in batch:
                        copy.write_row(row)
            return n / (time.perf_counter() - start)
    import sqlite3

    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA secure_delete = ON")
        start = time.perf_counter()
        for batch in batches:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(f"INSERT INTO events ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)", batch)
            conn.execute("COMMIT")
        return n / (time.perf_counter() - start)
    finally:
        conn.close()


# -- the runs --------------------------------------------------------------------------------------------------


def compare(dbs: Databases, workers: int, batch: int, n: int, clients: int, log: Path,
            rounds: int) -> tuple[float, float]:
    """Median (ingest events/s, raw rows/s) of ``rounds`` alternating measurements (others share the machine: its
    load changes from minute to minute), each of ``n`` fresh events on fresh databases."""
    results = [_compare(dbs, workers, batch, n, clients, log) for _ in range(rounds)]
    return statistics.median(r[0] for r in results), statistics.median(r[1] for r in results)


def _compare(dbs: Databases, workers: int, batch: int, n: int, clients: int, log: Path) -> tuple[float, float]:
    all_events = list(events(n))
    per_client = split(all_events, clients, batch)
    study = new_study(dbs.new(), clients)
    with server(study.db, workers, log) as url:
        consent_all(url, study)
        rate = ingest(url, study, per_client)
    dbs.drop(study.db)
    raw_study = new_study(dbs.new(), 1)
    rows = stored_rows([b for batches in per_client for b in batches], raw_study.participants[0][0])
    raw = raw_insert(raw_study.db, rows)
    dbs.drop(raw_study.db)
    return rate, raw


def grow(dbs: Databases, stops: list[int], workers: int, batch: int, n: int, clients: int, log: Path) -> None:
    """Ingest rate on one database as it grows to each of ``stops`` stored events."""
    study = new_study(dbs.new(), clients + 2)
    history = study.participants.pop()[0]
    # The raw rows go to a participant of their own, like each uploader's: rows of the preloaded participant would
    # land at random places in its millions of index entries, which no upload touches.
    raw_participant = study.participants.pop()[0]
    study_consented = False
    stored = 0
    for stop in stops:
        if stop > stored:
            storage = open_storage(study.db, migrate=False)
            start = time.perf_counter()
            chunk = 1_000_000
            while stored < stop:
                more = min(chunk, stop - stored)
                storage.bulk_insert_events(history, ((e["event_id"], e["kind"], e["payload"]) for e in events(more)))
                stored += more
                print(f"  preloaded {stored:,} ({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)
            storage.close()
            preload_s = time.perf_counter() - start
        else:
            preload_s = 0.0
        per_client = split(list(events(n)), clients, batch)
        with server(study.db, workers, log) as url:
            if not study_consented:
                consent_all(url, study)
                study_consented = True
            rate = ingest(url, study, per_client)
        # The raw insert of as many rows into the same database at the same size, right after: the ratio holds
        # still however the machine's load changes between the sizes.
        raw = raw_insert(study.db, stored_rows(split(list(events(n)), 1, batch)[0], raw_participant))
        stored += 2 * n
        print(f"{dbs.backend:<10} workers {workers}  stored before {stop:>11,}  ingest {n:,} in batches of "
              f"{batch}: {rate:8,.0f} events/s   raw insert {raw:9,.0f} rows/s   ratio {rate / raw:.3f}   "
              f"(preload {preload_s:,.0f} s; database now {size_bytes(study.db) / 2**30:.2f} GiB)", flush=True)
    dbs.drop(study.db)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=40_000, help="events uploaded per measurement")
    parser.add_argument("--clients", type=int, default=4, help="participants uploading at once")
    parser.add_argument("--batches", default=f"200,{app_mod.MAX_BATCH}",
                        help="events per request, comma-separated (the app sends 200; the server takes up to "
                             f"{app_mod.MAX_BATCH})")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--pg-workers", default="1,4", help="uvicorn workers on PostgreSQL, comma-separated")
    parser.add_argument("--rounds", type=int, default=3, help="measurements of each, the median reported")
    parser.add_argument("--stored", default=None,
                        help="comma-separated stored-event counts: measure ingest on one growing database instead")
    args = parser.parse_args()
    # Stopped with SIGTERM, still stop the PostgreSQL cluster and delete the databases (the finally blocks).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    batches = [int(b) for b in args.batches.split(",")]
    print(machine())
    with tempfile.TemporaryDirectory(prefix="studyapp-bench-ingest-") as tmp:
        log = Path(tmp) / "server.log"
        for backend in args.backends.split(","):
            dbs = Databases(backend, Path(tmp))
            try:
                worker_counts = [int(w) for w in args.pg_workers.split(",")] if backend == "postgresql" else [1]
                if args.stored is not None:
                    stops = [int(s) for s in args.stored.split(",")]
                    for workers in worker_counts[:1]:
                        grow(dbs, stops, workers, batches[0], args.events, args.clients, log)
                    continue
                for batch in batches:
                    for workers in worker_counts:
                        rate, raw = compare(dbs, workers, batch, args.events, args.clients, log, args.rounds)
                        print(f"{backend:<10} workers {workers}  batch {batch:>4}  {args.clients} clients  "
                              f"ingest {rate:8,.0f} events/s   raw insert {raw:9,.0f} rows/s   "
                              f"ratio {rate / raw:.3f}   (median of {args.rounds})", flush=True)
            finally:
                dbs.close()
        errors = [line for line in log.read_text(errors="replace").splitlines()
                  if "Traceback" in line or "ERROR" in line] if log.exists() else []
        if errors:
            print("server log:", *errors[:10], sep="\n  ")
    print(machine())


if __name__ == "__main__":
    main()
