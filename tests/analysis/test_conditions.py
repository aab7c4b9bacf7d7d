"""Conditions compared in the report, on export folders with a planted condition effect (tests/analysis/builder.py
``planted_study``): the effect found with its sign and a CI covering it, no effect claimed where none was planted,
the fallback where a model cannot be fitted, and the n's every comparison rests on per condition.

The studies are seeded (seed 2): a 95% CI covers the planted value in 95% of seeds, and this seed is one of them
for every planted term (and one where nothing is claimed in the study without an effect).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from statsmodels.regression.mixed_linear_model import MixedLM
from statsmodels.tools.sm_exceptions import ConvergenceWarning

from studyapp.analysis import conditions as cond
from studyapp.analysis.load import load_export
from studyapp.analysis.measures import analyze
from studyapp.analysis.model import Analysis, Figure, Table
from studyapp.analysis.report import write_report
from tests.analysis.builder import REFERENCE, TREATED, StudyBuilder, planted_study, write
from tests.analysis.test_measures import check_counts

SEED = 2
EFFECT, INTERACTION = 0.3, 0.1  # on the chance of yes; ratings (2 + two coin flips) move twice as much
BOOTSTRAP = 20  # the stage 3 bootstrap is not what these tests look at


def run(b: StudyBuilder, folder: Path, fmt: str = "csv") -> Analysis:
    analysis = analyze(load_export(write(folder, b.frames(), fmt)), bootstrap=BOOTSTRAP)
    check_counts(analysis)
    return analysis


def effects(analysis: Analysis) -> pd.DataFrame:
    table = analysis.find("condition_effects")
    assert isinstance(table, Table)
    return table.frame


def term(analysis: Analysis, measure_start: str, which: str) -> pd.Series:
    frame = effects(analysis)
    rows = frame[frame["measure"].str.startswith(measure_start) & (frame["term"] == which)]
    assert len(rows) == 1, (measure_start, which, frame[["measure", "term"]])
    return rows.iloc[0]


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Analysis:
    return run(planted_study(seed=SEED), tmp_path_factory.mktemp("planted"), "parquet")


@pytest.fixture(scope="module")
def no_effect(tmp_path_factory: pytest.TempPathFactory) -> Analysis:
    return run(planted_study(seed=SEED, effect=0.0, interaction=0.0), tmp_path_factory.mktemp("none"), "jsonl")


@pytest.mark.parametrize(("measure", "scale"), [("Question understood", 1), ("Mean rating", 2)])
def test_the_planted_effect_and_interaction_are_found(planted: Analysis, measure: str, scale: int) -> None:
    for which, planted_value in (("condition", EFFECT * scale), ("condition x week", INTERACTION * scale)):
        row = term(planted, measure, which)
        assert row["comparison"] == f"{TREATED} vs {REFERENCE}"
        assert row["method"] == cond.MIXED
        assert row["estimate"] > 0, which
        assert row["ci_low"] <= planted_value <= row["ci_high"], (which, row["ci_low"], row["ci_high"])
        assert row["p_value"] < cond.ALPHA and row["at_alpha_0.05"] == "differs", which


def test_each_comparison_says_what_it_rests_on_per_condition(planted: Analysis) -> None:
    row = term(planted, "Question understood", "condition")
    # 12 participants x 4 weeks per condition; five answered yes/no questions a week each.
    assert row["participants"] == f"{REFERENCE} 12, {TREATED} 12"
    assert row["observations"] == f"{REFERENCE} 48, {TREATED} 48"
    assert row["items"] == f"{REFERENCE} 240, {TREATED} 240"
    figure = planted.find(f"condition_effect:question:understood:1:{TREATED}")
    assert isinstance(figure, Figure)
    assert figure.n_participants == 24 and figure.n_items == 480
    assert f"{REFERENCE}: 12 participants, 48 participant-weeks, 240 answers" in figure.note
    assert "at study week 2.5" in figure.note and "Condition x week" in figure.note
    assert figure.ci is not None and figure.ci[0] <= EFFECT <= figure.ci[1]
    means = planted.find("condition_means")
    assert isinstance(means, Table)
    mine = means.frame[means.frame["measure"].str.startswith("Question understood")]
    assert list(mine["condition"]) == [REFERENCE, TREATED] and list(mine["participants"]) == [12, 12]
    counts = planted.find("conditions")
    assert isinstance(counts, Table)
    assert counts.frame.set_index("condition")["participants"].to_dict() == {REFERENCE: 12, TREATED: 12}


def test_every_stage_measure_is_compared(planted: Analysis) -> None:
    compared = set(effects(planted)["measure"].str.split(" \\(").str[0])
    assert {"Acceptance", "Selection agreement", "Precision", "Recall", "Mean rating",
            "Personalized not better"} <= compared
    # The likert question without a planted difference is compared too; the text question never is.
    assert any(m.startswith("Question heard") for m in effects(planted)["measure"])
    assert not any("anything_else" in m for m in effects(planted)["measure"])


def test_no_effect_is_claimed_where_none_was_planted(no_effect: Analysis) -> None:
    for measure in ("Question understood", "Mean rating", "Personalized not better"):
        for which in ("condition", "condition x week"):
            row = term(no_effect, measure, which)
            assert row["p_value"] >= cond.ALPHA, (measure, which)
            assert row["at_alpha_0.05"] == "no difference shown"
            assert row["ci_low"] <= 0 <= row["ci_high"]


def test_too_few_participants_fall_back_to_participant_means_with_a_note(tmp_path: Path) -> None:
    analysis = run(planted_study(seed=SEED, per_condition=2), tmp_path)
    row = term(analysis, "Question understood", "condition")
    assert row["method"] == cond.MEANS
    assert row["participants"] == f"{REFERENCE} 2, {TREATED} 2"
    assert "too few participants" in row["note"].lower()
    figure = analysis.find(f"condition_effect:question:understood:1:{TREATED}")
    assert isinstance(figure, Figure)
    assert "Too few participants for a mixed model" in figure.note
    assert "participant means" in figure.note and "Welch" in figure.note
    assert figure.value is not None  # the difference of the participant means is still given
    assert not (effects(analysis)["term"] == "condition x week").any()  # no interaction without a model
    files = write_report(analysis, tmp_path / "out" / "report.md", "md")
    assert "Too few participants for a mixed model" in files.report.read_text(encoding="utf-8")


def test_a_question_asked_once_per_participant_is_compared_by_participant_means(planted: Analysis) -> None:
    row = term(planted, "Question liked (version 1): share choosing 'memory'", "condition")
    assert row["method"] == cond.MEANS
    assert "one study week only" in row["note"]


def test_a_fit_that_does_not_converge_falls_back_with_the_reason(monkeypatch: pytest.MonkeyPatch,
                                                                   tmp_path: Path) -> None:
    real_fit = MixedLM.fit

    def warns(self: MixedLM, *args: object, **kwargs: object) -> object:
        fit = real_fit(self, *args, **kwargs)
        warnings.warn("Maximum Likelihood optimization failed to converge.", ConvergenceWarning, stacklevel=1)
        return fit

    monkeypatch.setattr(MixedLM, "fit", warns)
    analysis = run(planted_study(seed=SEED, per_condition=4, weeks=2), tmp_path)
    row = term(analysis, "Question understood", "condition")
    assert row["method"] == cond.MEANS
    figure = analysis.find(f"condition_effect:question:understood:1:{TREATED}")
    assert isinstance(figure, Figure)
    assert "could not be fitted: no optimizer converged (Maximum Likelihood optimization failed" in figure.note


def test_a_fit_that_raises_falls_back_without_a_traceback(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def singular(self: MixedLM, *args: object, **kwargs: object) -> object:
        raise np.linalg.LinAlgError("Singular matrix")

    monkeypatch.setattr(MixedLM, "fit", singular)
    analysis = run(planted_study(seed=SEED, per_condition=4, weeks=2), tmp_path)
    frame = effects(analysis)
    assert set(frame["method"]) == {cond.MEANS}
    for measure in ("Question understood", "Mean rating", "Acceptance"):
        assert "no optimizer converged (Singular matrix)" in term(analysis, measure, "condition")["note"]


def test_participants_without_a_condition_are_left_out_and_counted(tmp_path: Path) -> None:
    b = planted_study(seed=SEED, per_condition=3, weeks=2)
    b.participant("before-conditions")  # enrolled before the study had conditions: an empty condition
    b.answer("before-conditions", "understood", day=1, question_type="yes_no", number=1)
    analysis = run(b, tmp_path)
    counts = analysis.find("conditions")
    assert isinstance(counts, Table)
    assert "1 participant without a condition" in counts.note
    assert term(analysis, "Question understood", "condition")["participants"] == f"{REFERENCE} 3, {TREATED} 3"
    by_participant = analysis.find("participation_by_participant")
    assert isinstance(by_participant, Table)
    assert by_participant.frame.set_index("participant_id")["condition"].isna().sum() == 1


def test_one_condition_is_said_and_not_compared(tmp_path: Path) -> None:
    b = planted_study(seed=SEED, per_condition=3, weeks=2, conditions=("only",))
    analysis = run(b, tmp_path)
    assert analysis.find("condition_effects") is None
    assert any("Every participant with a condition is in only" in n for n in analysis.notes)


def test_three_conditions_are_each_compared_with_the_first(tmp_path: Path) -> None:
    b = planted_study(seed=SEED, per_condition=4, weeks=2, conditions=("a", "b", "c"))
    frame = effects(run(b, tmp_path))
    rated = frame[frame["measure"].str.startswith("Mean rating")]
    assert sorted(set(rated["comparison"])) == ["b vs a", "c vs a"]


def test_the_report_command_compares_conditions(tmp_path: Path) -> None:
    from studyapp.server.cli import cli

    folder = write(tmp_path / "export", planted_study(seed=SEED, per_condition=4, weeks=2).frames(), "csv")
    out = tmp_path / "report.md"
    result = CliRunner().invoke(cli, ["report", str(folder), "--out", str(out), "--format", "md"])
    assert result.exit_code == 0, result.output
    text = out.read_text(encoding="utf-8")
    assert "## Conditions compared" in text and "## The study's questions" in text
    assert (tmp_path / "report_tables" / "condition_effects.csv").is_file()
    assert (tmp_path / "report_charts" / "condition_by_week_mean_rating.png").is_file()


def test_the_condition_is_read_from_the_records_where_the_participants_file_lacks_it() -> None:
    from studyapp.analysis.load import CONDITION, from_frames

    b = planted_study(seed=SEED, per_condition=3, weeks=1)
    frames = b.frames()
    frames["participants"] = frames["participants"].drop(columns=CONDITION)
    assert from_frames(frames).conditions().to_dict() == b.conditions
