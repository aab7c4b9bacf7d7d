"""The study's measures on exports with known answers, in every format.

Each test writes the rows it means (tests/analysis/builder.py), runs ``analyze`` on the folder, and checks the
numbers against values it computes itself from the same lists: plain Python, or scipy called directly.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import timedelta
from pathlib import Path

import pytest
from scipy.stats import linregress, spearmanr

from studyapp.analysis.load import load_export
from studyapp.analysis.measures import HEADLINE_KEYS, analyze
from studyapp.analysis.model import Analysis, Chart, Figure, NotAvailable, Table
from studyapp.server.export import FORMATS
from tests.analysis.builder import START, StudyBuilder, write

BOOTSTRAP = 400  # enough for the interval's shape, quick in tests


def run(b: StudyBuilder, tmp_path: Path, fmt: str = "csv", *, older: bool = False, seed: int = 0) -> Analysis:
    analysis = analyze(load_export(write(tmp_path / fmt, b.frames(older=older), fmt)), seed=seed,
                       bootstrap=BOOTSTRAP)
    check_counts(analysis)
    return analysis


def check_counts(analysis: Analysis) -> None:
    """Every figure, table and chart says what it rests on; keys are unique."""
    keys = [item.key for section in analysis.sections for item in section.items]
    assert len(keys) == len(set(keys))
    for section in analysis.sections:
        for item in section.items:
            if isinstance(item, Figure | Table | Chart):
                assert isinstance(item.n_items, int) and item.n_items >= 0, item.key
                assert isinstance(item.n_participants, int) and item.n_participants >= 0, item.key
            if isinstance(item, Figure) and item.value is not None:
                assert isinstance(item.value, float), item.key


def figure(analysis: Analysis, key: str) -> Figure:
    item = analysis.find(key)
    assert isinstance(item, Figure), (key, item)
    return item


def table(analysis: Analysis, key: str) -> Table:
    item = analysis.find(key)
    assert isinstance(item, Table), (key, item)
    return item


def value(analysis: Analysis, key: str) -> float | None:
    return figure(analysis, key).value


def not_available(analysis: Analysis) -> dict[str, str]:
    return {item.key: item.needs for s in analysis.sections for item in s.items if isinstance(item, NotAvailable)}


def mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def plain_kappa(pairs: list[tuple[bool, bool]]) -> float:
    n = len(pairs)
    observed = sum(a == b for a, b in pairs) / n
    a_yes, b_yes = sum(a for a, _ in pairs) / n, sum(b for _, b in pairs) / n
    expected = a_yes * b_yes + (1 - a_yes) * (1 - b_yes)
    return (observed - expected) / (1 - expected)


def weighted_kappa(triples: list[tuple[bool, bool, float]]) -> float:
    """Cohen's kappa with each pair counted with its weight (the weighted 2x2 table)."""
    n = sum(w for _, _, w in triples)
    observed = sum(w for a, b, w in triples if a == b) / n
    a_yes, b_yes = sum(w for a, _, w in triples if a) / n, sum(w for _, b, w in triples if b) / n
    expected = a_yes * b_yes + (1 - a_yes) * (1 - b_yes)
    return (observed - expected) / (1 - expected)


def quadratic_kappa(pairs: list[tuple[int, int]]) -> float:
    """Quadratic-weighted kappa on the 1..5 scale: 1 - sum(w * observed) / sum(w * expected), w = (i - j)^2."""
    n = len(pairs)
    rows, cols = Counter(a for a, _ in pairs), Counter(b for _, b in pairs)
    observed = Counter(pairs)
    scale = range(1, 6)
    disagreement = sum((i - j) ** 2 * observed[(i, j)] / n for i in scale for j in scale)
    chance = sum((i - j) ** 2 * rows[i] * cols[j] / n / n for i in scale for j in scale)
    return 1 - disagreement / chance


# -- stage 3 over weeks: the mixed model ------------------------------------------------------------------------


# Six participants: the personalized answer preferred in week 1 (days 1-4), the generic one in week 3 (days 15-18).
WEEK_1 = [[5, 5, 4, 5], [4, 4, 5, 4], [5, 4, 4, 4], [4, 5, 5, 5], [4, 3, 4, 5], [5, 5, 5, 4]]
WEEK_3 = [[2, 1, 2, 2], [1, 2, 1, 1], [2, 2, 1, 3], [3, 2, 2, 1], [1, 1, 2, 2], [2, 3, 2, 2]]


def fading_study() -> tuple[StudyBuilder, list[tuple[str, int, int, str]]]:
    b, rows = StudyBuilder(), []
    for p, (early, late) in enumerate(zip(WEEK_1, WEEK_3, strict=True)):
        pid = b.participant(f"p{p}")
        for i, (r1, r3) in enumerate(zip(early, late, strict=True)):
            for day, rating in ((1 + i, r1), (15 + i, r3)):
                side = "left" if (p + i + day) % 2 else "right"
                b.comparison(pid, day=day, rating=rating, side=side)
                rows.append((pid, (day - 1) // 7 + 1, rating, side))
    return b, rows


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_preference_that_fades_over_weeks_has_a_negative_week_slope(tmp_path: Path, fmt: str) -> None:
    b, rows = fading_study()
    analysis = run(b, tmp_path, fmt)
    ratings = [r for _, _, r, _ in rows]
    assert value(analysis, "mean_rating") == pytest.approx(mean(ratings))
    assert value(analysis, "no_better") == pytest.approx(sum(r <= 3 for r in ratings) / len(ratings))
    low, high = figure(analysis, "mean_rating").ci
    assert low < mean(ratings) < high

    slope = figure(analysis, "week_slope")
    assert slope.value is not None and slope.value < 0
    assert slope.ci is not None and slope.ci[0] < slope.value < slope.ci[1] < 0  # the interval excludes 0
    # Every participant rated as often in each week, so the mixed model's week coefficient is the OLS slope.
    ols = linregress([w for _, w, _, _ in rows], ratings)
    assert slope.value == pytest.approx(ols.slope, abs=1e-4)
    assert slope.n_items == len(rows) and slope.n_participants == 6

    by_week = table(analysis, "ratings_by_week").frame.set_index("week")
    for week in (1, 3):
        mine = [r for _, w, r, _ in rows if w == week]
        assert by_week.loc[week, "ratings"] == len(mine)
        assert by_week.loc[week, "mean_rating"] == pytest.approx(mean(mine))
        assert by_week.loc[week, "no_better"] == pytest.approx(sum(r <= 3 for r in mine) / len(mine))

    left = [r for *_, r, s in rows if s == "left"]
    right = [r for *_, r, s in rows if s == "right"]
    assert value(analysis, "position_bias") == pytest.approx(mean(left) - mean(right))
    distribution = analysis.find("rating_distribution")
    assert isinstance(distribution, Chart)
    counts = Counter(ratings)
    assert distribution.frame["count"].tolist() == [counts[r] for r in range(1, 6)]


def test_the_bootstrap_interval_follows_the_seed(tmp_path: Path) -> None:
    b, _ = fading_study()
    first, again = run(b, tmp_path / "a", seed=7), run(b, tmp_path / "b", seed=7)
    assert figure(first, "mean_rating").ci == figure(again, "mean_rating").ci
    assert "participant-clustered bootstrap" in figure(first, "mean_rating").note


# -- judges ----------------------------------------------------------------------------------------------------


def judged_study() -> tuple[StudyBuilder, dict[str, list[tuple[str, str, int, str, int | None]]]]:
    """Three participants; a judge that always says 5, and a fair one that docks a point when shown first."""
    b = StudyBuilder()
    verdicts: dict[str, list[tuple[str, str, int, str, int | None]]] = defaultdict(list)
    ratings = {"p0": [5, 4, 2, 3], "p1": [1, 3, 4, 2], "p2": [2, 5, 3, 4]}
    for pid, mine in ratings.items():
        b.participant(pid)
        for day, rating in enumerate(mine, start=1):
            cid = b.comparison(pid, day=day, rating=rating)
            for side in ("left", "right"):
                b.verdict(pid, cid, "always-five", side, 5)
                verdicts["always-five"].append((pid, cid, rating, side, 5))
                fair = max(1, rating - 1) if side == "left" else rating
                if (pid, day, side) == ("p1", 2, "left"):  # one verdict the app could not read
                    b.verdict(pid, cid, "fair", side, None, status="unreadable")
                    continue
                b.verdict(pid, cid, "fair", side, fair)
                verdicts["fair"].append((pid, cid, rating, side, fair))
    b.comparison("p0", day=5)  # a skipped comparison: not judged, not paired
    return b, verdicts


@pytest.mark.parametrize("fmt", FORMATS)
def test_judges_against_participants(tmp_path: Path, fmt: str) -> None:
    b, verdicts = judged_study()
    analysis = run(b, tmp_path, fmt)

    five = verdicts["always-five"]
    assert value(analysis, "judge_mean:always-five") == 5.0
    spearman = figure(analysis, "judge_spearman:always-five")
    assert spearman.value is None and "same rating" in spearman.note
    assert value(analysis, "judge_kappa:always-five") == pytest.approx(
        quadratic_kappa([(r, j) for _, _, r, _, j in five]))
    assert value(analysis, "judge_kappa:always-five") == pytest.approx(0.0)
    assert value(analysis, "judge_order_effect:always-five") == 0.0

    fair = verdicts["fair"]
    assert value(analysis, "judge_mean:fair") == pytest.approx(mean([j for *_, j in fair]))
    per_comparison: dict[str, list[int]] = defaultdict(list)
    participant: dict[str, int] = {}
    for _, cid, rating, _, j in fair:
        per_comparison[cid].append(j)
        participant[cid] = rating
    cids = sorted(per_comparison)
    expected = spearmanr([participant[c] for c in cids], [mean(per_comparison[c]) for c in cids]).statistic
    assert value(analysis, "judge_spearman:fair") == pytest.approx(expected)
    assert value(analysis, "judge_kappa:fair") == pytest.approx(quadratic_kappa([(r, j) for _, _, r, _, j in fair]))
    left = [j for _, _, _, s, j in fair if s == "left"]
    right = [j for _, _, _, s, j in fair if s == "right"]
    assert value(analysis, "judge_order_effect:fair") == pytest.approx(mean(left) - mean(right))

    judges = table(analysis, "judges").frame.set_index("judge_model")
    assert judges.loc["fair", "unreadable"] == 1 and judges.loc["fair", "readable"] == len(fair)
    assert judges.loc["always-five", "unreadable"] == 0
    assert judges.loc["fair", "comparisons"] == 12
    paper = table(analysis, "paper_vs_study").frame
    assert set(paper["measure"]) >= {"Judges: mean rating (fair)", "Judges: Spearman with human ratings (fair)"}


# -- stage 2 ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_model_that_selects_everything(tmp_path: Path, fmt: str) -> None:
    b = StudyBuilder()
    statuses = {"p0": ["yes", "no", "no", "not_sure"], "p1": ["yes", "yes", "no", "not_asked"],
                "p2": ["no", "no", "no", "yes"]}
    for pid, answers in statuses.items():
        b.participant(pid)
        cid = b.comparison(pid, day=1, rating=3, memory=4, selected=4)
        for status in answers:
            b.relevance(pid, cid, selected=True, status=status)
    analysis = run(b, tmp_path, fmt)
    answered = [s for answers in statuses.values() for s in answers if s in ("yes", "no")]
    share_yes = answered.count("yes") / len(answered)
    assert value(analysis, "selection_rate") == 1.0
    assert value(analysis, "relevance_rate") == pytest.approx(share_yes)
    assert value(analysis, "precision") == pytest.approx(share_yes)
    assert value(analysis, "recall") == 1.0
    assert value(analysis, "f1") == pytest.approx(2 * share_yes / (share_yes + 1))
    assert value(analysis, "kappa") == pytest.approx(plain_kappa([(True, s == "yes") for s in answered]))
    assert value(analysis, "over_selection") == pytest.approx(1 / share_yes)
    assert figure(analysis, "kappa").n_items == len(answered)


@pytest.mark.parametrize("fmt", FORMATS)
def test_recall_weights_the_sampled_unselected_attributes(tmp_path: Path, fmt: str) -> None:
    b = StudyBuilder()
    # (selected, status, ask probability): selected attributes are always asked, a quarter of the others.
    asked = {"p0": [(True, "yes", 1.0), (True, "no", 1.0), (False, "yes", 0.25), (False, "no", 0.25)],
             "p1": [(True, "yes", 1.0), (True, "yes", 1.0), (False, "no", 0.5), (False, "not_sure", 0.5)],
             "p2": [(True, "no", 1.0), (False, "yes", 0.25), (False, "yes", 0.5), (True, "not_asked", 1.0)]}
    for day, (pid, rows) in enumerate(asked.items(), start=1):
        b.participant(pid)
        cid = b.comparison(pid, day=day * 8, rating=4, memory=5, selected=2)
        for selected, status, probability in rows:
            b.relevance(pid, cid, selected=selected, status=status, probability=probability)
    analysis = run(b, tmp_path, fmt)
    answered = [(s, st == "yes", p) for rows in asked.values() for s, st, p in rows if st in ("yes", "no")]
    hits = sum(1 / p for s, h, p in answered if s and h)
    assert value(analysis, "recall") == pytest.approx(hits / sum(1 / p for _, h, p in answered if h))
    assert value(analysis, "precision") == pytest.approx(hits / sum(1 / p for s, _, p in answered if s))
    # The share relevant and kappa weight the answers the same way: unweighted they lean towards selected ones.
    assert value(analysis, "relevance_rate") == pytest.approx(
        sum(1 / p for _, h, p in answered if h) / sum(1 / p for _, _, p in answered))
    assert value(analysis, "kappa") == pytest.approx(weighted_kappa([(s, h, 1 / p) for s, h, p in answered]))
    assert value(analysis, "kappa") != pytest.approx(plain_kappa([(s, h) for s, h, _ in answered]))
    assert value(analysis, "selection_rate") == pytest.approx(2 / 5)
    assert "1/ask_probability" in figure(analysis, "recall").note
    by_week = table(analysis, "stage2_by_week").frame.set_index("week")
    # p0 on day 8 (week 2), p1 on day 16 (week 3), p2 on day 24 (week 4)
    assert sorted(by_week.index) == [2, 3, 4]
    p1 = [(st == "yes", p) for _, st, p in asked["p1"] if st in ("yes", "no")]
    assert by_week.loc[3, "relevance_rate"] == pytest.approx(sum(1 / p for h, p in p1 if h) / sum(1 / p for _, p in p1))
    by_person = table(analysis, "stage2_by_participant").frame.set_index("participant_id")
    assert by_person.loc["p0", "answers"] == 4


# -- odd but valid studies -------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_no_comparisons_labels_or_verdicts_at_all(tmp_path: Path, fmt: str) -> None:
    b = StudyBuilder()
    b.participant("p0")
    b.message("p0", day=1)
    analysis = run(b, tmp_path, fmt)
    assert not_available(analysis) == {}  # the files are there, only empty
    for key in ("acceptance", "selection_rate", "relevance_rate", "over_selection", "kappa", "precision", "recall",
                "mean_rating", "no_better", "position_bias", "week_slope"):
        assert value(analysis, key) is None, key
    assert figure(analysis, "mean_rating").note == "No rated comparisons."
    assert value(analysis, "participants") == 1.0
    assert value(analysis, "comparisons_offered") == 0.0
    assert table(analysis, "judges").frame.empty
    assert "No judge verdicts" in table(analysis, "judges").note
    for key in HEADLINE_KEYS:
        assert analysis.find(key) is not None, key


def test_one_participant(tmp_path: Path) -> None:
    b = StudyBuilder()
    b.participant("solo")
    ratings = {1: 5, 2: 4, 9: 2, 10: 3, 16: 1}
    for day, rating in ratings.items():
        cid = b.comparison("solo", day=day, rating=rating)
        b.relevance("solo", cid, selected=day % 2 == 0, status="yes" if rating > 3 else "no")
    analysis = run(b, tmp_path)
    rating = figure(analysis, "mean_rating")
    assert rating.value == pytest.approx(mean(list(ratings.values())))
    assert rating.ci is None and "fewer than two participants" in rating.note
    slope = figure(analysis, "week_slope")
    assert slope.value is None and "One participant" in slope.note
    assert value(analysis, "relevance_rate") == pytest.approx(2 / 5)


def test_all_ties(tmp_path: Path) -> None:
    b = StudyBuilder()
    for p in range(3):
        pid = b.participant(f"p{p}")
        for day in (1, 2, 9, 10):
            cid = b.comparison(pid, day=day, rating=3)
            b.verdict(pid, cid, "judge", "left", 2 + day % 3)
    analysis = run(b, tmp_path)
    assert value(analysis, "mean_rating") == 3.0
    assert figure(analysis, "mean_rating").ci == (3.0, 3.0)
    assert value(analysis, "no_better") == 1.0
    slope = figure(analysis, "week_slope")
    assert slope.value is None and "ties" in slope.note
    assert value(analysis, "judge_spearman:judge") is None


def test_a_model_that_selects_everything_and_participants_all_agree_has_no_kappa(tmp_path: Path) -> None:
    b = StudyBuilder()
    b.participant("p0")
    cid = b.comparison("p0", day=1, rating=4)
    for _ in range(3):
        b.relevance("p0", cid, selected=True, status="yes")
    analysis = run(b, tmp_path)
    kappa = figure(analysis, "kappa")
    assert kappa.value is None and "chance agreement" in kappa.note
    assert value(analysis, "precision") == 1.0 and value(analysis, "recall") == 1.0


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_withdrawn_participant_is_left_out(tmp_path: Path, fmt: str) -> None:
    b = StudyBuilder()
    for pid, rating in (("p0", 4), ("p1", 2)):
        b.participant(pid)
        b.comparison(pid, day=1, rating=rating)
    b.participant("gone", withdrawn=True)
    b.comparison("gone", day=1, rating=5)
    analysis = run(b, tmp_path, fmt)
    assert value(analysis, "participants") == 2.0
    assert value(analysis, "mean_rating") == 3.0
    assert figure(analysis, "mean_rating").n_participants == 2
    assert any("1 withdrawn participant excluded" in note for note in analysis.notes)
    assert "gone" not in set(table(analysis, "participation_by_participant").frame["participant_id"])


# -- older exports -----------------------------------------------------------------------------------------------


def mixed_study() -> StudyBuilder:
    b = StudyBuilder()
    for p, mine in enumerate(([4, 5, 2], [3, 1, 4], [2, 3, 5])):
        pid = b.participant(f"p{p}")
        for day, rating in zip((1, 8, 15), mine, strict=True):
            cid = b.comparison(pid, day=day, rating=rating, side="left" if day % 2 else "right")
            b.relevance(pid, cid, selected=True, status="yes" if rating >= 4 else "no")
            b.relevance(pid, cid, selected=False, status=("not_sure", "no", "yes")[p], probability=0.5)
            b.verdict(pid, cid, "judge", "left", rating)
            b.verdict(pid, cid, "judge", "right", min(5, rating + 1))
        b.comparison(pid, day=2, state="abandoned")
        b.label(pid, "makes_sense", day=1, age_s=100.0, confidence=0.9)
        b.label(pid, "maybe", day=2, age_s=90_000.0, confidence=0.6)
    return b


@pytest.mark.parametrize("fmt", FORMATS)
def test_an_export_before_contract_2_computes_what_it_can(tmp_path: Path, fmt: str) -> None:
    b = mixed_study()
    current, older = run(b, tmp_path / "current", fmt), run(b, tmp_path / "older", fmt, older=True)
    assert not_available(current) == {}
    assert not_available(older) == {"comparisons_failed": "comparisons.state"}
    # The older measures still compute, and agree where the data mean the same.
    for key in ("acceptance", "mean_rating", "no_better", "precision", "week_slope",
                "judge_mean:judge", "judge_spearman:judge", "position_bias"):
        assert value(older, key) == pytest.approx(value(current, key)), key
    assert value(older, "comparisons_rated") == 9.0
    assert "human_relevant" in figure(older, "relevance_rate").note
    assert figure(older, "recall").note.startswith("Unweighted")
    for key in ("recall", "relevance_rate"):  # without ask_probability the sample is not reweighted
        assert value(older, key) != pytest.approx(value(current, key)), key
    assert any("no state" in note for note in older.notes)


def test_an_early_export_names_the_columns_it_lacks(tmp_path: Path) -> None:
    frames = mixed_study().frames(older=True)
    frames["comparisons"] = frames["comparisons"].drop(columns=["study_day", "memory_size", "selected_count"])
    frames["attribute_labels"]["age_s"] = None  # the column is there, never filled: apps before it was sent
    frames["attribute_labels"] = frames["attribute_labels"].drop(columns=["confidence"])
    del frames["schedule_decisions"]
    analysis = analyze(load_export(write(tmp_path, frames, "jsonl")), bootstrap=BOOTSTRAP)
    check_counts(analysis)
    assert not_available(analysis) == {
        "comparisons_failed": "comparisons.state",
        "acceptance_by_age": "attribute_labels.age_s",
        "acceptance_by_confidence": "attribute_labels.confidence",
        "selection_rate": "comparisons.memory_size",
        "over_selection": "comparisons.memory_size",
        "stage2_by_week": "comparisons.study_day",
        "week_slope": "comparisons.study_day",
        "ratings_by_week": "comparisons.study_day",
    }
    assert value(analysis, "mean_rating") is not None and value(analysis, "acceptance") is not None


# -- stage 1 and participation -----------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_labels_by_participant_week_age_and_confidence(tmp_path: Path, fmt: str) -> None:
    b = StudyBuilder()
    # participant, attribute, label, study day, age in seconds, confidence (in the order given)
    labels = [("p0", "a1", "maybe", 1, 60.0, 0.95), ("p0", "a1", "makes_sense", 2, 7_200.0, 0.95),
              ("p0", "a2", "doesnt_make_sense", 9, 200_000.0, 0.6), ("p0", "a2", "makes_sense", 16, 900_000.0, 0.6),
              ("p0", "a3", "makes_sense", 3, 30.0, 0.3), ("p1", "b1", "maybe", 1, 10.0, 1.0),
              ("p1", "b2", "makes_sense", 8, 700_000.0, 0.75), ("p1", "b3", "doesnt_make_sense", 10, 5_000.0, 0.5)]
    for pid in ("p0", "p1"):
        b.participant(pid)
    for pid, attribute, label, day, age, confidence in labels:
        b.label(pid, label, day=day, attribute_id=attribute, age_s=age, confidence=confidence)
    analysis = run(b, tmp_path, fmt)

    latest = {(p, a): (label, age, conf) for p, a, label, _, age, conf in labels}  # later rows win
    finals = [label for label, _, _ in latest.values()]
    assert value(analysis, "acceptance") == pytest.approx(finals.count("makes_sense") / len(finals))
    assert figure(analysis, "acceptance").n_items == len(latest)
    overall = table(analysis, "labels_overall").frame.set_index("label")
    assert overall["labels"].to_dict() == {k: finals.count(k) for k in ("makes_sense", "maybe", "doesnt_make_sense")}
    by_person = table(analysis, "labels_by_participant").frame.set_index("participant_id")
    p1 = [label for (p, _), (label, _, _) in latest.items() if p == "p1"]
    assert by_person.loc["p1", "doesnt_make_sense"] == pytest.approx(p1.count("doesnt_make_sense") / len(p1))

    weekly: dict[int, dict[str, str]] = defaultdict(dict)
    for p, a, label, day, _, _ in labels:
        weekly[(day - 1) // 7 + 1][f"{p}/{a}"] = label  # the latest label per attribute within its week
    by_week = table(analysis, "labels_by_week").frame.set_index("week")
    assert sorted(by_week.index) == sorted(weekly)
    for week, chosen in weekly.items():
        values = list(chosen.values())
        assert by_week.loc[week, "labels"] == len(values)
        assert by_week.loc[week, "makes_sense"] == pytest.approx(values.count("makes_sense") / len(values))

    def accepted_where(keep: object) -> float:
        mine = [label for label, age, conf in latest.values() if keep(age, conf)]  # type: ignore[operator]
        return mine.count("makes_sense") / len(mine)

    by_age = table(analysis, "acceptance_by_age").frame.set_index("age")
    assert by_age.loc["under 1 hour", "acceptance"] == pytest.approx(accepted_where(lambda age, _: age < 3600))
    assert by_age.loc["7 days or more", "labels"] == sum(age >= 7 * 86400 for _, age, _ in latest.values())
    by_confidence = table(analysis, "acceptance_by_confidence").frame.set_index("confidence")
    assert by_confidence.loc["0.9-1", "acceptance"] == pytest.approx(accepted_where(lambda _, c: c > 0.9))
    assert by_confidence.loc["0.5-0.7", "labels"] == sum(0.5 < c <= 0.7 for *_, c in latest.values())


@pytest.mark.parametrize("fmt", FORMATS)
def test_participation_and_compliance_by_day(tmp_path: Path, fmt: str) -> None:
    b = StudyBuilder()
    b.participant("p0")
    b.participant("p1", enrolled=START + timedelta(days=1))
    b.message("p0", day=1)
    b.message("p0", day=1, role="assistant")
    b.message("p0", day=3)
    b.comparison("p0", day=3, rating=4)  # the last record of the export: p1 has reached its day 2 by then
    b.message("p1", day=1)
    b.comparison("p1", day=2, state="failed", memory=None, selected=None)
    b.comparison("p1", day=2, state="skipped")
    b.label("p1", "maybe", day=1)
    analysis = run(b, tmp_path, fmt)
    assert value(analysis, "participants") == 2.0
    assert value(analysis, "messages") == 3.0
    assert value(analysis, "comparisons_offered") == 3.0
    assert value(analysis, "comparisons_rated") == 1.0
    assert value(analysis, "comparisons_skipped") == 1.0
    failed = figure(analysis, "comparisons_failed")
    assert failed.value == 1.0 and "failed 1, cancelled 0, abandoned 0" in failed.note
    assert value(analysis, "labels_given") == 1.0
    assert value(analysis, "days_active") == 2.0  # p0 on days 1 and 3, p1 on days 1 and 2

    chart = analysis.find("compliance_by_day")
    assert isinstance(chart, Chart) and chart.x == "study_day" and chart.y == ("share_active",)
    frame = chart.frame.set_index("study_day")
    assert frame["participants"].to_dict() == {1: 2, 2: 2, 3: 1}
    assert frame["share_active"].to_dict() == {1: 1.0, 2: 0.5, 3: 1.0}

    people = table(analysis, "participation_by_participant").frame.set_index("participant_id")
    assert people.loc["p1", "comparisons"] == 2 and people.loc["p1", "ended_early"] == 1
    assert people.loc["p0", "messages"] == 2 and people.loc["p0", "days_active"] == 2


def test_a_mixed_model_that_cannot_be_fitted_is_a_note_not_an_error(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np

    from studyapp.analysis import measures

    def singular(data: object) -> None:
        raise np.linalg.LinAlgError("Singular matrix")

    monkeypatch.setattr(measures, "_fit_mixed", singular)
    b, _ = fading_study()
    slope = figure(run(b, tmp_path), "week_slope")
    assert slope.value is None and slope.ci is None
    assert slope.note == "The mixed model could not be fitted (Singular matrix)."


def test_the_rating_interval_resamples_participants_not_ratings(tmp_path: Path) -> None:
    # Nine ratings of 5 from one participant, one rating of 1 from another. Resampling participants draws
    # {a, a}, {a, b} or {b, b}: pooled means 5, 4.6 and 1, the extremes each a quarter of the time, so the 95%
    # interval is [1, 5]. Resampling single ratings instead would give a narrow interval around 4.6.
    b = StudyBuilder()
    a, c = b.participant("a"), b.participant("b")
    for day in range(1, 10):
        b.comparison(a, day=day, rating=5)
    b.comparison(c, day=1, rating=1)
    rating = figure(run(b, tmp_path), "mean_rating")
    assert rating.value == pytest.approx(4.6)
    assert rating.ci == (1.0, 5.0)
