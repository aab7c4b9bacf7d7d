"""The analysis of the example export (examples/export, contract 2), and of many small odd studies: it never
raises, and what it cannot compute is a value None with a note or NotAvailable."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from studyapp.analysis.load import from_frames, load_export
from studyapp.analysis.measures import HEADLINE_KEYS, analyze
from studyapp.analysis.model import Figure, NotAvailable
from tests.analysis.builder import StudyBuilder
from tests.analysis.test_measures import check_counts

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "export"
SECTIONS = ["participation", "stage1", "stage2", "stage3", "judges", "paper"]
# The example study asks its own questions too.
EXAMPLE_SECTIONS = [*SECTIONS[:-1], "questions", "paper"]


def read_csv(name: str) -> list[dict[str, str]]:
    with (EXAMPLE / f"{name}.csv").open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def test_the_example_export_gives_every_section_and_every_contract_2_measure() -> None:
    analysis = analyze(load_export(EXAMPLE), bootstrap=200)
    check_counts(analysis)
    assert [s.key for s in analysis.sections] == EXAMPLE_SECTIONS
    assert all(section.items for section in analysis.sections)
    unavailable = [item.key for s in analysis.sections for item in s.items if isinstance(item, NotAvailable)]
    assert unavailable == []
    for key in (*HEADLINE_KEYS, "comparisons_failed", "acceptance_by_age", "acceptance_by_confidence",
                "labels_by_week", "stage2_by_week", "ratings_by_week", "compliance_by_day", "judges",
                "paper_vs_study", "judge_mean:judge-model", "judge_spearman:judge-model"):
        assert analysis.find(key) is not None, key
    assert analysis.title == "Study analysis: sync-test-2026"

    # A few numbers, straight from the CSV files.
    rated = [int(r["rating"]) for r in read_csv("comparisons") if r["state"] == "rated"]
    mean_rating = analysis.find("mean_rating")
    assert isinstance(mean_rating, Figure) and mean_rating.value == pytest.approx(sum(rated) / len(rated))
    labels = read_csv("attribute_labels")  # each attribute labeled once here
    acceptance = analysis.find("acceptance")
    assert isinstance(acceptance, Figure)
    assert acceptance.value == pytest.approx(sum(r["label"] == "makes_sense" for r in labels) / len(labels))
    answers = [r for r in read_csv("relevance_labels") if r["relevance_status"] in ("yes", "no")]
    relevance = analysis.find("relevance_rate")
    assert isinstance(relevance, Figure) and relevance.n_items == len(answers)
    weights = [1 / float(r["ask_probability"]) for r in answers]  # unselected attributes are a sample
    assert relevance.value == pytest.approx(
        sum(w for r, w in zip(answers, weights, strict=True) if r["relevance_status"] == "yes") / sum(weights))


def test_the_analysis_imports_without_matplotlib() -> None:
    code = ("import sys; sys.modules['matplotlib'] = None; "
            "import studyapp.analysis.measures, studyapp.analysis.load; print('ok')")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert done.stdout.strip() == "ok", done.stderr


# -- small odd studies ------------------------------------------------------------------------------------------


STATES = st.sampled_from(["rated", "rated", "skipped", "failed", "cancelled", "abandoned"])
COMPARISON = st.fixed_dictionaries({
    "participant": st.integers(0, 3), "day": st.integers(1, 30), "state": STATES, "rating": st.integers(1, 5),
    "side": st.sampled_from(["left", "right"]), "memory": st.one_of(st.none(), st.integers(0, 4)),
    "selected": st.one_of(st.none(), st.integers(0, 4)),
    "relevance": st.lists(st.tuples(st.booleans(), st.sampled_from(["yes", "no", "not_sure", "not_asked"]),
                                    st.sampled_from([1.0, 0.5, 0.25])), max_size=3),
    "verdicts": st.lists(st.tuples(st.sampled_from(["j1", "j2"]), st.sampled_from(["left", "right"]),
                                   st.one_of(st.none(), st.integers(1, 5))), max_size=3),
})
LABEL = st.tuples(st.integers(0, 3), st.sampled_from(["makes_sense", "maybe", "doesnt_make_sense"]),
                  st.integers(1, 30), st.one_of(st.none(), st.floats(0, 2e6)), st.one_of(st.none(), st.floats(0, 1)))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(people=st.integers(1, 4), comparisons=st.lists(COMPARISON, max_size=12), labels=st.lists(LABEL, max_size=6),
       withdrawn=st.booleans(), older=st.booleans())
def test_odd_studies_never_raise(people: int, comparisons: list[dict], labels: list[tuple], withdrawn: bool,
                                 older: bool) -> None:
    b = StudyBuilder()
    for p in range(people):
        b.participant(f"p{p}", withdrawn=withdrawn and p == people - 1)
    for c in comparisons:
        pid = f"p{c['participant'] % people}"
        rated = c["state"] == "rated"
        cid = b.comparison(pid, day=c["day"], rating=c["rating"] if rated else None, state=c["state"],
                           side=c["side"], memory=c["memory"], selected=c["selected"])
        for selected, status, probability in c["relevance"]:
            b.relevance(pid, cid, selected=selected, status=status, probability=probability)
        for judge, side, rating in c["verdicts"]:
            b.verdict(pid, cid, judge, side, rating, status="ok" if rating is not None else "unreadable")
    for p, label, day, age, confidence in labels:
        b.label(f"p{p % people}", label, day=day, age_s=age, confidence=confidence)
    analysis = analyze(from_frames(b.frames(older=older)), bootstrap=20)
    check_counts(analysis)
    assert [s.key for s in analysis.sections] == SECTIONS
    for key in HEADLINE_KEYS:
        item = analysis.find(key)
        assert isinstance(item, Figure | NotAvailable), key
        if isinstance(item, Figure) and item.value is None:
            assert item.note, key  # a value left out says why
