"""Anonymization quality and speed.

Quality: precision and recall per entity type on bench/anonymization_set.jsonl (chat-like sentences
with labeled character spans; split "tuning" was used to adjust the recognizers, split "holdout" was
written afterwards and never tuned on, so its figures are the fair ones). A detection counts when
it overlaps a labeled span of the same type; "removed" is the share of labeled spans that some
detection (of any type) overlaps, i.e. the detail does not reach the outbox whatever it was called.

Speed: engine load time, messages anonymized per second (one by one and in batches), and the time
the collector adds to queueing one message (consent check + anonymization + insert) compared with
inserting an already anonymized payload into the outbox directly.

    .venv/bin/python bench/bench_anonymize.py [--no-ner] [--repeat N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from studyapp.privacy.anonymize import Anonymizer, load_engines
from studyapp.privacy.collect import Collector
from studyapp.privacy.consent import ConsentService
from studyapp.store.db import open_database
from studyapp.store.outbox import OutboxStore
from studyapp.store.util import new_id, now
from studyapp.study.protocol import parse_protocol

SET = Path(__file__).with_name("anonymization_set.jsonl")
TYPES = ("PERSON", "EMAIL_ADDRESS", "PHONE_NUMBER", "LOCATION", "CREDIT_CARD", "IBAN_CODE", "DATE_TIME",
         "IP_ADDRESS")
PROTOCOL = '''
[study]
id = "bench"
title = "bench"
version = "1"
duration_days = 7
[[consent]]
version = "1"
title = "c"
text = "consent"
[categories.conversation_text]
required = true
[comparisons]
min_turns_between = 1
daily_cap = 1
probability = 0.5
min_attributes = 0
'''


def overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def quality(anonymizer: Anonymizer, rows: list[dict]) -> str:
    gold_n: Counter[str] = Counter()
    pred_n: Counter[str] = Counter()
    tp_pred: Counter[str] = Counter()
    tp_gold: Counter[str] = Counter()
    removed: Counter[str] = Counter()
    extra: Counter[str] = Counter()
    for row in rows:
        found = anonymizer.analyze(row["text"])
        gold = [(s["label"], (s["start"], s["end"])) for s in row["spans"]]
        for label, span in gold:
            gold_n[label] += 1
            if any(f.entity_type == label and overlaps(span, (f.start, f.end)) for f in found):
                tp_gold[label] += 1
            if any(overlaps(span, (f.start, f.end)) for f in found):
                removed[label] += 1
        for f in found:
            if f.entity_type not in TYPES:
                extra[f.entity_type] += 1
                continue
            pred_n[f.entity_type] += 1
            if any(label == f.entity_type and overlaps(span, (f.start, f.end)) for label, span in gold):
                tp_pred[f.entity_type] += 1

    def pct(a: int, b: int) -> str:
        return f"{100 * a / b:.0f}%" if b else "n/a"

    lines = ["| entity | labeled | detected | precision | recall | removed (any type) |",
             "|---|---:|---:|---:|---:|---:|"]
    for t in TYPES:
        lines.append(f"| {t} | {gold_n[t]} | {pred_n[t]} | {pct(tp_pred[t], pred_n[t])} | "
                     f"{pct(tp_gold[t], gold_n[t])} | {pct(removed[t], gold_n[t])} |")
    all_gold, all_pred = sum(gold_n.values()), sum(pred_n.values())
    lines.append(f"| **all** | {all_gold} | {all_pred} | {pct(sum(tp_pred.values()), all_pred)} | "
                 f"{pct(sum(tp_gold.values()), all_gold)} | {pct(sum(removed.values()), all_gold)} |")
    clean = [r for r in rows if not r["spans"]]
    untouched = sum(1 for r in clean if not anonymizer.analyze(r["text"]))
    lines.append("")
    lines.append(f"Sentences without personal details left unchanged: {untouched}/{len(clean)}; "
                 f"other detections (URL etc.): {dict(extra) or 'none'}")
    return "\n".join(lines)


def speed(ner: bool, rows: list[dict], repeat: int) -> str:
    texts = [r["text"] for r in rows] * repeat
    with tempfile.TemporaryDirectory() as tmp:
        db = open_database(Path(tmp) / "studyapp.db")
        anonymizer = Anonymizer(db, ner=ner)
        anonymizer.anonymize("warm up Maria")
        t = time.perf_counter()
        for text in texts:
            anonymizer.anonymize(text)
        single = len(texts) / (time.perf_counter() - t)
        t = time.perf_counter()
        anonymizer.anonymize_batch(texts)
        batch = len(texts) / (time.perf_counter() - t)

        protocol = parse_protocol(PROTOCOL)
        consent = ConsentService(db)
        consent.grant(protocol, ["conversation_text"])
        collector = Collector(db, protocol, anonymizer, consent)
        outbox = OutboxStore(db)
        queue_ms, direct_ms = [], []
        for text in texts[: min(len(texts), 300)]:
            payload = {"conversation_id": "c", "message_id": new_id(), "role": "user", "content": text,
                       "created_at": now(), "status": "complete"}
            t = time.perf_counter()
            collector.collect("message", payload)
            queue_ms.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            outbox.add(study_id="bench", kind="message", category="conversation_text", payload=payload,
                       consent_version="1", approved=True)
            direct_ms.append((time.perf_counter() - t) * 1000)
        db.close()

    def q(values: list[float], p: float) -> float:
        return statistics.quantiles(values, n=100)[int(p) - 1]

    added = statistics.median(queue_ms) - statistics.median(direct_ms)
    return "\n".join([
        "| measure | value |", "|---|---:|",
        f"| messages anonymized per second, one by one | {single:.0f} |",
        f"| messages anonymized per second, anonymize_batch | {batch:.0f} |",
        f"| collect() one message: median / p95 | {statistics.median(queue_ms):.1f} ms / {q(queue_ms, 95):.1f} ms |",
        f"| outbox insert alone: median | {statistics.median(direct_ms):.2f} ms |",
        f"| time anonymization + consent check add to queueing one message (median) | {added:.1f} ms |",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-ner", action="store_true", help="pattern recognizers only")
    parser.add_argument("--repeat", type=int, default=3, help="passes over the set for the speed figures")
    args = parser.parse_args()
    rows = [json.loads(line) for line in SET.read_text(encoding="utf-8").splitlines() if line.strip()]
    ner = not args.no_ner
    t = time.perf_counter()
    engines = load_engines(ner=ner)
    load_s = time.perf_counter() - t
    print(f"# Anonymization benchmark ({time.strftime('%Y-%m-%d')}, {len(rows)} sentences, "
          f"NER {'active' if engines.ner_available else 'off'})\n")
    print(f"Engine load (first use, cold): {load_s:.2f} s\n")
    anonymizer = Anonymizer(None, ner=ner)
    for split, label in (("tuning", "sentences seen while tuning the recognizers"),
                         ("holdout", "held-out sentences, written after tuning and never tuned on")):
        subset = [r for r in rows if r.get("split", "tuning") == split]
        print(f"## Quality, {split} split ({len(subset)} {label})\n")
        print(quality(anonymizer, subset))
        print()
    print(f"## Quality, all {len(rows)} sentences\n")
    print(quality(anonymizer, rows))
    print()
    print("## Speed\n")
    print(speed(ner, rows, args.repeat))


if __name__ == "__main__":
    main()
