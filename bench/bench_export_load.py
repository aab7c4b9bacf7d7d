"""Exports while participants upload: upload throughput with and without exports, and every export checked.

    .venv/bin/python bench/bench_export_load.py                      # 8 participants, 2 phases of at least 10 s
    .venv/bin/python bench/bench_export_load.py --seconds 5 --prefill 5000   # a quick run

The collection server runs as its own process (``studyapp-server serve``, uvicorn on 127.0.0.1, a temporary
folder). Before it starts, one participant's history of ``--prefill`` events is stored, so an export has real
work to do. Then 8 participants upload the way the app does (``POST /v1/events``, batches of 200, each batch
messages and attributes with their labels), first alone, then while a researcher exports again and again: every
record type over HTTP as JSONL and CSV, and the whole study with ``studyapp-server export`` in JSONL, CSV and
Parquet (processes of their own, as a researcher runs them).

Afterwards every export is checked (tests/server/export_check.py): its rows are exactly those of the database
snapshot it names (``X-Export-Last-Event`` or ``schema.json``), every label's attribute is in the same export,
and the server answered no 5xx and logged no error. The exit status is 1 when any check fails.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.*, run from anywhere

from studyapp.server import export as export_mod
from tests.server import live as f
from tests.server.export_check import check_folder, check_http
from tests.support.net import free_port, wait_until_http_ok

PARTICIPANTS = 8
BATCH = 200  # the app's batch size (studyapp.sync.client.DEFAULT_BATCH_SIZE)
HTTP_FORMATS = ("jsonl", "csv")
CONTENT = "I went hiking near <LOCATION_1> with <PERSON_1> last weekend and want ideas for the next trip."


def batch(tag: str) -> list[dict]:
    """200 events: 40 messages, 80 attributes each with its label (sent together, so an export that is one
    snapshot has every label's attribute)."""
    events = [f.message(content=CONTENT) for _ in range(40)]
    for _ in range(80):
        attribute_id = f"a-{tag}-{uuid.uuid4().hex[:16]}"
        events += [f.attribute(attribute_id), f.attribute_label(attribute_id)]
    return events


@dataclass
class Uploads:
    accepted: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def uploader(url: str, token: str, stop: threading.Event, uploads: Uploads) -> None:
    with httpx.Client(base_url=url, timeout=120, headers={"Authorization": f"Bearer {token}"}) as client:
        while not stop.is_set():
            events = batch(token[:6])
            response = client.post("/v1/events", json={"events": events})
            with uploads.lock:
                uploads.statuses[response.status_code] += 1
                if response.status_code == 200:
                    data = response.json()
                    uploads.accepted += data["accepted"]
                    if data["accepted"] != len(events):
                        uploads.problems.append(str([r for r in data["results"] if r["status"] != "accepted"][:1]))
                else:
                    uploads.problems.append(f"{response.status_code}: {response.text[:200]}")


def upload_phase(url: str, tokens: list[str], seconds: float,
                 exporters: tuple[list[threading.Thread], threading.Event] | None = None) -> tuple[float, Uploads]:
    """Upload from every participant for ``seconds``; with ``exporters`` (threads and their "enough" event)
    until each has also finished the round it is in. Returns accepted events per second."""
    uploads = Uploads()
    stop = threading.Event()
    threads = [threading.Thread(target=uploader, args=(url, t, stop, uploads), daemon=True) for t in tokens]
    start = time.perf_counter()
    for t in threads:
        t.start()
    if exporters is not None:
        for t in exporters[0]:
            t.start()
    time.sleep(seconds)  # the phase's length (a benchmark, not a test: nothing waits on it for a state)
    if exporters is not None:
        exporters[1].set()
        for t in exporters[0]:
            t.join()
    stop.set()
    for t in threads:
        t.join(180)
    return uploads.accepted / (time.perf_counter() - start), uploads


@dataclass
class Exports:
    http: list[tuple[str, str, Path, dict[str, str]]] = field(default_factory=list)  # (record type, fmt, body, hdrs)
    folders: list[tuple[str, Path, float]] = field(default_factory=list)  # (fmt, folder, seconds)
    http_seconds: list[float] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    rounds: int = 0


def http_exporter(url: str, researcher_token: str, work: Path, enough: threading.Event, exports: Exports) -> None:
    """Rounds of every record type over HTTP, JSONL and CSV, until told it is enough (at least one round);
    bodies go to files, checked afterwards (checking now would slow the uploads on this machine)."""
    n = 0
    with httpx.Client(base_url=url, timeout=300, headers={"Authorization": f"Bearer {researcher_token}"}) as client:
        while True:
            for fmt in HTTP_FORMATS:
                for rt in export_mod.RECORD_TYPES:
                    n += 1
                    path = work / f"http-{n:04d}-{rt.name}.{fmt}"
                    start = time.perf_counter()
                    try:
                        with client.stream("GET", f"/v1/export/{rt.name}", params={"format": fmt}) as response, \
                                path.open("wb") as out:
                            if response.status_code != 200:
                                exports.problems.append(f"HTTP export {rt.name} {fmt}: {response.status_code}")
                                continue
                            for data in response.iter_bytes():
                                out.write(data)
                            exports.http.append((rt.name, fmt, path, dict(response.headers)))
                    except httpx.HTTPError as exc:
                        exports.problems.append(f"HTTP export {rt.name} {fmt} broke off: {exc!r}")
                    exports.http_seconds.append(time.perf_counter() - start)
            exports.rounds += 1
            if enough.is_set():
                return


def cli_exporter(db: Path, work: Path, enough: threading.Event, exports: Exports) -> None:
    """Rounds of ``studyapp-server export`` in every format at once (a process each, as three researchers would
    run them), until told it is enough."""
    env = {**os.environ, "STUDYAPP_SERVER_DB": str(db)}
    n = 0
    while True:
        running = []
        for fmt in export_mod.FORMATS:
            n += 1
            out_dir = work / f"cli-{n:04d}-{fmt}"
            running.append((fmt, out_dir, time.perf_counter(), subprocess.Popen(
                [sys.executable, "-m", "studyapp.server.cli", "export", "--format", fmt, "--out", str(out_dir),
                 "--researcher", "bench"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)))
        for fmt, out_dir, start, proc in running:
            _, stderr = proc.communicate()
            if proc.returncode != 0:
                exports.problems.append(f"CLI export {fmt}: exit {proc.returncode}: {stderr[-500:]}")
            else:
                exports.folders.append((fmt, out_dir, time.perf_counter() - start))
        if enough.is_set():
            return


def server_errors(log: Path) -> list[str]:
    text = log.read_text(encoding="utf-8", errors="replace")
    return [line for line in text.splitlines() if any(w in line for w in ("Traceback", "Exception", "ERROR",
                                                                          "Error", "error"))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="Length of each upload phase.")
    parser.add_argument("--prefill", type=int, default=10_000, help="Events stored before the server starts.")
    args = parser.parse_args()
    from studyapp.server.storage import Storage

    with tempfile.TemporaryDirectory(prefix="studyapp-bench-export-load-") as tmp:
        work = Path(tmp)
        db = work / "server.db"
        storage, researcher_token = f.new_storage(db)
        codes = storage.create_codes(PARTICIPANTS + 1)
        history, _ = storage.enroll(codes.pop())
        storage.bulk_insert_events(history, ((e["event_id"], e["kind"], e["payload"])
                                             for _ in range(args.prefill // BATCH + 1) for e in batch("history")))
        storage.close()
        port = free_port()
        log = work / "server.log"
        with log.open("wb") as log_file:
            proc = subprocess.Popen([sys.executable, "-m", "studyapp.server.cli", "serve", "--db", str(db),
                                     "--port", str(port)], stdout=log_file, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until_http_ok(f"{url}/health", timeout=60, alive=lambda: proc.poll() is None)
            tokens = []
            for code in codes:
                data = httpx.post(f"{url}/v1/enroll", json={"code": code}).json()
                httpx.post(f"{url}/v1/events", json={"events": [f.consent()]},
                           headers={"Authorization": f"Bearer {data['token']}"}).raise_for_status()
                tokens.append(data["token"])
            alone, uploads_alone = upload_phase(url, tokens, args.seconds)
            exports = Exports()
            enough = threading.Event()
            threads = [threading.Thread(target=http_exporter, args=(url, researcher_token, work, enough, exports),
                                        daemon=True),
                       threading.Thread(target=cli_exporter, args=(db, work, enough, exports), daemon=True)]
            # The phase lasts --seconds and at least one full round of exports of each kind.
            with_exports, uploads_during = upload_phase(url, tokens, args.seconds, (threads, enough))
        finally:
            proc.terminate()
            proc.wait(30)
        storage = Storage(db)
        failures = [*uploads_alone.problems, *uploads_during.problems, *exports.problems]
        checked_rows = 0
        for name, fmt, path, headers in exports.http:
            try:
                checked_rows += check_http(headers, path.read_bytes(), fmt, export_mod.record_type(name), storage)
            except AssertionError as exc:
                failures.append(f"HTTP export {name} {fmt}: {exc}")
        for fmt, out_dir, _ in exports.folders:
            try:
                checked_rows += sum(check_folder(out_dir, fmt, storage).values())
            except AssertionError as exc:
                failures.append(f"CLI export {fmt} {out_dir.name}: {exc}")
        errors = server_errors(log)
        statuses = uploads_alone.statuses + uploads_during.statuses
        server_5xx = sum(n for status, n in statuses.items() if status >= 500)
        stored = storage.count_events()
        storage.close()
    print(f"server: uvicorn on 127.0.0.1, {PARTICIPANTS} participants uploading batches of {BATCH}, "
          f"{args.prefill:,} events stored before, {stored:,} at the end")
    print(f"upload throughput without exports: {alone:8.0f} events/s  ({uploads_alone.accepted:,} events "
          f"in {args.seconds:.0f} s)")
    print(f"upload throughput with exports:    {with_exports:8.0f} events/s  ({uploads_during.accepted:,} events; "
          f"{with_exports / alone:.0%} of the rate without)")
    print(f"exports: {exports.rounds} HTTP rounds, {len(exports.http)} over HTTP (median "
          f"{sorted(exports.http_seconds)[len(exports.http_seconds) // 2] * 1000:.0f} ms), "
          f"{len(exports.folders)} with the CLI (" + ", ".join(
              f"{fmt} {s:.1f} s" for fmt, _, s in exports.folders) + ")")
    print(f"checked: {checked_rows:,} exported rows against the snapshots they name; "
          f"5xx answers: {server_5xx}; errors in the server log: {len(errors)}")
    for line in (failures + errors)[:20]:
        print("  FAILED:", line)
    if failures or errors or server_5xx:
        sys.exit(1)
    print("every export complete and one snapshot; no server errors")


if __name__ == "__main__":
    main()
