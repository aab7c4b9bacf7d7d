"""The study's conditions compared on a measure, with the participant as the unit.

A ``Measure`` is a set of items (a rating, a label, an answer) each with its participant, study week, value and
weight; its value over any set of items is their weighted mean (a share where the values are 0/1). Each
participant's items in a study week make one observation (a participant-week), and a linear mixed model
(statsmodels MixedLM, REML, a random intercept per participant) of

    value ~ condition * week

gives each condition's difference from the reference condition at the mean study week, and how that difference
changes per week (condition x week). Where no model can be fitted (too few participants, one observation per
participant, no variation, a singular fit, a fit that warns it did not converge) the comparison says why in plain
words and gives the per-condition participant means instead, with Welch's t-test on them.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.regression.linear_model import OLS
from statsmodels.regression.mixed_linear_model import MixedLM
from statsmodels.tools.sm_exceptions import ConvergenceWarning

from studyapp.analysis.model import Chart, Figure, Table

ALPHA = 0.05
# Fewer participants than this in a condition: its random intercept and the condition's effect rest on too few
# people for the model; the per-condition participant means are given instead.
MIN_PARTICIPANTS = 3
MIXED = "mixed model"
MEANS = "participant means"
# statsmodels' warning when the participants' variance is estimated at 0: the fixed effects still hold (they equal
# ordinary least squares), so it is said, not treated as a failed fit.
BOUNDARY = "boundary of the parameter space"
HESSIAN = "Hessian matrix at the estimated parameter values is not positive definite"


@dataclass(frozen=True)
class Measure:
    key: str
    label: str
    unit: str  # "share" (values 0/1) or "number"
    items: pd.DataFrame  # participant_id, week (Int64, may be empty), value (float), weight (float)
    item_word: str  # what an item is, plural: "ratings", "labels", "answers"
    charted: bool = True  # drawn by study week and condition (not each option of a choice question)


@dataclass(frozen=True)
class Term:
    condition: str
    term: str  # "condition" or "condition x week"
    estimate: float | None
    ci: tuple[float, float] | None
    p_value: float | None


@dataclass
class Comparison:
    measure: Measure
    reference: str
    method: str  # MIXED or MEANS
    by_condition: pd.DataFrame  # condition, participants, observations, items, mean, ci_low, ci_high
    terms: list[Term]
    conditions: pd.Series  # participant_id -> condition
    note: str = ""  # how it was computed, or why the model could not be fitted
    mean_week: float | None = None
    brief: str = ""  # the note in a few words, for the table of effects


def measure_frame(participant_id: pd.Series | np.ndarray, week: pd.Series | np.ndarray,
                  value: pd.Series | np.ndarray, weight: pd.Series | np.ndarray | None = None) -> pd.DataFrame:
    """The items of a ``Measure`` (a weight of 1 for each where none is given)."""
    values = pd.Series(value).to_numpy(dtype="float64", na_value=np.nan)
    weights = np.ones(len(values)) if weight is None else pd.Series(weight).to_numpy(dtype="float64")
    frame = pd.DataFrame({"participant_id": pd.Series(participant_id).astype("string").to_numpy(),
                          "week": pd.array(pd.Series(week).to_numpy(dtype="float64", na_value=np.nan),
                                           dtype="Int64") if len(values) else pd.array([], dtype="Int64"),
                          "value": values, "weight": weights})
    return frame[frame["participant_id"].notna() & ~np.isnan(values) & (weights > 0)].reset_index(drop=True)


def _weighted(items: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """One row per group: its weighted mean value and how many items it rests on."""
    frame = items.assign(_wv=items["value"] * items["weight"])
    grouped = frame.groupby(by, dropna=False)
    out = grouped.agg(_wv=("_wv", "sum"), _w=("weight", "sum"), items=("value", "size")).reset_index()
    out["value"] = out["_wv"] / out["_w"]
    return out.drop(columns=["_wv", "_w"])


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" if n != 1 else f"1 {word.removesuffix('s')}"


def _finite(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def compare(measure: Measure, conditions: pd.Series) -> Comparison:
    """Compare the conditions on ``measure``; ``conditions`` maps participant_id -> condition."""
    names = sorted(conditions.dropna().unique())
    reference = names[0]
    items = measure.items.assign(condition=measure.items["participant_id"].map(conditions).astype("string"))
    items = items[items["condition"].notna()]
    notes: list[str] = []
    known = items["week"].notna()
    if known.any() and not known.all():
        notes.append(f"{_plural(int((~known).sum()), measure.item_word)} without a study week left out.")
        items = items[known]
    cells = _weighted(items, ["participant_id", "condition", "week"])
    people = _weighted(items, ["participant_id", "condition"])
    by_condition = _by_condition(names, cells, people)
    why = _why_no_model(names, cells, by_condition, bool(known.any()))
    if not why:
        fitted = _mixed(measure, reference, names, cells, by_condition, notes, conditions)
        if isinstance(fitted, Comparison):
            return fitted
        why = fitted
    notes.insert(0, why + " Instead: each condition's mean of participant means, and Welch's t-test on them.")
    return Comparison(measure, reference, MEANS, by_condition, _welch(reference, names, people), conditions,
                      " ".join(notes), brief=f"no model: {why[0].lower()}{why[1:]}")


def _by_condition(names: list[str], cells: pd.DataFrame, people: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for name in names:
        mine = people[people["condition"] == name]["value"].to_numpy(dtype=float)
        ci = _t_interval(mine)
        rows.append({"condition": name, "participants": len(mine),
                     "observations": int((cells["condition"] == name).sum()),
                     "items": int(people.loc[people["condition"] == name, "items"].sum()),
                     "mean": float(mine.mean()) if len(mine) else None,
                     "ci_low": ci[0] if ci else None, "ci_high": ci[1] if ci else None})
    frame = pd.DataFrame(rows, columns=["condition", "participants", "observations", "items", "mean", "ci_low",
                                        "ci_high"])
    for column in ("mean", "ci_low", "ci_high"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    return frame


def _t_interval(values: np.ndarray) -> tuple[float, float] | None:
    if len(values) < 2 or np.std(values) == 0:
        return None
    low, high = stats.t.interval(0.95, len(values) - 1, loc=values.mean(), scale=stats.sem(values))
    return (float(low), float(high)) if math.isfinite(low) and math.isfinite(high) else None


def _why_no_model(names: list[str], cells: pd.DataFrame, by_condition: pd.DataFrame, has_weeks: bool) -> str:
    present = by_condition[by_condition["participants"] > 0]
    if len(present) < 2:
        return "Fewer than two conditions have observations: nothing to compare."
    few = by_condition[by_condition["participants"] < MIN_PARTICIPANTS]
    if len(few):
        which = ", ".join(f"{c} {n}" for c, n in zip(few["condition"], few["participants"], strict=True))
        return (f"Too few participants for a mixed model: it needs at least {MIN_PARTICIPANTS} in each condition "
                f"(participants with observations: {which}).")
    if not has_weeks:
        return "No study week for these items, so no repeated observations per participant for a mixed model."
    if cells.groupby("participant_id").size().max() < 2:
        return ("Every participant has observations in one study week only: a random intercept per participant "
                "needs repeated observations.")
    if cells["value"].nunique() < 2:
        return "Every observation has the same value: no variation for a model to explain."
    return ""


def _design(names: list[str], reference: str, cells: pd.DataFrame, with_week: bool,
            ) -> tuple[pd.DataFrame, float, list[tuple[str, str, str]]]:
    """The fixed effects as columns (condition dummies, week centred at its mean, their products), and for each
    reported term (condition, kind, column)."""
    week = cells["week"].to_numpy(dtype=float)
    mean_week = float(week.mean())
    exog = pd.DataFrame({"const": 1.0}, index=cells.index)
    if with_week:
        exog["week"] = week - mean_week
    wanted = []
    for i, name in enumerate(n for n in names if n != reference):
        dummy = (cells["condition"] == name).to_numpy(dtype=float)
        exog[f"c{i}"] = dummy
        wanted.append((name, "condition", f"c{i}"))
        if with_week:
            exog[f"c{i}_week"] = dummy * exog["week"]
            wanted.append((name, "condition x week", f"c{i}_week"))
    return exog, mean_week, wanted


def _mixed(measure: Measure, reference: str, names: list[str], cells: pd.DataFrame, by_condition: pd.DataFrame,
           notes: list[str], conditions: pd.Series) -> Comparison | str:
    """The fitted comparison, or why the model could not be fitted."""
    cells = cells[cells["condition"].isin(by_condition.loc[by_condition["participants"] > 0, "condition"])]
    cells = cells.reset_index(drop=True)
    present = [n for n in names if (cells["condition"] == n).any()]
    with_week = cells["week"].nunique() >= 2
    exog, mean_week, wanted = _design(present, reference, cells, with_week)
    if len(cells) <= exog.shape[1] + 1:
        return (f"Too few observations ({len(cells)} participant-weeks) for a model with {exog.shape[1]} fixed "
                "effects.")
    model = MixedLM(cells["value"].to_numpy(dtype=float), exog, groups=cells["participant_id"].to_numpy())
    fit, caught = _fit(model)
    if fit is None:
        return ("The mixed model could not be fitted: no optimizer converged"
                + (f" ({caught[0].rstrip('.')})." if caught else "."))
    boundary = _at_boundary(fit)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        if boundary:  # no variance between participants: the mixed model is ordinary least squares
            fit = OLS(cells["value"].to_numpy(dtype=float), exog).fit()
            params, bse = fit.params, fit.bse
        else:
            params, bse = fit.fe_params, fit.bse_fe
        interval = fit.conf_int().loc[exog.columns]
        p_values = fit.pvalues.loc[exog.columns]
    terms = []
    for name, kind, column in wanted:
        estimate, se = _finite(params[column]), _finite(bse[column])
        low, high = _finite(interval.loc[column].iloc[0]), _finite(interval.loc[column].iloc[1])
        if estimate is None or se is None or se == 0 or low is None or high is None:
            return "The mixed model's fit is singular: it gives no finite estimate or interval for the effect."
        terms.append(Term(name, kind, estimate, (low, high), _finite(p_values[column])))
    text = [f"statsmodels MixedLM (REML) of value ~ condition{' * week' if with_week else ''} per participant-week, "
            f"random intercept per participant; the difference from {reference}"
            + (f" at study week {mean_week:.1f} (the observations' mean week)." if with_week else ".")]
    if not with_week:
        text.append("All observations fall in one study week: no condition x week interaction to estimate.")
    if boundary:
        text.append("The participants' random intercept variance is estimated at 0 (they differ no more than "
                    "chance beyond their condition), where the mixed model is ordinary least squares: its "
                    "estimates, intervals and p-values are given.")
    brief = [f"condition effect at week {mean_week:.1f}" if with_week else "one study week: no interaction"]
    if boundary:
        brief.append("no variance between participants: ordinary least squares")
    return Comparison(measure, reference, MIXED, by_condition, terms, conditions, " ".join([*text, *notes]),
                      mean_week if with_week else None, "; ".join(brief))


def _fit(model: MixedLM) -> tuple[Any, list[str]]:
    """The first acceptable fit of Powell, Nelder-Mead and L-BFGS; the fit and its warnings, or None and the last
    failure. The derivative-free methods first: on participant-week values statsmodels' gradient methods step onto
    a singular random-effects covariance (L-BFGS raises, BFGS stalls) where Powell finds the optimum, and a failed
    attempt costs as much as a fit."""
    caught: list[str] = []
    for method in ("powell", "nm", "lbfgs"):
        with warnings.catch_warnings(record=True) as seen, np.errstate(all="ignore"):
            warnings.simplefilter("always")
            try:
                fit = model.fit(reml=True, method=[method])
            except (ValueError, ArithmeticError, np.linalg.LinAlgError) as e:
                caught = caught or [str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__]
                continue
        said = [str(w.message).strip() for w in seen if issubclass(w.category, ConvergenceWarning | RuntimeWarning)]
        problems = _serious(said, fit)
        if fit.converged and not problems:
            return fit, said
        caught = caught or problems or ["the optimizer did not converge"]
    return None, caught  # the first method's failure: the one the others were tried after


def _at_boundary(fit: Any) -> bool:
    variance = _finite(fit.cov_re.iloc[0, 0])
    return variance is not None and variance < 1e-6 * max(_finite(fit.scale) or 0.0, 1e-12)


def _serious(caught: list[str], fit: Any) -> list[str]:
    """The warnings that make a fit unusable. At the boundary (the participants' variance estimated at 0) the
    Hessian of the variance is not positive definite, but the fixed effects and their errors are those of
    ordinary least squares and hold."""
    boundary = _at_boundary(fit)
    return [w for w in caught if BOUNDARY not in w and not (boundary and HESSIAN in w)]


def _welch(reference: str, names: list[str], people: pd.DataFrame) -> list[Term]:
    """Each condition's participant means against the reference's (Welch's t-test), where both have two or more
    participants and some spread."""
    base = people.loc[people["condition"] == reference, "value"].to_numpy(dtype=float)
    terms = []
    for name in names:
        if name == reference:
            continue
        mine = people.loc[people["condition"] == name, "value"].to_numpy(dtype=float)
        if len(mine) < 2 or len(base) < 2 or (np.std(mine) == 0 and np.std(base) == 0):
            estimate = float(mine.mean() - base.mean()) if len(mine) and len(base) else None
            terms.append(Term(name, "condition", estimate, None, None))
            continue
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            result = stats.ttest_ind(mine, base, equal_var=False)
            interval = result.confidence_interval(0.95)
        low, high = _finite(interval.low), _finite(interval.high)
        terms.append(Term(name, "condition", float(mine.mean() - base.mean()),
                          (low, high) if low is not None and high is not None else None, _finite(result.pvalue)))
    return terms


# -- as report items ------------------------------------------------------------------------------------------------


def _counts(comparison: Comparison) -> str:
    word = comparison.measure.item_word
    parts = [f"{row.condition}: {_plural(int(row.participants), 'participants')}, "
             f"{_plural(int(row.observations), 'participant-weeks')}, {_plural(int(row.items), word)}"
             for row in comparison.by_condition.itertuples()]
    return "; ".join(parts) + "."


def verdict(term: Term) -> str:
    if term.p_value is None:
        return ""
    return "differs" if term.p_value < ALPHA else "no difference shown"


def _p(p: float | None) -> str:
    if p is None:
        return "no p-value"
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def _term_text(term: Term) -> str:
    ci = f", 95% CI {term.ci[0]:+.3g} to {term.ci[1]:+.3g}" if term.ci else ""
    estimate = "–" if term.estimate is None else f"{term.estimate:+.3g}"
    said = verdict(term)
    return f"{estimate}{ci}, {_p(term.p_value)}" + (f" ({said} at alpha {ALPHA})" if said else "")


def figures(comparison: Comparison) -> list[Figure]:
    """One figure per condition against the reference: its effect, with the interaction and the n's in the note."""
    out = []
    participants = int(comparison.by_condition["participants"].sum())
    items = int(comparison.by_condition["items"].sum())
    for term in comparison.terms:
        if term.term != "condition":
            continue
        interaction = next((t for t in comparison.terms if t.condition == term.condition
                            and t.term == "condition x week"), None)
        said = verdict(term)
        lead = "Mixed model" if comparison.method == MIXED else "Welch's t-test on the participant means"
        note = [f"{lead}: {_p(term.p_value)}"
                + (f" ({said} at alpha {ALPHA})" if said else "") + "."]
        if interaction is not None:
            note.append(f"Condition x week (the change of the difference per week): {_term_text(interaction)}.")
        note += [_counts(comparison), comparison.note]
        if comparison.method == MEANS:  # why there is no model comes first, in plain words
            note = [comparison.note, *note[:-1]]
        scale = " (difference in share)" if comparison.measure.unit == "share" else ""
        out.append(Figure(key=f"condition_effect:{comparison.measure.key}:{term.condition}",
                          label=f"{comparison.measure.label}: {term.condition} minus {comparison.reference}{scale}",
                          value=term.estimate, n_items=items, n_participants=participants, ci=term.ci,
                          note=" ".join(n for n in note if n), unit="number"))
    return out


EFFECT_COLUMNS = ["measure", "comparison", "term", "estimate", "ci_low", "ci_high", "p_value", "at_alpha_0.05",
                  "method", "participants", "observations", "items", "note"]


def effects_table(comparisons: list[Comparison]) -> Table:
    rows = []
    for c in comparisons:
        n = c.by_condition
        participants = ", ".join(f"{r.condition} {int(r.participants)}" for r in n.itertuples())
        observations = ", ".join(f"{r.condition} {int(r.observations)}" for r in n.itertuples())
        items = ", ".join(f"{r.condition} {int(r.items)}" for r in n.itertuples())
        for term in c.terms:
            rows.append({"measure": c.measure.label, "comparison": f"{term.condition} vs {c.reference}",
                         "term": term.term, "estimate": term.estimate,
                         "ci_low": term.ci[0] if term.ci else None, "ci_high": term.ci[1] if term.ci else None,
                         "p_value": term.p_value, "at_alpha_0.05": verdict(term), "method": c.method,
                         "participants": participants, "observations": observations, "items": items,
                         "note": c.brief})
    frame = pd.DataFrame(rows, columns=EFFECT_COLUMNS)
    for column in ("estimate", "ci_low", "ci_high", "p_value"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    n_items = sum(int(c.by_condition["items"].sum()) for c in comparisons)
    n_people = max((int(c.by_condition["participants"].sum()) for c in comparisons), default=0)
    return Table("condition_effects", "Condition effects", frame, n_items, n_people,
                 note="One row per measure, condition and term. condition: the difference from the reference "
                      "condition (at the observations' mean study week where the model has week); condition x "
                      "week: the change of that difference per week. Shares as fractions (0.1 = 10 percentage "
                      "points). participants, observations (participant-weeks) and items per condition. "
                      "at_alpha_0.05: differs where p < 0.05, with no correction for the number of comparisons. "
                      "How each was computed is in its figure above.")


def means_table(comparisons: list[Comparison]) -> Table:
    frames = [c.by_condition.assign(measure=c.measure.label) for c in comparisons]
    columns = ["measure", "condition", "participants", "observations", "items", "mean", "ci_low", "ci_high"]
    frame = pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)
    n_items = sum(int(c.by_condition["items"].sum()) for c in comparisons)
    n_people = max((int(c.by_condition["participants"].sum()) for c in comparisons), default=0)
    return Table("condition_means", "Measures by condition (participant means)", frame, n_items, n_people,
                 note="mean: the mean over the condition's participants of each participant's own value (every "
                      "participant counts once), with its 95% t interval; observations: participant-weeks.")


def by_week_chart(comparison: Comparison) -> Chart | None:
    """The measure per study week and condition (mean of participant-week values), where it has weeks."""
    m = comparison.measure
    items = m.items.assign(condition=m.items["participant_id"].map(comparison.conditions).astype("string"))
    items = items[items["condition"].notna() & items["week"].notna()]
    if items.empty or items["week"].nunique() < 2:
        return None
    cells = _weighted(items, ["participant_id", "condition", "week"])
    frame = cells.groupby(["week", "condition"])["value"].mean().unstack("condition").reset_index()
    frame.columns = [str(c) for c in frame.columns]
    frame["week"] = frame["week"].astype("int64")
    return Chart(f"condition_by_week:{m.key}", f"{m.label} by study week and condition", "line", frame, x="week",
                 y=tuple(c for c in frame.columns if c != "week"), x_label="Study week",
                 y_label="mean of participant-weeks" + (" (share)" if m.unit == "share" else ""),
                 n_items=len(items), n_participants=int(items["participant_id"].nunique()))
