"""The analysis report on a large export: time to load, analyze and write it, and the peak memory.

    .venv/bin/python bench/bench_report.py                                  # 1,000 participants x 60 days
    .venv/bin/python bench/bench_report.py --participants 50 --days 10      # a quick run
    .venv/bin/python bench/bench_report.py --export DIR                     # measure an existing export

The export is generated once into ``$STUDYAPP_BENCH_CACHE`` (default ``<tmp>/studyapp-bench``) as
``report-export-<P>x<D>``, in Parquet with every column of the export contract (``studyapp.server.export``),
written in row groups so the generator holds only one row group per file in memory. At the defaults it has
about 2.8 million rows: per participant-day five to eleven turns (two messages and a schedule decision each), a
comparison on most days (with its selections, relevance labels and two judge verdicts), the selector's decisions on
one ordinary turn for participants who consented to ``selections``, and a few attributes, labels, dismissals and
memory views. One participant in ten runs an app before contract 2 (no "since 2" columns, no selections or memory
views); one in a hundred has withdrawn (a tombstone in ``participants``, no records).

The measurement runs in a fresh process, so its peak resident memory (``ru_maxrss``) is that of load_export,
analyze and write_report alone, not of the generator.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from studyapp.events import CATEGORIES, CONTRACT_VERSION  # noqa: E402
from studyapp.server import export as export_mod  # noqa: E402

STUDY_ID = "bench-report-2026"
START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
ROW_GROUP = 50_000
CONSENT_SHA = "04914c7889ce57d3bd21e9745391391438778c54f75d0264c00115b61f1451d1"
WORDS = ("the i you to a and it of is that in for my can what me be have this do with on how but your so not are "
         "just like about plan ideas trip budget recipe dinner running training sleep garden book travel python "
         "code email meeting project deadline team weekend family kids birthday gift music guitar piano movie "
         "coffee tea health doctor exercise walk bike train hotel city weather spanish learn exam notes paper "
         "<PERSON_1> <LOCATION_1>").split()
ATTRIBUTES = ("The user is vegetarian", "The user plays the cello", "The user runs three times a week",
              "The user is learning Spanish", "The user works as a nurse", "The user has two children",
              "The user lives near <LOCATION_1>", "The user prefers short answers", "The user drinks tea",
              "The user is training for a marathon", "The user likes science fiction", "The user cycles to work")
MODEL, SELECTOR, JUDGE, EXTRACTOR = "gpt-4o-mini", "gpt-4o-mini", "claude-judge", "smollm2-135m-instruct"
# Each participant's typical ratings lean their own way: the bootstrap then has clusters to respect.
RATING_WEIGHTS = ((0.05, 0.10, 0.30, 0.35, 0.20), (0.15, 0.25, 0.30, 0.20, 0.10), (0.05, 0.10, 0.50, 0.25, 0.10))


class ParquetExport:
    """One Parquet writer per contract file, each buffering one row group of columns at most."""

    def __init__(self, folder: Path) -> None:
        import pyarrow.parquet as pq

        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.schemas = {rt.name: export_mod.parquet_schema(rt) for rt in export_mod.RECORD_TYPES}
        self.writers = {name: pq.ParquetWriter(str(folder / f"{name}.parquet"), schema)
                        for name, schema in self.schemas.items()}
        self.buffers: dict[str, dict[str, list[Any]]] = {n: {c: [] for c in s.names} for n, s in self.schemas.items()}
        self.pending = dict.fromkeys(self.schemas, 0)
        self.rows = dict.fromkeys(self.schemas, 0)

    def add(self, name: str, participant_id: str, **fields: Any) -> None:
        columns = self.buffers[name]
        fields["study_id"], fields["participant_id"] = STUDY_ID, participant_id
        for column, values in columns.items():
            values.append(fields.get(column))  # a column the row does not name is empty, as in a real export
        self.pending[name] += 1
        self.rows[name] += 1
        if self.pending[name] >= ROW_GROUP:
            self._flush(name)

    def _flush(self, name: str) -> None:
        import pyarrow as pa

        if not self.pending[name]:
            return
        self.writers[name].write_table(pa.table(self.buffers[name], schema=self.schemas[name]))
        for values in self.buffers[name].values():
            values.clear()
        self.pending[name] = 0

    def close(self) -> dict[str, int]:
        for name in self.writers:
            self._flush(name)
            self.writers[name].close()
        return self.rows


class Participant:
    """One simulated participant: their ids, clock and memory, writing their rows day by day."""

    def __init__(self, out: ParquetExport, index: int, seed: int) -> None:
        self.out = out
        self.rng = random.Random(seed * 1_000_003 + index)
        self.id = self.uid()
        self.v2 = self.rng.random() >= 0.1  # one in ten on an app before contract 2
        self.selections = self.v2 and self.rng.random() < 0.5  # consented to the selections category
        self.offset_min = self.rng.choice((-300, -240, 0, 60, 120, 330, 540))
        self.ratings = self.rng.choice(RATING_WEIGHTS)
        self.memory: list[str] = []  # active attribute ids
        # attribute id -> its latest version: the export keeps one row per attribute, written at the end
        self.attributes: dict[str, dict[str, Any]] = {}
        self.conversation = self.uid()

    def uid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def text(self, lo: int, hi: int) -> str:
        return " ".join(self.rng.choices(WORDS, k=self.rng.randint(lo, hi)))

    def v(self, value: Any) -> Any:
        """A "since 2" field: empty for an app before contract 2."""
        return value if self.v2 else None

    def add(self, name: str, **fields: Any) -> None:
        if name in ("selections", "memory_views", "question_answers") and not self.v2:
            return
        fields.setdefault("contract_version", CONTRACT_VERSION if self.v2 else None)
        self.out.add(name, self.id, **fields)

    def enroll(self, withdrawn: bool) -> None:
        enrolled = START + timedelta(minutes=self.rng.randint(0, 600))
        if withdrawn:  # the tombstone is all the server keeps
            self.out.add("participants", self.id, withdrawn_at=(enrolled + timedelta(days=3)).isoformat())
            return
        categories = [c for c in CATEGORIES if c != "selections" or self.selections]
        self.out.add("participants", self.id, enrolled_at=enrolled.isoformat(), consent_version="1",
                     consent_sha256=CONSENT_SHA, categories=categories)
        self.add("consents", consent_version="1", consent_sha256=CONSENT_SHA, categories=categories,
                 action="grant", created_at=enrolled.isoformat())
        for _ in range(5):
            self.new_attribute(enrolled)

    def new_attribute(self, at: datetime) -> None:
        aid = self.uid()
        self.memory.append(aid)
        self.attributes[aid] = dict(
            attribute_id=aid, text=self.rng.choice(ATTRIBUTES), reason=self.text(6, 14),
            confidence=round(self.rng.uniform(0.4, 1.0), 2), origin="model", status="active",
            created_at=at.isoformat(), updated_at=at.isoformat(), replaced_entities=self.v("{}"))

    def delete_attribute(self, at: datetime) -> None:
        aid = self.memory.pop(self.rng.randrange(len(self.memory)))
        self.attributes[aid].update(status="deleted", updated_at=at.isoformat())

    def finish(self) -> None:
        for fields in self.attributes.values():
            self.add("attributes", **fields)

    def day(self, number: int) -> None:
        clock = START + timedelta(days=number - 1, hours=self.rng.uniform(1, 10))
        compared = False
        ordinary_selected = False
        for _ in range(self.rng.randint(5, 11)):
            clock += timedelta(seconds=self.rng.uniform(30, 900))
            if not compared and self.rng.random() < 0.2:
                compared = True
                self.comparison_turn(clock, number)
            else:
                self.ordinary_turn(clock, compared, selections=self.selections and not ordinary_selected)
                ordinary_selected = True
        if self.rng.random() < 0.3:
            self.new_attribute(clock)
        if len(self.memory) > 3 and self.rng.random() < 0.1:
            self.delete_attribute(clock)
        if self.memory and self.rng.random() < 0.9:
            self.label(clock)
        if self.memory and self.rng.random() < 0.2:
            self.add("label_dismissals", dismissal_id=self.uid(), attribute_id=self.rng.choice(self.memory),
                     dismissed_at=clock.isoformat(), source="label_prompt")
        if self.rng.random() < 0.2:
            seconds = self.rng.uniform(3, 90)
            self.add("memory_views", view_id=self.uid(), opened_at=clock.isoformat(),
                     closed_at=(clock + timedelta(seconds=seconds)).isoformat(), duration_s=seconds,
                     screen="memory_screen")

    def message(self, at: datetime, role: str, **fields: Any) -> str:
        mid = self.uid()
        self.add("messages", conversation_id=self.conversation, message_id=mid, role=role,
                 content=self.text(4, 24) if role == "user" else self.text(30, 90), created_at=at.isoformat(),
                 status="complete" if self.rng.random() < 0.98 else "interrupted",
                 replaced_entities=self.v("{}"), **fields)
        return mid

    def decision(self, at: datetime, message_id: str, outcome: str, selected: int | None) -> None:
        eligible = outcome in ("comparison", "draw_lost")
        draw = self.rng.uniform(0, 0.2) if outcome == "comparison" else self.rng.uniform(0.2, 1)
        self.add("schedule_decisions", decision_id=self.uid(), conversation_id=self.conversation,
                 message_id=message_id, decided_at=at.isoformat(), eligible=eligible,
                 draw=draw if eligible else None, probability=0.2 if eligible else None, outcome=outcome,
                 reason="eligible, and the draw was held against probability 0.2" if eligible
                 else "daily cap reached (1 of 1 today)", memory_size=len(self.memory), selected_count=selected)

    def select(self, at: datetime, message_id: str, turn: str) -> list[str]:
        chosen = [a for a in self.memory if self.rng.random() < 0.3] or self.memory[:1]
        for aid in self.memory:
            self.add("selections", turn=turn, selection_id=self.uid(), message_id=message_id,
                     conversation_id=self.conversation, attribute_id=aid, selected=aid in chosen, valid=True,
                     rationale=self.text(3, 10), model=SELECTOR, template="select@2", decided_at=at.isoformat(),
                     replaced_entities="{}")
        return chosen

    def ordinary_turn(self, at: datetime, compared_today: bool, *, selections: bool) -> None:
        mid = self.message(at, "user")
        outcome = "daily_cap" if compared_today else "draw_lost"
        selected = len(self.select(at, mid, "ordinary")) if selections else None
        self.decision(at, mid, outcome, selected)
        reply = self.message(at + timedelta(seconds=4), "assistant")
        if self.rng.random() < 0.15:  # experience sampling: "did that reply feel written for you?" (1-5)
            self.answer(at + timedelta(seconds=6), "written_for_you", "likert", "after_turn",
                        number=self.rng.randint(1, 5), message_id=reply, ask_probability=0.15)

    def answer(self, at: datetime, question_id: str, qtype: str, when: str, *, number: int | None = None,
               option: str | None = None, **fields: Any) -> None:
        """One of the study's own questions put to the participant: answered, or (one in five) skipped."""
        status = "answered" if self.rng.random() < 0.8 else "skipped"
        answered = status == "answered"
        self.add("question_answers", answer_id=self.uid(), question_id=question_id, question_version="1",
                 question_type=qtype, question_when=when, status=status, asked_at=at.isoformat(),
                 answered_at=(at + timedelta(seconds=self.rng.uniform(2, 20))).isoformat(),
                 answer_number=number if answered else None, answer_option=option if answered else None,
                 utc_offset_min=self.offset_min, replaced_entities="{}", **fields)

    def comparison_turn(self, at: datetime, study_day: int) -> None:
        mid = self.message(at, "user")
        chosen_ids = self.select(at, mid, "comparison")
        self.decision(at, mid, "comparison", len(chosen_ids))
        cid, side = self.uid(), self.rng.choice(("left", "right"))
        state = self.rng.choices(("rated", "skipped", "abandoned", "failed"), (0.85, 0.08, 0.05, 0.02))[0]
        rating = self.rng.choices((1, 2, 3, 4, 5), self.ratings)[0] if state == "rated" else None
        shown, rated = at + timedelta(seconds=8), at + timedelta(seconds=self.rng.uniform(10, 120))
        chosen = self.rng.choice(("generic", "personalized")) if state == "rated" else None
        if rating is not None:
            shown_rating = rating if side == "right" else 6 - rating  # the scale runs Response 1 -> Response 2
        else:
            shown_rating = None
        self.add("comparisons", comparison_id=cid, conversation_id=self.conversation, prompt=self.text(4, 24),
                 generic_response=self.text(30, 90), personalized_response=self.text(30, 90),
                 personalized_side=side, model=MODEL, created_at=at.isoformat(), rating=rating, chosen=chosen,
                 rated_at=rated.isoformat() if state in ("rated", "skipped") else None, skipped=state == "skipped",
                 parameters='{"max_tokens": 512, "temperature": 0.7}',
                 templates='{"generic": "assistant@1", "personalized": "assistant_personalized@1"}',
                 time_to_rate_ms=(rated - shown).total_seconds() * 1000 if state in ("rated", "skipped") else None,
                 prompt_message_id=mid, shown_at=shown.isoformat(), rating_shown=shown_rating,
                 memory_size=len(self.memory), selected_count=len(chosen_ids), selector_model=SELECTOR,
                 selector_template="select@2", protocol_version="1", study_day=study_day,
                 utc_offset_min=self.offset_min, state=self.v(state),
                 ended_at=self.v(rated.isoformat() if state in ("abandoned", "failed") else None),
                 consent_version=self.v("1"), extractor_model=self.v(EXTRACTOR),
                 extractor_template=self.v("extract@3"), generic_template=self.v("assistant@1"),
                 personalized_template=self.v("assistant_personalized@1"), context_messages=self.v(6),
                 context_sha256=self.v(CONSENT_SHA), replaced_entities=self.v("{}"))
        if chosen is not None:
            self.message(rated, "assistant", arm=self.v(chosen), comparison_id=self.v(cid))
        if rating is not None:
            self.relevance(rated, cid, chosen_ids)
            self.answer(rated, "felt_understood", "choice", "after_comparison", comparison_id=cid,
                        option=self.rng.choice(("Response 1", "Response 2", "Neither")), study_day=study_day)
            for judge_side in ("left", "right"):
                self.add("judge_verdicts", comparison_id=cid, judge_model=JUDGE, personalized_side=judge_side,
                         rating=min(5, max(1, rating + self.rng.choice((-1, 0, 0, 1)))),
                         verdict_id=self.uid(), verdict_status=self.v("ok"), judge_template=self.v("judge@2"),
                         context_sha256=self.v(CONSENT_SHA), context_chars=self.v(2400),
                         created_at=self.v((rated + timedelta(hours=1)).isoformat()))

    def relevance(self, at: datetime, comparison_id: str, chosen_ids: list[str]) -> None:
        for aid in self.memory:
            selected = aid in chosen_ids
            if not selected and self.rng.random() >= 0.3:
                continue  # unselected attributes are sampled for the question
            status = self.rng.choices(("yes", "no", "not_sure", "not_asked"), (0.5, 0.3, 0.1, 0.1))[0]
            answered = status in ("yes", "no")
            self.add("relevance_labels", comparison_id=comparison_id, attribute_id=aid, selected_by_model=selected,
                     model_relevant=selected, human_relevant=(status == "yes") if answered else None,
                     relevance_status=self.v(status), asked_when=self.v("after_rating" if status != "not_asked"
                                                                       else None),
                     ask_probability=self.v(1.0 if selected else 0.3),
                     labeled_at=self.v(at.isoformat() if status != "not_asked" else None))

    def label(self, at: datetime) -> None:
        aid = self.rng.choice(self.memory)
        label = self.rng.choices(("makes_sense", "maybe", "doesnt_make_sense"), (0.65, 0.2, 0.15))[0]
        self.add("attribute_labels", attribute_id=aid, label=label, labeled_at=at.isoformat(),
                 source="label_prompt", attribute_text=self.rng.choice(ATTRIBUTES),
                 confidence=round(self.rng.uniform(0.4, 1.0), 2), age_s=self.rng.uniform(60, 86_400 * 5),
                 replaced_entities=self.v("{}"))


def generate(folder: Path, participants: int, days: int, *, seed: int = 1,
             progress: bool = False) -> dict[str, int]:
    """Write a Parquet export of ``participants`` x ``days`` into ``folder``; return the rows per file."""
    out = ParquetExport(folder)
    started = time.perf_counter()
    try:
        for index in range(participants):
            p = Participant(out, index, seed)
            withdrawn = p.rng.random() < 0.01
            p.enroll(withdrawn)
            for number in range(1, 0 if withdrawn else days + 1):
                p.day(number)
            p.finish()
            if progress and (index + 1) % max(1, participants // 10) == 0:
                print(f"  generated {index + 1:,}/{participants:,} participants, {sum(out.rows.values()):,} rows "
                      f"({time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)
    finally:
        rows = out.close()
    return rows


def cached_export(participants: int, days: int, seed: int) -> Path:
    base = Path(os.environ.get("STUDYAPP_BENCH_CACHE") or Path(tempfile.gettempdir()) / "studyapp-bench")
    folder = base / f"report-export-{participants}x{days}-seed{seed}"
    marker = folder / "generated.json"
    if marker.exists():
        print(f"reusing {folder}", file=sys.stderr)
        return folder
    for leftover in folder.glob("*") if folder.exists() else ():
        leftover.unlink()  # an interrupted run
    started = time.perf_counter()
    rows = generate(folder, participants, days, seed=seed, progress=True)
    elapsed = time.perf_counter() - started
    marker.write_text(json.dumps({"rows": rows, "seconds": round(elapsed, 1)}))
    size = sum(f.stat().st_size for f in folder.glob("*.parquet"))
    print(f"generated {sum(rows.values()):,} rows in {elapsed:.0f} s ({size / 2**20:,.0f} MiB Parquet), "
          f"peak RSS of the generator {peak_mib():,.0f} MiB", file=sys.stderr)
    return folder


def peak_mib() -> float:
    # ru_maxrss is KiB on Linux (bytes on macOS).
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def measure(folder: Path, out: Path, fmt: str, seed: int, bootstrap: int) -> None:
    """Time each stage in this process; ru_maxrss after each is the peak so far."""
    from studyapp.analysis.load import load_export
    from studyapp.analysis.measures import analyze
    from studyapp.analysis.report import write_report

    def stage(name: str, start: float) -> None:
        print(f"{name:<14} {time.perf_counter() - start:7.1f} s   peak RSS so far {peak_mib():8,.0f} MiB",
              flush=True)

    print(f"before         {'':9}   peak RSS so far {peak_mib():8,.0f} MiB (imports)")
    start = time.perf_counter()
    export = load_export(folder)
    stage("load_export", start)
    start = time.perf_counter()
    analysis = analyze(export, seed=seed, bootstrap=bootstrap)
    stage("analyze", start)
    start = time.perf_counter()
    files = write_report(analysis, out, fmt)
    stage("write_report", start)
    print(f"report {files.report} ({files.report.stat().st_size / 2**10:,.0f} KiB), {len(files.tables)} tables, "
          f"{len(files.charts)} chart files")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--participants", type=int, default=1_000)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--seed", type=int, default=1, help="Seed of the generated export and of the bootstrap.")
    parser.add_argument("--bootstrap", type=int, default=2000, help="Bootstrap resamples of analyze.")
    parser.add_argument("--format", dest="fmt", choices=("html", "md"), default="html")
    parser.add_argument("--export", type=Path, help="Measure this export folder instead of a generated one.")
    parser.add_argument("--out", type=Path, help="The report file [default: a temporary folder].")
    parser.add_argument("--measure-only", action="store_true", help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    if args.measure_only:
        measure(args.export, args.out, args.fmt, args.seed, args.bootstrap)
        return
    folder = args.export or cached_export(args.participants, args.days, args.seed)
    with tempfile.TemporaryDirectory(prefix="studyapp-bench-report-") as tmp:
        out = args.out or Path(tmp) / f"report.{args.fmt}"
        print(f"export {folder}: {export_size(folder)}")
        child = [sys.executable, __file__, "--measure-only", "--export", str(folder), "--out", str(out),
                 "--format", args.fmt, "--seed", str(args.seed), "--bootstrap", str(args.bootstrap)]
        started = time.perf_counter()
        subprocess.run(child, check=True)
        print(f"total (with the interpreter's start and imports) {time.perf_counter() - started:.1f} s")
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")


def export_size(folder: Path) -> str:
    import pyarrow.parquet as pq

    files = sorted(folder.glob("*.parquet"))
    if not files:
        return "no Parquet files (measured as it is)"
    rows = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    return f"{rows:,} rows in {len(files)} Parquet files, {sum(f.stat().st_size for f in files) / 2**20:,.0f} MiB"


if __name__ == "__main__":
    main()
