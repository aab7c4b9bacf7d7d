"""The study's questions in the report (``question_answers``): per question the participants, how often it was
answered, skipped or left unanswered, the distribution of answers and the same by study week; text answers are
counted, never shown. Also: older exports without questions or conditions read as before."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from studyapp.analysis.load import CONDITION, load_export
from studyapp.analysis.measures import analyze
from studyapp.analysis.model import Analysis, Table
from studyapp.analysis.report import write_report
from studyapp.server.export import FORMATS
from tests.analysis.builder import StudyBuilder, write
from tests.analysis.test_measures import check_counts

SECTIONS_BEFORE = ["participation", "stage1", "stage2", "stage3", "judges", "paper"]


def asked_study() -> StudyBuilder:
    """Three participants, no conditions, two weeks of questions (counts chosen so each total is distinct)."""
    b = StudyBuilder()
    for pid in ("p1", "p2", "p3"):
        b.participant(pid)
        b.comparison(pid, day=1, rating=4)
    # likert "heard": p1 answers 5 and 4 (weeks 1, 2), p2 answers 2 in week 1 and skips in week 2, p3 unanswered.
    b.answer("p1", "heard", day=1, number=5)
    b.answer("p1", "heard", day=8, number=4)
    b.answer("p2", "heard", day=2, number=2)
    b.answer("p2", "heard", day=9, status="skipped")
    b.answer("p3", "heard", day=3, status="unanswered")
    # yes_no "understood": yes, yes, no (week 1).
    for pid, number in (("p1", 1), ("p2", 1), ("p3", 0)):
        b.answer(pid, "understood", day=4, question_type="yes_no", number=number, when="after_comparison")
    # choice "liked": two "memory", one "answers"; and a new version of it with one answer.
    for pid, option in (("p1", "memory"), ("p2", "memory"), ("p3", "answers")):
        b.answer(pid, "liked", day=10, question_type="choice", option=option, when="at_end")
    b.answer("p1", "liked", day=11, question_type="choice", option="answers", when="at_end", version="2")
    b.answer("p1", "free", day=5, question_type="text", text="my dog <PERSON_1> likes it", when="weekly")
    b.answer("p2", "free", day=5, question_type="text", status="skipped", when="weekly")
    return b


def run(b: StudyBuilder, folder: Path, fmt: str = "csv", *, older: bool = False) -> Analysis:
    analysis = analyze(load_export(write(folder, b.frames(older=older), fmt)), bootstrap=20)
    check_counts(analysis)
    return analysis


def table(analysis: Analysis, key: str) -> pd.DataFrame:
    item = analysis.find(key)
    assert isinstance(item, Table), key
    return item.frame


@pytest.fixture(scope="module")
def asked(tmp_path_factory: pytest.TempPathFactory) -> Analysis:
    return run(asked_study(), tmp_path_factory.mktemp("asked"))


def test_each_question_is_summarized(asked: Analysis) -> None:
    frame = table(asked, "questions").set_index(["question_id", "question_version"])
    heard = frame.loc[("heard", "1")]
    assert (heard["question_type"], heard["participants"], heard["asked"]) == ("likert", 3, 5)
    assert (heard["answered"], heard["skipped"], heard["unanswered"]) == (3, 1, 1)
    assert heard["mean_answer"] == pytest.approx((5 + 4 + 2) / 3)
    assert frame.loc[("understood", "1"), "mean_answer"] == pytest.approx(2 / 3)  # the share yes
    assert frame.loc[("liked", "2"), "answered"] == 1  # a new version is its own question
    free = frame.loc[("free", "1")]
    assert (free["answered"], free["skipped"]) == (1, 1) and pd.isna(free["mean_answer"])


def test_the_distribution_of_answers_and_choice_shares(asked: Analysis) -> None:
    frame = table(asked, "question_distribution").set_index(["question_id", "question_version", "answer"])
    assert frame.loc[("liked", "1", "memory"), "answers"] == 2
    assert frame.loc[("liked", "1", "memory"), "share"] == pytest.approx(2 / 3)
    assert frame.loc[("understood", "1", "yes"), "share"] == pytest.approx(2 / 3)
    assert frame.loc[("heard", "1", "5"), "answers"] == 1
    assert "free" not in frame.index.get_level_values("question_id")  # text: counts only


def test_questions_by_study_week(asked: Analysis) -> None:
    frame = table(asked, "questions_by_week").set_index(["question_id", "week"])
    assert (frame.loc[("heard", 1), "answered"], frame.loc[("heard", 1), "unanswered"]) == (2, 1)
    assert (frame.loc[("heard", 2), "answered"], frame.loc[("heard", 2), "skipped"]) == (1, 1)
    assert frame.loc[("heard", 2), "mean_answer"] == pytest.approx(4.0)


def test_without_conditions_there_is_no_comparison(asked: Analysis) -> None:
    assert [s.key for s in asked.sections] == [*SECTIONS_BEFORE[:-1], "questions", "paper"]
    assert asked.find("questions_by_condition") is None


def test_text_answers_never_reach_the_report(asked: Analysis, tmp_path: Path) -> None:
    for fmt in ("md", "html"):
        files = write_report(asked, tmp_path / f"report.{fmt}", fmt)
        for path in files.paths:
            if path.suffix != ".png":
                assert "likes it" not in path.read_text(encoding="utf-8"), path


@pytest.mark.parametrize("fmt", FORMATS)
def test_condition_and_question_answers_are_read_typed_in_every_format(tmp_path: Path, fmt: str) -> None:
    b = asked_study()
    b.conditions.update({"p1": "a", "p2": "b"})  # p3 enrolled before the study had conditions
    export = load_export(write(tmp_path, b.frames(), fmt))
    assert export.conditions().to_dict() == {"p1": "a", "p2": "b"}
    for name, frame in export.frames.items():
        if frame.empty:
            continue  # a JSONL file with no rows names no columns: the contract's are used
        assert list(frame.columns[:3]) == ["study_id", "participant_id", CONDITION], name
        assert isinstance(frame[CONDITION].dtype, pd.StringDtype), name
    answers = export["question_answers"]
    assert isinstance(answers["answer_number"].dtype, pd.Int64Dtype)
    assert isinstance(answers["study_day"].dtype, pd.Int64Dtype)
    assert answers["ask_probability"].dtype == "float64"
    assert sorted(answers["answer_number"].dropna().tolist()) == [0, 1, 1, 2, 4, 5]


@pytest.mark.parametrize("older", [False, True])
def test_an_export_without_conditions_or_questions_reads_as_before(tmp_path: Path, older: bool) -> None:
    b = StudyBuilder()
    for pid in ("p1", "p2"):
        b.participant(pid)
        for day in (1, 9):
            b.comparison(pid, day=day, rating=4 if pid == "p1" else 2)
    export = load_export(write(tmp_path, b.frames(older=older), "csv"))
    # A current export has the file (the exporter writes every record type), with no rows.
    assert ("question_answers" not in export if older else export["question_answers"].empty)
    assert export.conditions().empty
    assert all(CONDITION not in frame.columns for frame in export.frames.values())
    analysis = analyze(export, bootstrap=20)
    assert [s.key for s in analysis.sections] == SECTIONS_BEFORE
    assert "condition" not in table(analysis, "participation_by_participant").columns
