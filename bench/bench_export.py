"""Export time for 1,000,000 stored events, per format (jsonl, csv, parquet), on either server backend.

    .venv/bin/python bench/bench_export.py                  # 1,000,000 events, SQLite
    .venv/bin/python bench/bench_export.py --backend postgresql   # the same on PostgreSQL
    .venv/bin/python bench/bench_export.py --events 50000   # a quick run

PostgreSQL runs as a throwaway cluster (tests/support/postgres.py); the export goes through the same code path as
``studyapp-server export`` (export.export over the storage's snapshot).

The events are a mix like a real study's: 70% messages, 15% attributes (each edited once, so the
export keeps the latest version), 5% attribute labels, 5% comparisons, 5% relevance labels,
spread over 100 participants. They are written straight through the storage layer in bulk.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from studyapp.server import export as export_mod
from studyapp.server.backend import open_storage
from studyapp.server.storage import Storage
from studyapp.study.protocol import parse_protocol

CONTENT = ("I went hiking near [LOCATION_1] with [PERSON_1] last weekend and want ideas for the next trip; "
           "we like lakes, quiet trails and a good lunch place.")
TS = "2026-11-25T10:00:00+00:00"


def events(n: int) -> Iterator[tuple[str, str, dict[str, Any]]]:
    attribute_ids: list[str] = []
    for i in range(n):
        r = i % 20
        if r < 14:
            yield str(uuid.uuid4()), "message", {"conversation_id": f"c{i // 40}", "message_id": str(uuid.uuid4()),
                                                 "role": "user" if i % 2 else "assistant", "content": CONTENT,
                                                 "created_at": TS, "status": "complete"}
        elif r < 17:
            if r == 16 and attribute_ids:
                aid = attribute_ids.pop()  # an edit of an earlier attribute
            else:
                aid = str(uuid.uuid4())
                attribute_ids.append(aid)
            yield str(uuid.uuid4()), "attribute", {"attribute_id": aid, "text": "Likes hiking by lakes",
                                                   "reason": "mentioned trips twice", "confidence": 0.8,
                                                   "origin": "model", "status": "active", "created_at": TS,
                                                   "updated_at": TS}
        elif r == 17:
            yield str(uuid.uuid4()), "attribute_label", {"attribute_id": str(uuid.uuid4()), "label": "maybe",
                                                         "labeled_at": TS}
        elif r == 18:
            yield str(uuid.uuid4()), "comparison", {
                "comparison_id": str(uuid.uuid4()), "conversation_id": "c1", "personalized_side": "left",
                "model": "gpt-4o-mini", "created_at": TS, "skipped": False, "prompt": CONTENT,
                "generic_response": CONTENT, "personalized_response": CONTENT, "rating": 4,
                "chosen": "personalized", "rated_at": TS}
        else:
            yield str(uuid.uuid4()), "relevance_label", {"comparison_id": str(uuid.uuid4()),
                                                         "attribute_id": str(uuid.uuid4()),
                                                         "selected_by_model": True, "model_relevant": False,
                                                         "human_relevant": None}


def protocol_text() -> str:
    """The benchmark study of bench_sync.py (same folder)."""
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_sync import PROTOCOL as text  # type: ignore[import-not-found]

    return text


def relation_sizes(storage: Any) -> dict[str, int]:
    """Bytes of the events table and each of its indexes (where the space per event goes)."""
    with storage._read() as conn:
        if isinstance(storage, Storage):
            rows = conn.execute("SELECT d.name, sum(d.pgsize) FROM dbstat d JOIN sqlite_schema s ON s.name = d.name "
                                "WHERE s.tbl_name = 'events' GROUP BY d.name ORDER BY d.name").fetchall()
        else:
            rows = conn.execute("SELECT c.relname, pg_relation_size(c.oid) FROM pg_class c "
                                "WHERE c.oid = 'events'::regclass OR c.oid IN "
                                "(SELECT indexrelid FROM pg_index WHERE indrelid = 'events'::regclass) "
                                "ORDER BY c.relname").fetchall()
    return {str(r[0]): int(r[1]) for r in rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--participants", type=int, default=100)
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="studyapp-bench-export-") as tmp:
        tmp_path = Path(tmp)
        cluster = None
        if args.backend == "postgresql":
            sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.support
            from tests.support.postgres import start_cluster

            cluster = start_cluster()
            storage: Any = open_storage(cluster.create_database())
        else:
            storage = Storage(tmp_path / "server.db")
        try:
            text = protocol_text()
            protocol = parse_protocol(text, source="bench")
            storage.init_study(study_id=protocol.id, title=protocol.title, version=protocol.version, protocol=text,
                               protocol_data=protocol.to_dict())
            codes = storage.create_codes(args.participants)
            participants = [storage.enroll(c)[0] for c in codes]  # type: ignore[index]
            per = args.events // len(participants)
            start = time.perf_counter()
            for p in participants:
                storage.bulk_insert_events(p, events(per))
            print(f"stored {storage.count_events():,} events for {len(participants)} participants "
                  f"in {time.perf_counter() - start:.1f} s")
            for fmt in export_mod.FORMATS:
                out = tmp_path / f"out-{fmt}"
                start = time.perf_counter()
                counts = export_mod.export(storage, out, fmt, researcher="bench")
                elapsed = time.perf_counter() - start
                size = sum(f.stat().st_size for f in out.iterdir())
                rows = sum(counts.values())
                print(f"export {fmt:<8} {rows:>9,} rows in {elapsed:6.1f} s ({rows / elapsed:,.0f} rows/s), "
                      f"{size / 2**20:,.0f} MiB")
            sizes = relation_sizes(storage)
            print("on disk: " + ", ".join(f"{name} {size / 2**20:,.0f} MiB" for name, size in sizes.items()))
            if cluster is not None:
                # What a withdrawal's clean-up costs at this size (docs/ARCHITECTURE.md: VACUUM after withdrawal).
                import psycopg

                with psycopg.connect(storage.url, autocommit=True) as conn:
                    size = conn.execute("SELECT pg_total_relation_size('events')").fetchone()[0]  # type: ignore[index]
                    start = time.perf_counter()
                    conn.execute("VACUUM FULL events")
                    print(f"VACUUM FULL events ({size / 2**20:,.0f} MiB with indexes): "
                          f"{time.perf_counter() - start:.1f} s")
        finally:
            storage.close()
            if cluster is not None:
                cluster.stop()
                shutil.rmtree(cluster.root, ignore_errors=True)
        print(f"backend {args.backend}; machine: {os.cpu_count()} cores, load average "
              + " ".join(f"{x:.2f}" for x in os.getloadavg()))


if __name__ == "__main__":
    main()
