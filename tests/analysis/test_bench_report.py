"""bench/bench_report.py's generator: a small export has every file of the contract with its columns and types,
and its rows join on ids as a real export's do."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from studyapp.server.export import RECORD_TYPES, parquet_schema

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_report.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_report", BENCH)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def generated(bench, tmp_path_factory) -> tuple[Path, dict[str, int]]:
    folder = tmp_path_factory.mktemp("export")
    return folder, bench.generate(folder, participants=12, days=4, seed=3)


def test_the_generated_export_has_the_contracts_files_and_columns(generated) -> None:
    folder, rows = generated
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{rt.name}.parquet" for rt in RECORD_TYPES)
    for rt in RECORD_TYPES:
        schema = pq.read_schema(folder / f"{rt.name}.parquet")
        assert schema.equals(parquet_schema(rt), check_metadata=False), rt.name
        assert pq.ParquetFile(folder / f"{rt.name}.parquet").metadata.num_rows == rows[rt.name]
        assert rows[rt.name] > 0, rt.name


def test_the_generated_rows_join_on_ids(generated) -> None:
    folder, _ = generated
    read = {rt.name: pq.read_table(folder / f"{rt.name}.parquet").to_pylist() for rt in RECORD_TYPES}
    participants = {r["participant_id"] for r in read["participants"]}
    assert len(participants) == 12
    comparisons = {(r["participant_id"], r["comparison_id"]) for r in read["comparisons"]}
    assert len(comparisons) == len(read["comparisons"])  # one row per comparison, as the export keeps them
    for name in ("relevance_labels", "judge_verdicts"):
        assert {(r["participant_id"], r["comparison_id"]) for r in read[name]} <= comparisons, name
    attributes = {(r["participant_id"], r["attribute_id"]) for r in read["attributes"]}
    assert len(attributes) == len(read["attributes"])
    assert {(r["participant_id"], r["attribute_id"]) for r in read["attribute_labels"]} <= attributes
    assert {r["turn"] for r in read["selections"]} <= {"comparison", "ordinary"}
    rated = [r for r in read["comparisons"] if r["rating"] is not None]
    assert rated and all(1 <= r["rating"] <= 5 for r in rated)
    # Every row names a participant of the participants file.
    for name, table in read.items():
        assert {r["participant_id"] for r in table} <= participants, name


def test_with_conditions_every_file_has_the_condition_and_the_questions_are_asked(bench, tmp_path) -> None:
    bench.generate(tmp_path, participants=8, days=8, seed=3, conditions=2)
    read = {p.stem: pq.read_table(p).to_pylist() for p in tmp_path.glob("*.parquet")}
    assert set(read) == {rt.name for rt in RECORD_TYPES} | {"question_answers"}
    for name, table in read.items():
        assert pq.read_schema(tmp_path / f"{name}.parquet").names[:3] == ["study_id", "participant_id", "condition"]
        assert all(r["condition"] in ("condition-1", "condition-2") for r in table), name
    assignments = [r["condition"] for r in read["participants"]]
    assert assignments.count("condition-1") == assignments.count("condition-2") == 4  # blocked: balanced
    answers = read["question_answers"]
    assert {r["question_id"] for r in answers} == {"understood", "heard", "liked", "felt_understood",
                                                   "written_for_you"}
    assert {r["status"] for r in answers} <= {"answered", "skipped", "unanswered"}
    assert all(r["answer_number"] is None for r in answers if r["status"] != "answered")
