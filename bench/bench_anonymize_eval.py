"""Anonymization on the Faker-made evaluation sets: studyapp's scrubber against Presidio's defaults.

For each split (bench/anonymization_eval/tune.jsonl, test.jsonl and test2.jsonl; see generate.py and metrics.py
there for how they are made and what the figures mean) both scrubbers anonymize every text:

- studyapp: ``Anonymizer(db).anonymize_batch`` on a throwaway database, in batches of ``SCRUB_BATCH`` as
  ``studyapp privacy scrub`` does;
- Presidio's defaults: ``AnalyzerEngine`` with its default recognizers over the same spaCy model (through
  ``NlpEngineProvider``, nothing else configured) and ``AnonymizerEngine`` with its default operator.

Throughput is texts (and lines: some texts are letters or transcripts over several lines) per second over the
split after one warm-up text, engine load excluded.

    .venv/bin/python bench/bench_anonymize_eval.py [--split tune|test|test2|both|all] [--leaks N [--type ENTITY]]

``both`` is tune and test (the default), ``all`` adds test2, the second held-out split.

``--leaks N`` prints N leaked spans of studyapp's output on the tune split (never on test or test2), only those
of one entity type with ``--type`` (e.g. ``--type STREET_ADDRESS``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
EVAL = ROOT / "bench" / "anonymization_eval"
sys.path.insert(0, str(ROOT))

from bench.anonymization_eval.metrics import Tally, leaks, tally  # noqa: E402
from bench.anonymization_eval.values import ENTITY_TYPES  # noqa: E402
from studyapp.privacy.anonymize import MODEL_NAME, Anonymizer  # noqa: E402
from studyapp.privacy.commands import SCRUB_BATCH  # noqa: E402
from studyapp.store.db import open_database  # noqa: E402

Scrubber = Callable[[list[str]], list[str]]
SPLITS = ("tune", "test", "test2")


def load_split(split: str) -> list[dict[str, Any]]:
    path = EVAL / f"{split}.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def studyapp_scrubber(db_dir: Path) -> Scrubber:
    """The path ``studyapp privacy scrub --data-dir`` takes: the participant's database, batches of SCRUB_BATCH."""
    anonymizer = Anonymizer(open_database(db_dir / "studyapp.db")).load()

    def scrub(texts: list[str]) -> list[str]:
        out: list[str] = []
        for i in range(0, len(texts), SCRUB_BATCH):
            out.extend(anonymizer.anonymize_batch(texts[i:i + SCRUB_BATCH]))
        return out
    return scrub


def presidio_scrubber() -> Scrubber:
    """Presidio out of the box, given only the spaCy model to use (an installed package: no download)."""
    import tldextract
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import NlpEngineProvider
    from presidio_anonymizer import AnonymizerEngine

    # Presidio's e-mail check calls tldextract.extract, which fetches the Public Suffix List over HTTP (and
    # falls back to the bundled copy when offline). Same check, bundled copy only: nothing is downloaded.
    tldextract.extract = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)
    provider = NlpEngineProvider(nlp_configuration={
        "nlp_engine_name": "spacy", "models": [{"lang_code": "en", "model_name": MODEL_NAME}]})
    analyzer = AnalyzerEngine(nlp_engine=provider.create_engine(), supported_languages=["en"])
    anonymizer = AnonymizerEngine()

    def scrub(texts: list[str]) -> list[str]:
        return [anonymizer.anonymize(text=t, analyzer_results=analyzer.analyze(text=t, language="en")).text
                for t in texts]
    return scrub


def run(scrub: Scrubber, rows: list[dict[str, Any]]) -> tuple[list[str], float]:
    """Outputs and texts per second (lines per second is that times the split's lines per text)."""
    scrub(["warm up, Maria Lopez"])
    texts = [r["text"] for r in rows]
    t = time.perf_counter()
    outputs = scrub(texts)
    return outputs, len(texts) / (time.perf_counter() - t)


def pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.0f}%"


def table(results: dict[str, tuple[Tally, float]], lines_per_text: float) -> str:
    """One row per entity type, a recall and token-recall column pair per scrubber; then the overall rows."""
    names = list(results)
    head = "| entity | spans | " + " | ".join(f"{n} recall (token recall)" for n in names) + " |"
    lines = [head, "|---|---:|" + "---:|" * len(names)]
    first = results[names[0]][0]
    for label in ENTITY_TYPES:
        cells = [f"{pct(t.recall(label))} ({pct(t.token_recall(label))})" for t, _ in results.values()]
        lines.append(f"| {label} | {first.spans[label]} | " + " | ".join(cells) + " |")
    rows = {
        "**all spans**": lambda t, s: f"**{pct(t.recall())}** ({pct(t.token_recall())})",
        "precision (removed words inside a span)": lambda t, s: pct(t.precision()),
        "other words kept": lambda t, s: pct(t.other_kept_share()),
        "texts without identifiers left unchanged": lambda t, s: f"{t.clean_unchanged}/{t.clean_texts}",
        "throughput, texts/s (lines/s)": lambda t, s: f"{s:.0f} ({s * lines_per_text:.0f})",
    }
    for name, cell in rows.items():
        lines.append(f"| {name} | {sum(first.spans.values()) if name == '**all spans**' else ''} | "
                     + " | ".join(cell(t, s) for t, s in results.values()) + " |")
    return "\n".join(lines)


def precision_by_type(results: dict[str, tuple[Tally, float]]) -> str:
    """Per type each scrubber wrote: words it removed as that type, and the share of them inside a labeled span."""
    names = list(results)
    kinds = sorted({k for t, _ in results.values() for k in t.removed_by_type},
                   key=lambda k: (k == "other", -max(t.removed_by_type[k] for t, _ in results.values())))
    lines = ["| removed as | " + " | ".join(f"{n}: words (precision)" for n in names) + " |",
             "|---|" + "---:|" * len(names)]
    for kind in kinds:
        lines.append(f"| {kind} | " + " | ".join(
            f"{t.removed_by_type[kind]} ({pct(t.precision(kind))})" if t.removed_by_type[kind] else "–"
            for t, _ in results.values()) + " |")
    return "\n".join(lines)


def by_kind(rows: list[dict[str, Any]], outputs_by: dict[str, list[str]], tune_locales: set[str]) -> str:
    """Overall recall per kind of text, and on locales the tune split never drew from: where a gap hides."""
    groups: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        groups.setdefault(row["kind"], []).append(i)
    unseen = [i for i, row in enumerate(rows) if row["locale"] != "hand" and row["locale"] not in tune_locales]
    if unseen:
        groups["locales absent from tune"] = unseen
    names = list(outputs_by)
    lines = ["| texts | spans | " + " | ".join(f"{n} recall" for n in names) + " |",
             "|---|---:|" + "---:|" * len(names)]
    for group, idx in groups.items():
        subset = [rows[i] for i in idx]
        tallies = [tally(subset, [outputs_by[n][i] for i in idx]) for n in names]
        lines.append(f"| {group} ({len(idx)}) | {sum(tallies[0].spans.values())} | "
                     + " | ".join(pct(t.recall()) for t in tallies) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=(*SPLITS, "both", "all"), default="both",
                        help="one split, both = tune and test, all = tune, test and test2")
    parser.add_argument("--leaks", type=int, default=0, help="print this many of studyapp's leaks (tune split)")
    parser.add_argument("--type", choices=ENTITY_TYPES, help="print only the leaks of this entity type")
    args = parser.parse_args()
    splits = {"both": ("tune", "test"), "all": SPLITS}.get(args.split, (args.split,))
    print(f"# Anonymization on the evaluation sets ({time.strftime('%Y-%m-%d %H:%M')})\n")
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        scrubbers = {"studyapp": studyapp_scrubber(Path(tmp))}
        load_studyapp = time.perf_counter() - t
        t = time.perf_counter()
        scrubbers["Presidio defaults"] = presidio_scrubber()
        print(f"Engine load: studyapp {load_studyapp:.1f} s, Presidio defaults {time.perf_counter() - t:.1f} s\n")
        for split in splits:
            rows = load_split(split)
            results: dict[str, tuple[Tally, float]] = {}
            outputs_by: dict[str, list[str]] = {}
            for name, scrub in scrubbers.items():
                outputs, speed = run(scrub, rows)
                outputs_by[name] = outputs
                results[name] = (tally(rows, outputs), speed)
            print(f"## {split} split ({len(rows)} texts)\n")
            lines_per_text = sum(r["text"].count("\n") + 1 for r in rows) / len(rows)
            print(table(results, lines_per_text))
            print()
            print(precision_by_type(results))
            print()
            print(by_kind(rows, outputs_by, {r["locale"] for r in load_split("tune")}))
            print()
            if args.leaks and split == "tune":
                found = [(r["id"], x) for r, o in zip(rows, outputs_by["studyapp"], strict=True) for x in leaks(r, o)
                         if args.type is None or x.startswith(f"{args.type}:")]
                print(f"studyapp leaks on tune ({len(found)}), first {args.leaks}:\n")
                print("\n".join(f"- {i}: {x}" for i, x in found[:args.leaks]))
                print()


if __name__ == "__main__":
    main()
