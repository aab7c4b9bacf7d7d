"""Upload throughput (client -> server on this machine) beside the raw SQLite insert rate, and the
server's memory with 1,000,000 stored events.

    .venv/bin/python bench/bench_sync.py                 # 20,000 events uploaded, 1,000,000 stored for RSS
    .venv/bin/python bench/bench_sync.py --events 2000 --stored 20000   # a quick run

The server runs as its own process (``studyapp-server serve``), so its RSS is measured alone.
The raw rate inserts the same rows into a plain SQLite table (WAL, synchronous=NORMAL like the
server) in transactions of the same batch size: the ratio is what HTTP, JSON and validation cost.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.support, run from anywhere

from studyapp.server.storage import Storage
from studyapp.store.db import open_database
from studyapp.store.outbox import OutboxStore
from studyapp.study.protocol import parse_protocol
from studyapp.sync.client import RetryPolicy, Uploader
from studyapp.sync.server_client import StudyServerClient
from tests.server.live import new_storage
from tests.support.net import free_port

PROTOCOL = """
[study]
id = "bench-2026"
title = "Benchmark study"
version = "1"
duration_days = 14
[[consent]]
version = "1"
title = "Consent"
text = "Benchmark."
[categories.conversation_text]
required = true
description = "Conversation text."
[categories.ratings]
required = true
description = "Ratings."
[comparisons]
min_turns_between = 1
daily_cap = 3
probability = 0.5
min_attributes = 1
"""
CONTENT = ("I went hiking near [LOCATION_1] with [PERSON_1] last weekend and want ideas for the next trip; "
           "we like lakes, quiet trails and a good lunch place.")


def message_payload(i: int) -> dict:
    return {"conversation_id": f"c{i // 50}", "message_id": str(uuid.uuid4()), "role": "user" if i % 2 else "assistant",
            "content": CONTENT, "created_at": "2026-11-25T10:00:00+00:00", "status": "complete"}


def consent_payload() -> dict:
    sha256 = parse_protocol(PROTOCOL, source="bench").current_consent.sha256
    return {"consent_version": "1", "consent_sha256": sha256, "categories": ["conversation_text", "ratings"],
            "action": "grant", "created_at": "2026-11-25T09:00:00+00:00"}


def rss_kib(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            key, value = line.split(":")
            out[key] = int(value.split()[0])
    return out


class ServerProcess:
    def __init__(self, db: Path, port: int) -> None:
        self.db, self.port = db, port
        self.url = f"http://127.0.0.1:{port}"

    def __enter__(self) -> ServerProcess:
        self.proc = subprocess.Popen([sys.executable, "-m", "studyapp.server.cli", "serve", "--db", str(self.db),
                                      "--port", str(self.port), "--max-body-bytes", str(32 * 1024 * 1024)])
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.05)

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.wait(20)


def make_server_db(path: Path) -> tuple[Storage, str]:
    return new_storage(path, PROTOCOL)


def raw_insert_rate(rows: list[tuple], batch: int, path: Path) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("CREATE TABLE events (n INTEGER PRIMARY KEY, event_id TEXT NOT NULL UNIQUE, participant_id TEXT, "
                 "kind TEXT, payload TEXT, received_at TEXT)")
    start = time.perf_counter()
    for i in range(0, len(rows), batch):
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO events (event_id, participant_id, kind, payload, received_at) "
                         "VALUES (?, ?, ?, ?, ?)", rows[i : i + batch])
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return len(rows) / elapsed


async def upload(url: str, token: str, client_dir: Path, n: int, batch: int) -> tuple[float, list[tuple]]:
    db = open_database(client_dir / "studyapp.db")
    outbox = OutboxStore(db)
    outbox.add(study_id="bench-2026", kind="consent", category="consent", payload=consent_payload(),
               consent_version="1", approved=True)
    ts = "2026-11-25T10:00:00+00:00"
    payloads = [(str(uuid.uuid4()), message_payload(i)) for i in range(n - 1)]
    db["outbox"].insert_all(
        ({"event_id": eid, "study_id": "bench-2026", "kind": "message", "category": "conversation_text",
          "payload": json.dumps(p, sort_keys=True), "consent_version": "1", "status": "approved", "attempts": 0,
          "created_at": ts, "updated_at": ts} for eid, p in payloads), batch_size=5000)
    async with StudyServerClient(url, policy=RetryPolicy(max_attempts=3)) as server:
        uploader = Uploader(outbox, server, token, "bench-2026", batch_size=batch)
        start = time.perf_counter()
        report = await uploader.sync()
        elapsed = time.perf_counter() - start
    assert report.accepted == n, report
    rows = [(eid, "p", "message", json.dumps(p, sort_keys=True), ts) for eid, p in payloads]
    return n / elapsed, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000, help="events to upload")
    parser.add_argument("--batch", type=int, default=200, help="events per request (the app's default)")
    parser.add_argument("--stored", type=int, default=1_000_000, help="events stored for the memory figure")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="studyapp-bench-") as tmp:
        tmp_path = Path(tmp)
        storage, _ = make_server_db(tmp_path / "server.db")
        code = storage.create_codes(1)[0]
        storage.close()
        (tmp_path / "client").mkdir()
        with ServerProcess(tmp_path / "server.db", free_port()) as server:
            enrolled = httpx.post(f"{server.url}/v1/enroll", json={"code": code}).json()
            rate, rows = asyncio.run(upload(server.url, enrolled["token"], tmp_path / "client", args.events,
                                            args.batch))
            rss_after_upload = rss_kib(server.proc.pid)
        raw = raw_insert_rate(rows, args.batch, tmp_path / "raw.db")
        print(f"upload: {args.events} events in batches of {args.batch}: {rate:,.0f} events/s")
        print(f"raw SQLite insert of the same rows (same batch size): {raw:,.0f} rows/s")
        print(f"ratio upload/raw: {rate / raw:.3f} (the raw insert is {raw / rate:.1f}x faster)")
        print(f"server RSS after the upload ({args.events} events stored): {rss_after_upload['VmRSS'] / 1024:.1f} MiB")

        # Memory with many stored events: fill the database through the storage layer, then serve it.
        storage = Storage(tmp_path / "server.db")
        start = time.perf_counter()
        more = args.stored - storage.count_events()
        storage.bulk_insert_events(enrolled["participant_id"],
                                   ((str(uuid.uuid4()), "message", message_payload(i)) for i in range(more)))
        print(f"bulk insert of {more:,} events through the storage layer: {time.perf_counter() - start:.1f} s")
        total = storage.count_events()
        storage.close()
        size = (tmp_path / "server.db").stat().st_size
        with ServerProcess(tmp_path / "server.db", free_port()) as server:
            idle = rss_kib(server.proc.pid)
            headers = {"Authorization": f"Bearer {enrolled['token']}"}
            batch = [{"event_id": str(uuid.uuid4()), "kind": "message", "payload": message_payload(i)}
                     for i in range(args.batch)]
            assert httpx.post(f"{server.url}/v1/events", json={"events": batch}, headers=headers).status_code == 200
            busy = rss_kib(server.proc.pid)
        print(f"server with {total:,} stored events (database {size / 2**20:.0f} MiB): RSS idle "
              f"{idle['VmRSS'] / 1024:.1f} MiB, after an upload {busy['VmRSS'] / 1024:.1f} MiB "
              f"(peak {busy['VmHWM'] / 1024:.1f} MiB)")
        print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
