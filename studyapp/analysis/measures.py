"""The study's measures from an ``Export``: participation, the paper's three stages, the LLM judges, and this
study beside the paper (docs/ARCHITECTURE.md section 8 says how each is read from the files).

Every figure and table states the items and participants it rests on. A measure whose column this export lacks
is ``NotAvailable`` naming it; a measure with nothing to compute on (no comparisons, one participant, all ratings
equal) is a figure with value None and a note saying why. ``analyze`` never raises on valid data.

Statistics come from scipy and statsmodels (kappa, Spearman, the mixed model), tables from pandas.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf  # imported here, not in a function: its import resets warning filters
from scipy.stats import spearmanr
from statsmodels.stats.inter_rater import cohens_kappa

from studyapp.analysis import conditions as cond
from studyapp.analysis import questions
from studyapp.analysis.conditions import Measure, measure_frame
from studyapp.analysis.load import Export, utc_times
from studyapp.analysis.model import Analysis, Chart, Figure, Item, NotAvailable, Section, Table

# The live dashboard shows these first.
HEADLINE_KEYS = ("participants", "acceptance", "selection_rate", "relevance_rate", "over_selection", "kappa",
                 "mean_rating", "no_better", "week_slope")

LABELS = ("makes_sense", "maybe", "doesnt_make_sense")
ENDED_EARLY = ("failed", "cancelled", "abandoned")  # comparisons neither rated nor skipped (since contract 2)
SETTLED = ("rated", "skipped")
RATINGS = (1, 2, 3, 4, 5)
RATING_WORDS = {1: "generic much better", 2: "generic somewhat better", 3: "no difference",
                4: "personalized somewhat better", 5: "personalized much better"}
DAY = pd.Timedelta(days=1)
PAPER = "Zhang, Liu & August (2026)"


# -- shared helpers ----------------------------------------------------------------------------------------------


def _num(value: Any) -> float | None:
    """A plain float, or None for nothing (None, NA, NaN, infinite)."""
    if value is None or value is pd.NA:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _people(frame: pd.DataFrame) -> int:
    return int(frame["participant_id"].nunique()) if len(frame) and "participant_id" in frame.columns else 0


# Figures that are proportions (shown as percentages); every other figure is a number as it is.
SHARES = frozenset({"acceptance", "selection_rate", "selection_rate_turns", "relevance_rate", "precision", "recall",
                    "no_better"})


def _figure(key: str, label: str, value: Any, rows: pd.DataFrame, *, ci: tuple[float, float] | None = None,
            note: str = "", n_items: int | None = None) -> Figure:
    return Figure(key=key, label=label, value=_num(value), n_items=len(rows) if n_items is None else n_items,
                  n_participants=_people(rows), ci=ci, note=note, unit="share" if key in SHARES else "number")


def _table(key: str, title: str, frame: pd.DataFrame, rows: pd.DataFrame, note: str = "") -> Table:
    return Table(key=key, title=title, frame=_plain(frame), n_items=len(rows), n_participants=_people(rows),
                 note=note)


def _plain(frame: pd.DataFrame) -> pd.DataFrame:
    """Nullable floats as float64 (NaN) and complete counts as int64, so a table renders without pd.NA."""
    out = frame.reset_index(drop=True).copy()
    for column in out.columns:
        dtype = out[column].dtype
        if isinstance(dtype, pd.Float64Dtype):
            out[column] = out[column].to_numpy(dtype="float64", na_value=np.nan)
        elif isinstance(dtype, pd.Int64Dtype) and out[column].notna().all():
            out[column] = out[column].astype("int64")
    return out


def _column(frame: pd.DataFrame, name: str, dtype: str = "string") -> pd.Series:
    """The column, or an empty one where an older export lacks it (used only where emptiness has a meaning)."""
    if name in frame.columns:
        return frame[name]
    return pd.Series(np.nan if dtype == "float64" else pd.NA, index=frame.index, dtype=dtype)


def _is(values: pd.Series, *wanted: str) -> pd.Series:
    """Plain bool mask: the value is one of ``wanted`` (empty is not)."""
    return values.isin(wanted).fillna(False).astype(bool)


def _true(values: pd.Series) -> pd.Series:
    return values.astype("boolean").fillna(False).astype(bool)


def _floats(values: pd.Series) -> np.ndarray:
    return pd.Series(values).to_numpy(dtype="float64", na_value=np.nan)


def _weeks_from_day(study_day: pd.Series) -> pd.Series:
    """Study week of a study day: days 1-7 are week 1 (day 1 is the day of enrollment)."""
    return (study_day.astype("Int64") - 1) // 7 + 1


def _week_of_days(days: pd.Series) -> pd.Series:
    """Study week from whole days since enrollment: week = days // 7 + 1."""
    return days // 7 + 1


def _quietly(compute: Callable[[], Any]) -> Any:
    """Run a statistic without its warnings (constant input, 0/0): the caller checks the result instead."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return compute()


def _share(mask: pd.Series) -> float | None:
    return float(mask.mean()) if len(mask) else None


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


# -- what the sections share ----------------------------------------------------------------------------------------


@dataclass
class _Study:
    export: Export
    participants: list[str]
    enrolled: pd.Series | None  # participant_id -> UTC enrollment time
    comparisons: pd.DataFrame | None  # every comparison, with outcome and week
    rated: pd.DataFrame  # rated comparisons with a rating 1..5
    answered: pd.DataFrame | None  # relevance questions answered yes or no (see _answered)
    notes: list[str]


def _prepare(export: Export) -> _Study:
    notes: list[str] = []
    enrolled = None
    if export.missing("participants", "participant_id", "enrolled_at") is None:
        p = export["participants"]
        enrolled = pd.Series(utc_times(p["enrolled_at"]).to_numpy(), index=p["participant_id"].to_numpy())
        enrolled = enrolled[enrolled.notna()]
    comparisons = None
    rated = pd.DataFrame({"participant_id": pd.Series([], dtype="string"), "rating": pd.Series([], dtype="Int64")})
    if export.missing("comparisons", "participant_id", "comparison_id") is None:
        comparisons = export["comparisons"].copy()
        comparisons["outcome"] = _outcomes(comparisons, notes)
        comparisons["week"] = _weeks_from_day(_column(comparisons, "study_day", "Int64"))
        rating = _column(comparisons, "rating", "Int64")
        rated = comparisons[_is(comparisons["outcome"], "rated") & _is(rating, *RATINGS)].reset_index(drop=True)
    answered = _answered(export, notes)
    return _Study(export, export.participant_ids(), enrolled, comparisons, rated, answered, notes)


def _enrolled_at(study: _Study, participant_ids: pd.Series) -> pd.Series:
    """Each row's participant's enrollment time (NaT where unknown), always as UTC timestamps."""
    enrolled = study.enrolled if study.enrolled is not None else pd.Series(dtype="datetime64[us, UTC]")
    return pd.to_datetime(participant_ids.map(enrolled).astype(object), utc=True)


def _outcomes(comparisons: pd.DataFrame, notes: list[str]) -> pd.Series:
    """What became of each comparison: ``state`` (since contract 2), else rated (rating set), skipped, or unknown."""
    rating = _column(comparisons, "rating", "Int64")
    skipped = _true(_column(comparisons, "skipped", "boolean"))
    before = pd.Series(np.where(rating.notna(), "rated", np.where(skipped, "skipped", "unknown")),
                       index=comparisons.index, dtype="string")
    state = _column(comparisons, "state")
    guessed = int(state.isna().sum())
    if guessed and len(comparisons):
        notes.append(f"{_plural(guessed, 'comparison')} from apps before contract 2 have no state: rated when a "
                     "rating is set, skipped when marked skipped, otherwise unknown (failed, cancelled or abandoned "
                     "cannot be told apart there).")
    return state.fillna(before)


# -- participation --------------------------------------------------------------------------------------------------


ACTIVITY = (  # what counts as being active on a day: a turn, a message, a comparison, a label
    ("schedule_decisions", "decided_at"), ("messages", "created_at"), ("comparisons", "created_at"),
    ("attribute_labels", "labeled_at"),
)


def _activity(study: _Study) -> pd.DataFrame:
    """participant_id, time, day: every recorded act, on the study day counted in whole days from enrollment."""
    parts = []
    for file, column in ACTIVITY:
        if study.export.missing(file, "participant_id", column) is not None:
            continue
        frame = study.export[file]
        if file == "messages" and "role" in frame.columns:
            frame = frame[_is(frame["role"], "user")]
        parts.append(pd.DataFrame({"participant_id": frame["participant_id"].to_numpy(),
                                   "time": utc_times(frame[column]).to_numpy()}))
    empty = pd.DataFrame({"participant_id": pd.Series([], dtype=object),
                          "time": pd.Series([], dtype="datetime64[us, UTC]"), "day": pd.Series([], dtype="int64")})
    if not parts or study.enrolled is None:
        return empty
    acts = pd.concat(parts, ignore_index=True)
    acts["time"] = pd.to_datetime(acts["time"], utc=True)
    acts["enrolled"] = _enrolled_at(study, acts["participant_id"])
    acts = acts.dropna(subset=["participant_id", "time", "enrolled"])
    if acts.empty:
        return empty
    acts["day"] = ((acts["time"] - acts["enrolled"]) // DAY).astype("int64") + 1
    return acts.loc[acts["day"] >= 1, ["participant_id", "time", "day"]].reset_index(drop=True)


def _compliance(study: _Study, acts: pd.DataFrame) -> pd.DataFrame:
    """Per study day, the share of participants active that day among those whose study had reached it by the
    last record in the export (a participant enrolled yesterday cannot be active on day 10)."""
    empty = pd.DataFrame({"study_day": pd.Series([], dtype="int64"), "active": pd.Series([], dtype="int64"),
                          "participants": pd.Series([], dtype="int64"), "share_active": pd.Series([], dtype=float)})
    if acts.empty or study.enrolled is None:
        return empty
    now = acts["time"].max()
    reached = ((now - study.enrolled[study.enrolled.index.isin(study.participants)]) // DAY).astype("int64") + 1
    days = range(1, int(acts["day"].max()) + 1)
    active = acts.drop_duplicates(["participant_id", "day"])["day"].value_counts()
    rows = [{"study_day": d, "active": int(active.get(d, 0)), "participants": int((reached >= d).sum())}
            for d in days]
    frame = pd.DataFrame(rows)
    frame["share_active"] = frame["active"] / frame["participants"].where(frame["participants"] > 0)
    return frame


def participation(study: _Study) -> Section:
    export = study.export
    everyone = pd.DataFrame({"participant_id": pd.Series(study.participants, dtype="string")})
    items: list[Item] = [_figure("participants", "Participants", len(everyone), everyone,
                                 note=_participants_note(study))]
    acts = _activity(study)
    enrolled_missing = export.missing("participants", "enrolled_at")
    days = acts.drop_duplicates(["participant_id", "day"]).groupby("participant_id").size()
    if enrolled_missing:
        items.append(NotAvailable("days_active", "Days active per participant", enrolled_missing))
    else:
        per_person = days.reindex(study.participants, fill_value=0)
        items.append(_figure(
            "days_active", "Days active per participant (mean)", per_person.mean() if len(per_person) else None,
            acts.drop_duplicates(["participant_id", "day"]),
            note="Study days (whole days from enrollment, day 1 = the first 24 hours) with a turn, a message, "
                 "a comparison or a label; mean over all participants, those never active counted as 0."))
    items.append(_messages(export))
    items.extend(_comparison_counts(study))
    labels = export.get("attribute_labels")
    if labels is None:
        items.append(NotAvailable("labels_given", "Attribute labels given", "attribute_labels.label"))
    else:
        items.append(_figure("labels_given", "Attribute labels given", len(labels), labels,
                             note="Every label event (an attribute labeled again counts again)."))
    items.append(_participation_table(study, days, enrolled_missing))
    if enrolled_missing:
        items.append(NotAvailable("compliance_by_day", "Participants active per study day", enrolled_missing))
    else:
        frame = _compliance(study, acts)
        items.append(Chart("compliance_by_day", "Share of participants active per study day", "line", frame,
                           x="study_day", y=("share_active",), x_label="Study day", y_label="Share active",
                           n_items=int(frame["active"].sum()), n_participants=_people(acts)))
    return Section("participation", "Participation", items,
                   intro="Who took part and how much: turns, comparisons and labels per participant and day.")


def _participants_note(study: _Study) -> str:
    if "participants" not in study.export:
        return "Everyone who sent a record (this export has no participants file)."
    if study.export.withdrawn:
        return f"Enrolled participants; {_plural(study.export.withdrawn, 'withdrawn participant')} excluded."
    return "Enrolled participants."


def _messages(export: Export) -> Item:
    needs = export.missing("messages", "role")
    if needs:
        return NotAvailable("messages", "Participant messages", needs)
    messages = export["messages"]
    mine = messages[_is(messages["role"], "user")]
    return _figure("messages", "Participant messages", len(mine), mine,
                   note="Messages the participants wrote (role user); exported only for participants who granted "
                        "conversation_text. schedule_decisions counts every turn.")


def _comparison_counts(study: _Study) -> list[Item]:
    if study.comparisons is None:
        needs = study.export.missing("comparisons", "comparison_id") or "comparisons.comparison_id"
        return [NotAvailable(k, label, needs) for k, label in (
            ("comparisons_offered", "Comparisons offered"), ("comparisons_rated", "Comparisons rated"),
            ("comparisons_skipped", "Comparisons skipped"), ("comparisons_failed", "Comparisons ended early"))]
    c = study.comparisons
    rated, skipped = c[_is(c["outcome"], "rated")], c[_is(c["outcome"], "skipped")]
    items: list[Item] = [
        _figure("comparisons_offered", "Comparisons offered", len(c), c,
                note="Every comparison started (both answers requested), whatever became of it."),
        _figure("comparisons_rated", "Comparisons rated", len(rated), rated),
        _figure("comparisons_skipped", "Comparisons skipped", len(skipped), skipped),
    ]
    needs = study.export.missing("comparisons", "state")
    if needs:
        items.append(NotAvailable("comparisons_failed", "Comparisons ended early (failed, cancelled, abandoned)",
                                  needs))
    else:
        early = c[_is(c["outcome"], *ENDED_EARLY)]
        by_state = early["outcome"].value_counts()
        detail = ", ".join(f"{state} {int(by_state.get(state, 0))}" for state in ENDED_EARLY)
        items.append(_figure("comparisons_failed", "Comparisons ended early (failed, cancelled, abandoned)",
                             len(early), early, note=f"By state: {detail}."))
        states = c.groupby("outcome").agg(comparisons=("comparison_id", "size"),
                                          participants=("participant_id", "nunique")).reset_index()
        states = states.rename(columns={"outcome": "state"})
        states["share"] = states["comparisons"] / len(c) if len(c) else []
        items.append(_table("comparison_states", "Comparisons by state", states, c))
    return items


def _per_participant(rows: pd.DataFrame, ids: list[str]) -> pd.Series:
    return rows.groupby("participant_id").size().reindex(ids, fill_value=0).astype("Int64")


def _count_by(export: Export, file: str, ids: list[str], mask: Callable[[pd.DataFrame], pd.Series] | None = None,
              ) -> pd.Series:
    """Rows per participant in ``file`` (empty where the export lacks the file)."""
    frame = export.get(file)
    if frame is None or "participant_id" not in frame.columns:
        return pd.Series(pd.NA, index=ids, dtype="Int64")
    return _per_participant(frame[mask(frame)] if mask is not None else frame, ids)


def _participation_table(study: _Study, days: pd.Series, enrolled_missing: str | None) -> Table:
    export, ids = study.export, study.participants
    table = pd.DataFrame({"participant_id": ids})
    assigned = export.conditions()
    if len(assigned):
        table["condition"] = table["participant_id"].map(assigned).astype("string")
    if not enrolled_missing:
        enrolled = export["participants"].drop_duplicates("participant_id").set_index("participant_id")
        table["enrolled_at"] = enrolled["enrolled_at"].reindex(ids).to_numpy()
    table["days_active"] = (pd.Series(pd.NA, index=ids, dtype="Int64") if enrolled_missing
                            else days.reindex(ids, fill_value=0).astype("Int64")).to_numpy()
    table["turns"] = _count_by(export, "schedule_decisions", ids).to_numpy()
    table["messages"] = _count_by(export, "messages", ids,
                                  lambda f: _is(_column(f, "role"), "user")).to_numpy()
    table["comparisons"] = _count_by(export, "comparisons", ids).to_numpy()
    c = study.comparisons
    if c is not None:
        for name, states in (("rated", ("rated",)), ("skipped", ("skipped",)), ("ended_early", ENDED_EARLY)):
            table[name] = _per_participant(c[_is(c["outcome"], *states)], ids).to_numpy()
    table["labels"] = _count_by(export, "attribute_labels", ids).to_numpy()
    table["relevance_answers"] = (_per_participant(study.answered, ids) if study.answered is not None
                                  else pd.Series(pd.NA, index=ids, dtype="Int64")).to_numpy()
    table["memory_views"] = _count_by(export, "memory_views", ids).to_numpy()
    everyone = pd.DataFrame({"participant_id": ids})
    return _table("participation_by_participant", "Participation by participant", table, everyone,
                  note="Counts per participant; empty where this export lacks the file. turns: schedule decisions "
                       "(every participant message); ended_early: failed, cancelled or abandoned comparisons.")


# -- stage 1: attribute labels ------------------------------------------------------------------------------------


def _latest_labels(labels: pd.DataFrame, by: Iterable[str] = ()) -> pd.DataFrame:
    """The latest label per participant and attribute (and ``by``), by labeled_at."""
    ordered = labels.assign(_t=utc_times(_column(labels, "labeled_at"))).sort_values("_t", kind="stable",
                                                                                        na_position="first")
    keys = ["participant_id", "attribute_id", *by]
    return ordered.drop_duplicates(keys, keep="last").drop(columns="_t").reset_index(drop=True)


def _label_shares(labels: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    flags = labels.assign(**{label: _is(labels["label"], label).astype(float) for label in LABELS})
    aggregations: dict[str, tuple[str, str]] = {"labels": ("label", "size"),
                                                 "participants": ("participant_id", "nunique")}
    aggregations.update({label: (label, "mean") for label in LABELS})
    return flags.groupby(by, dropna=True).agg(**aggregations).reset_index()


def stage1(study: _Study) -> Section:
    export = study.export
    title = "Stage 1: what the assistant holds about participants"
    needs = export.missing("attribute_labels", "label", "attribute_id")
    if needs:
        keys = ("acceptance", "labels_overall", "labels_by_participant", "labels_by_week", "acceptance_by_age",
                "acceptance_by_confidence")
        return Section("stage1", title, [NotAvailable(k, k.replace("_", " ").capitalize(), needs) for k in keys])
    all_labels = export["attribute_labels"]
    labels = _latest_labels(all_labels[all_labels["label"].notna()])
    accepted = _is(labels["label"], "makes_sense")
    items: list[Item] = [_figure(
        "acceptance", "Acceptance (share of attributes that make sense)", _share(accepted), labels,
        note="The latest label per participant and attribute; maybe and doesnt_make_sense are in labels_overall.")]
    overall = labels["label"].value_counts().reindex(list(LABELS), fill_value=0)
    extra = labels["label"].value_counts().drop(list(LABELS), errors="ignore")
    overall = pd.concat([overall, extra]).rename_axis("label").reset_index(name="labels")
    overall["share"] = overall["labels"] / len(labels) if len(labels) else np.nan
    items.append(_table("labels_overall", "Labels overall", overall, labels))
    by_participant = _label_shares(labels, ["participant_id"]).drop(columns="participants")
    items.append(_table("labels_by_participant", "Labels by participant", by_participant, labels))
    items.append(_labels_by_week(study, all_labels[all_labels["label"].notna()]))
    items.append(_acceptance_by(export, labels, "age_s", "age", "acceptance_by_age",
                                "Acceptance by attribute age (creation to label)", _age_bins))
    items.append(_acceptance_by(export, labels, "confidence", "confidence", "acceptance_by_confidence",
                                "Acceptance by the extractor's confidence", _confidence_bins))
    dismissals = export.get("label_dismissals")
    if dismissals is not None:
        items.append(_figure("labels_dismissed", "Attributes left for later in the label prompt", len(dismissals),
                             dismissals, note="Presses of Later (an attribute shown and left unanswered)."))
    return Section("stage1", title, items,
                   intro="Do the attributes the assistant extracts make sense to the participant? (paper: 58%)")


def _labels_by_week(study: _Study, labels: pd.DataFrame) -> Item:
    needs = study.export.missing("participants", "enrolled_at")
    if needs or study.enrolled is None:
        return NotAvailable("labels_by_week", "Labels by study week", needs or "participants.enrolled_at")
    days = (utc_times(labels["labeled_at"]) - _enrolled_at(study, labels["participant_id"])) // DAY
    dated = labels.assign(week=_week_of_days(days)).dropna(subset=["week"])
    dated = dated[dated["week"] >= 1].astype({"week": "int64"})
    latest = _latest_labels(dated, by=["week"])
    note = ("Week = whole days from enrollment to labeled_at // 7 + 1; the latest label per attribute within each "
            "week (an attribute labeled again in a later week counts in both).")
    return _table("labels_by_week", "Labels by study week", _label_shares(latest, ["week"]), latest, note)


def _age_bins(age_s: pd.Series) -> pd.Series:
    hours = 3600.0
    return pd.cut(age_s, [-np.inf, hours, 24 * hours, 7 * 24 * hours, np.inf], right=False,
                  labels=["under 1 hour", "1 hour to 1 day", "1 to 7 days", "7 days or more"])


def _confidence_bins(confidence: pd.Series) -> pd.Series:
    return pd.cut(confidence, [0, 0.5, 0.7, 0.9, 1.0], include_lowest=True,
                  labels=["0-0.5", "0.5-0.7", "0.7-0.9", "0.9-1"])


def _acceptance_by(export: Export, labels: pd.DataFrame, column: str, name: str, key: str, title: str,
                   bins: Callable[[pd.Series], pd.Series]) -> Item:
    needs = export.missing("attribute_labels", column)
    if needs:
        return NotAvailable(key, title, needs)
    known = labels[labels[column].notna()].copy()
    known["bin"] = bins(known[column])
    known = known[known["bin"].notna()]
    known["accepted"] = _is(known["label"], "makes_sense").astype(float)
    frame = known.groupby("bin", observed=True).agg(
        labels=("accepted", "size"), participants=("participant_id", "nunique"), acceptance=("accepted", "mean"),
    ).reset_index().rename(columns={"bin": name})
    frame[name] = frame[name].astype(str)
    left = len(labels) - len(known)
    note = "The latest label per participant and attribute, binned." + (
        f" {_plural(left, 'label')} without {column} left out." if left else "")
    return _table(key, title, frame, known, note)


# -- stage 2: which attributes shape an answer --------------------------------------------------------------------


@dataclass(frozen=True)
class _Agreement:
    """The selector against the participants' relevance answers, over a set of answered questions."""

    answers: int
    relevance_rate: float | None
    kappa: float | None
    precision: float | None
    recall: float | None
    f1: float | None
    kappa_why: str = ""


def _agreement(answered: pd.DataFrame) -> _Agreement:
    """``answered``: selected (bool), human (bool), weight (1/ask_probability) per answered yes/no question."""
    if answered.empty:
        return _Agreement(0, None, None, None, None, None, "no answered relevance questions")
    selected, human, weight = answered["selected"], answered["human"], answered["weight"]
    # The 2x2 table (model no/yes by participant no/yes), counted directly (crosstab is slow per group), each
    # answer weighted by 1/ask_probability: selected attributes are always asked, unselected ones only sampled,
    # so unweighted the table (and the share "relevant") would lean towards the selected ones.
    cells = np.bincount(2 * selected.to_numpy(dtype=int) + human.to_numpy(dtype=int),
                        weights=weight.to_numpy(dtype=float), minlength=4)
    kappa = _quietly(lambda: cohens_kappa(cells.reshape(2, 2)).kappa)
    why = "" if _num(kappa) is not None else ("undefined: the model and the participants each gave a single answer "
                                              "throughout, so chance agreement is complete")
    hits = (weight * (selected & human)).sum()
    chosen, relevant = (weight * selected).sum(), (weight * human).sum()
    precision = hits / chosen if chosen > 0 else None
    recall = hits / relevant if relevant > 0 else None
    f1 = (2 * precision * recall / (precision + recall)
          if precision is not None and recall is not None and precision + recall > 0 else None)
    relevance_rate = relevant / weight.sum() if weight.sum() > 0 else None
    return _Agreement(len(answered), relevance_rate, _num(kappa), precision, recall, f1, why)


def _answered(export: Export, notes: list[str]) -> pd.DataFrame | None:
    """Answered relevance questions (yes/no): participant_id, comparison_id, selected, human, weight."""
    if export.missing("relevance_labels", "participant_id", "selected_by_model") is not None:
        return None
    if export.missing("relevance_labels", "relevance_status") and export.missing("relevance_labels",
                                                                                  "human_relevant"):
        return None
    r = export["relevance_labels"]
    status = _column(r, "relevance_status")
    from_human = _column(r, "human_relevant", "boolean").map({True: "yes", False: "no"}).astype("string")
    fallback = int((status.isna() & from_human.notna()).sum())
    if fallback:
        notes.append(f"{_plural(fallback, 'relevance answer')} from apps before contract 2 (no relevance_status): "
                     "the answer is human_relevant (true/false); not sure and not asked cannot be told apart.")
    status = status.fillna(from_human)
    keep = _is(status, "yes", "no") & r["selected_by_model"].notna().to_numpy()
    probability = _floats(_column(r, "ask_probability", "float64"))
    weight = np.where((probability > 0) & (probability <= 1), 1 / np.where(probability > 0, probability, 1), 1.0)
    frame = pd.DataFrame({"participant_id": r["participant_id"].to_numpy(),
                          "comparison_id": _column(r, "comparison_id").to_numpy(),
                          "selected": _true(r["selected_by_model"]).to_numpy(),
                          "human": _is(status, "yes").to_numpy(), "weight": weight})
    return frame[keep.to_numpy()].reset_index(drop=True)


def _settled_with_selection(study: _Study) -> pd.DataFrame | None:
    """Rated or skipped comparisons with memory_size and selected_count set: their selection rate per row."""
    c = study.comparisons
    if c is None or study.export.missing("comparisons", "memory_size", "selected_count"):
        return None
    size, count = _floats(c["memory_size"]), _floats(c["selected_count"])
    usable = _is(c["outcome"], *SETTLED).to_numpy() & (size > 0) & ~np.isnan(count)
    out = c[usable].copy()
    out["selection_rate"] = count[usable] / size[usable]
    return out.reset_index(drop=True)


def stage2(study: _Study) -> Section:
    export = study.export
    title = "Stage 2: which attributes shape an answer"
    items: list[Item] = []
    selection = _settled_with_selection(study)
    if selection is None:
        needs = (export.missing("comparisons", "comparison_id", "memory_size", "selected_count")
                 or "comparisons.memory_size")
        items.append(NotAvailable("selection_rate", "Selection rate", needs))
    else:
        items.append(_figure(
            "selection_rate", "Selection rate (attributes selected / attributes in memory)",
            selection["selection_rate"].mean() if len(selection) else None, selection,
            note="Mean of selected_count / memory_size over rated and skipped comparisons with both set."))
    turns = _turn_selection(export)
    if turns is not None:
        items.append(turns)
    answered = study.answered
    if answered is None:
        needs = export.missing("relevance_labels", "selected_by_model", "relevance_status") or (
            "relevance_labels.relevance_status")
        for key, label in (("relevance_rate", "Relevance rate"), ("over_selection", "Over-selection"),
                           ("kappa", "Cohen's kappa"), ("precision", "Precision"), ("recall", "Recall"),
                           ("f1", "F1")):
            items.append(NotAvailable(key, label, needs))
        return Section("stage2", title, items)
    agreement = _agreement(answered)
    status_note = ("" if export.missing("relevance_labels", "relevance_status") is None else
                   " This export has no relevance_status (apps before contract 2): answers are human_relevant "
                   "true/false.")
    items.append(_figure("relevance_rate", "Relevance rate (share of attributes participants call relevant)",
                         agreement.relevance_rate, answered,
                         note="Share yes among relevance questions answered yes or no, each answer weighted "
                              "as the precision and recall below." + status_note))
    items.append(_over_selection(export, selection, answered, agreement))
    items.append(_figure("kappa", "Cohen's kappa, model selection vs participant (yes/no)", agreement.kappa,
                         answered, note=("selected_by_model against the participant's yes, over answered "
                                         "questions weighted as below (statsmodels cohens_kappa on the weighted "
                                         "2x2 table). ")
                         + agreement.kappa_why))
    weighted = export.missing("relevance_labels", "ask_probability") is None
    weight_note = ("Each answer weighted by 1/ask_probability: the unselected attributes asked about are a sample."
                   if weighted else "Unweighted: this export has no ask_probability (apps before contract 2), so "
                   "the unselected attributes asked about count as if they were all of them.")
    for key, label, value in (("precision", "Precision (share relevant among selected)", agreement.precision),
                              ("recall", "Recall (share selected among relevant)", agreement.recall),
                              ("f1", "F1", agreement.f1)):
        items.append(_figure(key, label, value, answered,
                             note=weight_note + ("" if value is not None else " No items to compute it on.")))
    items.append(_stage2_by(selection, answered, "participant_id", "stage2_by_participant",
                            "Stage 2 by participant", "As the stage 2 figures, within each participant."))
    items.append(_stage2_by_week(study, selection, answered))
    return Section("stage2", title, items, intro="Does the model pick the attributes participants find relevant? "
                                                 "(paper: models select 40-60%, humans call ~20% relevant)")


def _over_selection(export: Export, selection: pd.DataFrame | None, answered: pd.DataFrame,
                    agreement: _Agreement) -> Item:
    label = "Over-selection (selection rate / relevance rate)"
    if selection is None:
        return NotAvailable("over_selection", label, export.missing("comparisons", "memory_size", "selected_count")
                            or "comparisons.memory_size")
    rate = _num(selection["selection_rate"].mean()) if len(selection) else None
    over = rate / agreement.relevance_rate if rate is not None and agreement.relevance_rate else None
    rows = pd.concat([answered[["participant_id"]], selection[["participant_id"]]])
    note = ("Above 1: the model selects more attributes than participants find relevant. "
            f"Selection rate over {len(selection)} comparisons, relevance rate over {len(answered)} answers.")
    if over is None:
        note += " Not computable: a rate is missing or the relevance rate is 0."
    return _figure("over_selection", label, over, rows, n_items=len(answered), note=note)


def _turn_selection(export: Export) -> Item | None:
    """The same rate over every turn the schedule decided on (schedule_decisions), comparison or not."""
    if export.missing("schedule_decisions", "memory_size", "selected_count") is not None:
        return None
    d = export["schedule_decisions"]
    size, count = _floats(d["memory_size"]), _floats(d["selected_count"])
    usable = (size > 0) & ~np.isnan(count)
    rows = d[usable]
    return _figure("selection_rate_turns", "Selection rate over all turns with a selection",
                   float(np.mean(count[usable] / size[usable])) if usable.any() else None, rows,
                   note="selected_count / memory_size per schedule decision with both set (comparison or not).")


def _stage2_by(selection: pd.DataFrame | None, answered: pd.DataFrame, by: str, key: str, title: str,
               note: str) -> Table:
    answers = dict(tuple(answered.groupby(by)))
    chosen_by = dict(tuple(selection.groupby(by))) if selection is not None else {}
    rows = []
    for group in sorted(set(answers) | set(chosen_by)):
        mine = answers.get(group, answered.iloc[:0])
        chosen = chosen_by.get(group, selection.iloc[:0]) if selection is not None else None
        a = _agreement(mine)
        rate = _num(chosen["selection_rate"].mean()) if chosen is not None and len(chosen) else None
        rows.append({by: group, "comparisons": 0 if chosen is None else len(chosen), "selection_rate": rate,
                     "answers": a.answers, "relevance_rate": a.relevance_rate,
                     "over_selection": rate / a.relevance_rate if rate is not None and a.relevance_rate else None,
                     "kappa": a.kappa, "precision": a.precision, "recall": a.recall, "f1": a.f1,
                     "participants": len(set(mine["participant_id"])
                                         | (set(chosen["participant_id"]) if chosen is not None else set()))})
    columns = [by, "comparisons", "selection_rate", "answers", "relevance_rate", "over_selection", "kappa",
               "precision", "recall", "f1", "participants"]
    frame = pd.DataFrame(rows, columns=columns)
    for column in columns[2:-1]:
        if column != "answers":
            frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    return _table(key, title, frame, answered, note=note + " Empty where a group has nothing to compute it on.")


def _stage2_by_week(study: _Study, selection: pd.DataFrame | None, answered: pd.DataFrame) -> Item:
    needs = study.export.missing("comparisons", "study_day")
    if needs or study.comparisons is None:
        return NotAvailable("stage2_by_week", "Stage 2 by study week", needs or "comparisons.study_day")
    weeks = study.comparisons[["participant_id", "comparison_id", "week"]].dropna()
    with_week = answered.merge(weeks, on=["participant_id", "comparison_id"], how="inner")
    chosen = selection.dropna(subset=["week"]) if selection is not None else None
    return _stage2_by(chosen, with_week, "week", "stage2_by_week", "Stage 2 by study week",
                      "Week of the comparison: (study_day - 1) // 7 + 1; answers joined to their comparison by id.")


# -- stage 3: personalized vs generic ------------------------------------------------------------------------------


def clustered_bootstrap_ci(values: np.ndarray, clusters: np.ndarray, *, seed: int, resamples: int,
                           ) -> tuple[float, float] | None:
    """95% percentile interval of the pooled mean, resampling participants (clusters) with replacement.

    Ratings of one participant are not independent, so whole participants are resampled: scipy's bootstrap
    draws participants, each carrying the sum and count of their values (paired), and the statistic is the
    pooled mean of the draw.
    """
    from scipy.stats import bootstrap

    codes, uniques = pd.factorize(pd.Series(clusters))
    k = len(uniques)
    if k < 2 or resamples < 1:
        return None
    sums = np.bincount(codes, weights=values.astype(float), minlength=k)
    counts = np.bincount(codes, minlength=k).astype(float)

    def pooled_mean(s: np.ndarray, c: np.ndarray, axis: int = -1) -> np.ndarray:
        return s.sum(axis=axis) / c.sum(axis=axis)

    result = bootstrap((sums, counts), pooled_mean, paired=True, vectorized=True, n_resamples=resamples,
                       batch=500, method="percentile", confidence_level=0.95, rng=np.random.default_rng(seed))
    low, high = result.confidence_interval
    return float(low), float(high)


def stage3(study: _Study, *, seed: int, bootstrap: int) -> Section:
    title = "Stage 3: personalized against generic answers"
    # Only an absent rating column makes stage 3 unavailable: all ratings empty means nothing was rated yet.
    if study.comparisons is None or "rating" not in study.comparisons.columns:
        needs = study.export.missing("comparisons", "comparison_id") or "comparisons.rating"
        keys = ("mean_rating", "no_better", "rating_distribution", "position_bias", "week_slope", "ratings_by_week")
        return Section("stage3", title, [NotAvailable(k, k.replace("_", " ").capitalize(), needs) for k in keys])
    rated = study.rated
    ratings = _floats(rated["rating"])
    people = rated["participant_id"].to_numpy()
    ci_note = (f"participant-clustered bootstrap, {bootstrap:,} resamples (seed {seed})" if _people(rated) >= 2
               else "none with fewer than two participants (the bootstrap resamples participants)")
    items: list[Item] = []
    mean = float(ratings.mean()) if len(ratings) else None
    items.append(_figure(
        "mean_rating", "Mean rating (1-5, 3 = no difference, above 3 favours personalized)", mean, rated,
        ci=clustered_bootstrap_ci(ratings, people, seed=seed, resamples=bootstrap) if len(ratings) else None,
        note=("Rated comparisons, from the personalized answer's view; 95% CI: " + ci_note)
        if len(ratings) else "No rated comparisons."))
    no_better = (ratings <= 3).astype(float)
    items.append(_figure(
        "no_better", "Personalized not better (share of ratings 3 or below)",
        no_better.mean() if len(ratings) else None, rated,
        ci=clustered_bootstrap_ci(no_better, people, seed=seed, resamples=bootstrap) if len(ratings) else None,
        note=("95% CI: " + ci_note) if len(ratings) else "No rated comparisons."))
    items.append(_rating_distribution(rated))
    items.extend(_position(study))
    items.append(week_slope(study))
    items.append(_ratings_by_week(study))
    items.append(_ratings_table(rated, ["participant_id"], "ratings_by_participant", "Ratings by participant"))
    return Section("stage3", title, items, intro="Do participants prefer the personalized answer? "
                                                 "(paper: mean 3.176, 54.6% no better)")


def _rating_distribution(rated: pd.DataFrame) -> Chart:
    counts = rated["rating"].value_counts().reindex(list(RATINGS), fill_value=0)
    frame = pd.DataFrame({"rating": list(RATINGS), "meaning": [RATING_WORDS[r] for r in RATINGS],
                          "count": counts.to_numpy(dtype="int64")})
    frame["share"] = frame["count"] / len(rated) if len(rated) else 0.0
    return Chart("rating_distribution", "Ratings from the personalized answer's view", "bar", frame, x="rating",
                 y=("share",), x_label="Rating (1 generic much better ... 5 personalized much better)",
                 y_label="Share of rated comparisons", n_items=len(rated), n_participants=_people(rated))


def _position(study: _Study) -> list[Item]:
    needs = study.export.missing("comparisons", "personalized_side")
    if needs:
        return [NotAvailable("position_bias", "Position effect", needs)]
    rated = study.rated
    side = _column(rated, "personalized_side")
    left, right = rated[_is(side, "left")], rated[_is(side, "right")]
    value = (float(_floats(left["rating"]).mean() - _floats(right["rating"]).mean())
             if len(left) and len(right) else None)
    note = ("Mean rating (personalized view) when the personalized answer was Response 1 (left) minus when it was "
            "Response 2 (right). 0: position did not matter; above 0: being shown first helped. A participant "
            "pressing d points towards Response 1 whatever the answers gives 2d.")
    if value is None:
        note += " Needs rated comparisons with the personalized answer on each side."
    by_side = rated.assign(side=side, shown=_column(rated, "rating_shown", "Int64")).dropna(subset=["side"])
    table = by_side.groupby("side").agg(comparisons=("rating", "size"), participants=("participant_id", "nunique"),
                                        mean_rating=("rating", "mean"), mean_rating_shown=("shown", "mean"))
    table = table.reset_index().rename(columns={"side": "personalized_side"})
    return [_figure("position_bias", "Position effect (mean rating, personalized left minus right)", value,
                    pd.concat([left, right]), note=note),
            _table("ratings_by_side", "Ratings by where the personalized answer was shown", table, by_side,
                   note="mean_rating_shown: as pressed, 1 = Response 1 (left) much better, 5 = Response 2 much "
                        "better.")]


def week_slope(study: _Study) -> Item:
    """The week coefficient of ``rating ~ week`` with a random intercept per participant (statsmodels MixedLM)."""
    label = "Change in mean rating per study week (mixed model)"
    needs = study.export.missing("comparisons", "study_day")
    if needs:
        return NotAvailable("week_slope", label, needs)
    data = study.rated.dropna(subset=["week"])
    data = pd.DataFrame({"rating": _floats(data["rating"]), "week": _floats(data["week"]),
                         "participant_id": data["participant_id"].astype(str).to_numpy()})
    why = _why_no_slope(data)
    if why:
        return _figure("week_slope", label, None, data, note=why)
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")  # convergence and boundary warnings: read from the fit below
            fit = _fit_mixed(data)
            slope = _num(fit.params["week"])
            interval = fit.conf_int().loc["week"]
    except (ValueError, ArithmeticError, np.linalg.LinAlgError) as e:
        return _figure("week_slope", label, None, data, note=f"The mixed model could not be fitted ({e}).")
    low, high = _num(interval.iloc[0]), _num(interval.iloc[1])
    note = ("statsmodels MixedLM (REML): rating ~ week with a random intercept per participant; the week "
            "coefficient (below 0: ratings fall as the study goes on) and its 95% CI. Week = (study_day - 1) // 7 "
            "+ 1, rated comparisons.")
    if slope is None:
        return _figure("week_slope", label, None, data, note="The mixed model gave no finite week coefficient "
                                                             "(singular fit).")
    if not fit.converged:
        note += " The fit did not converge: read with care."
    if low is None or high is None:
        note += " No confidence interval: the fit's covariance is singular."
    if (_num(fit.cov_re.iloc[0, 0]) or 0.0) < 1e-6:
        note += " The participants' random intercept variance is near 0 (their mean ratings hardly differ)."
    return _figure("week_slope", label, slope, data, note=note,
                   ci=(low, high) if low is not None and high is not None else None)


def _fit_mixed(data: pd.DataFrame) -> Any:
    """MixedLM ``rating ~ week``, random intercept per participant. L-BFGS first (far quicker when the participants'
    variance is near 0); statsmodels' default optimizers where it fails or does not converge."""
    model = smf.mixedlm("rating ~ week", data, groups=data["participant_id"])
    try:
        fit = model.fit(reml=True, method=["lbfgs"])
        if fit.converged:
            return fit
    except (ValueError, ArithmeticError, np.linalg.LinAlgError):
        pass
    return model.fit(reml=True)


def _why_no_slope(data: pd.DataFrame) -> str:
    if data.empty:
        return "No rated comparisons with a study day."
    if data["participant_id"].nunique() < 2:
        return "One participant: a random intercept per participant needs at least two participants."
    if data["week"].nunique() < 2:
        return "All rated comparisons fall in one study week: no change over weeks to estimate."
    if data["rating"].nunique() < 2:
        return "All ratings are equal (all ties): no variation for the model to fit."
    return ""


def _ratings_table(rated: pd.DataFrame, by: list[str], key: str, title: str, note: str = "") -> Table:
    frame = rated.assign(_r=_floats(rated["rating"]), _no=(_floats(rated["rating"]) <= 3).astype(float))
    table = frame.groupby(by).agg(ratings=("_r", "size"), participants=("participant_id", "nunique"),
                                  mean_rating=("_r", "mean"), no_better=("_no", "mean")).reset_index()
    return _table(key, title, table, rated, note)


def _ratings_by_week(study: _Study) -> Item:
    needs = study.export.missing("comparisons", "study_day")
    if needs:
        return NotAvailable("ratings_by_week", "Ratings by study week", needs)
    rated = study.rated.dropna(subset=["week"])
    return _ratings_table(rated, ["week"], "ratings_by_week", "Ratings by study week",
                          note="Week = (study_day - 1) // 7 + 1; no_better = share of ratings 3 or below.")


# -- LLM judges -----------------------------------------------------------------------------------------------------


def _verdicts(export: Export) -> tuple[pd.DataFrame, pd.DataFrame]:
    """All verdicts, and the readable ones (status ok, or empty before contract 2, and a rating 1..5)."""
    v = export["judge_verdicts"]
    status = _column(v, "verdict_status")
    rating = _column(v, "rating", "Int64")
    readable = (_is(status, "ok") | status.isna().to_numpy()) & _is(rating, *RATINGS)
    return v, v[readable].reset_index(drop=True)


def _spearman(a: np.ndarray, b: np.ndarray) -> tuple[float | None, str]:
    if len(a) < 3:
        return None, "Fewer than three comparisons rated by both."
    if len(set(a)) < 2 or len(set(b)) < 2:
        return None, "Undefined: one side gave the same rating to every comparison."
    value = _num(_quietly(lambda: spearmanr(a, b).statistic))
    return value, "" if value is not None else "Undefined for these ratings."


def _weighted_kappa(participant: np.ndarray, judge: np.ndarray) -> tuple[float | None, str]:
    if len(participant) == 0:
        return None, "No rated comparison was judged."
    table = pd.crosstab(participant.astype(int), judge.astype(int)).reindex(
        index=list(RATINGS), columns=list(RATINGS), fill_value=0)
    value = _num(_quietly(lambda: cohens_kappa(table.to_numpy(dtype=float), wt="quadratic").kappa))
    return value, "" if value is not None else "Undefined: both gave one and the same rating throughout."


def _judge_row(model: str, verdicts: pd.DataFrame, readable: pd.DataFrame, rated: pd.DataFrame) -> dict[str, Any]:
    mine = readable[readable["judge_model"] == model]
    ratings = _floats(mine["rating"])
    side = _column(mine, "personalized_side")
    left, right = ratings[_is(side, "left").to_numpy()], ratings[_is(side, "right").to_numpy()]
    keys = ["participant_id", "comparison_id"]
    per_pair = mine.assign(_j=ratings).groupby(keys, as_index=False)["_j"].mean()
    paired = per_pair.merge(rated[[*keys, "rating"]], on=keys)
    spearman, spearman_why = _spearman(_floats(paired["rating"]), paired["_j"].to_numpy())
    pooled = mine.merge(rated[[*keys, "rating"]], on=keys, suffixes=("_judge", ""))
    kappa, kappa_why = _weighted_kappa(_floats(pooled["rating"]), _floats(pooled["rating_judge"]))
    by_side = {}
    for name in ("left", "right"):
        order = pooled[_is(_column(pooled, "personalized_side"), name)]
        by_side[name] = _spearman(_floats(order["rating"]), _floats(order["rating_judge"]))[0]
    return {
        "judge_model": model, "verdicts": int((verdicts["judge_model"] == model).sum()),
        "readable": len(mine), "unreadable": int((verdicts["judge_model"] == model).sum()) - len(mine),
        "comparisons": len(per_pair), "participants": _people(mine),
        # Like for like: the judge's mean and the participants' mean over the same rated comparisons (the judge
        # also rates skipped ones: mean_all).
        "mean": _num(_floats(pooled["rating_judge"]).mean()) if len(pooled) else None,
        "participants_mean": _num(_floats(paired["rating"]).mean()) if len(paired) else None,
        "mean_all": _num(ratings.mean()) if len(ratings) else None,
        "mean_left": _num(left.mean()) if len(left) else None,
        "mean_right": _num(right.mean()) if len(right) else None,
        "order_effect": _num(left.mean() - right.mean()) if len(left) and len(right) else None,
        "spearman": spearman, "spearman_left": by_side["left"], "spearman_right": by_side["right"],
        "paired_comparisons": len(paired), "kappa": kappa, "kappa_pairs": len(pooled),
        "_spearman_why": spearman_why, "_kappa_why": kappa_why, "_mine": mine, "_paired": paired, "_pooled": pooled,
    }


def judges(study: _Study) -> Section:
    title = "LLM judges against the participants"
    needs = study.export.missing("judge_verdicts", "judge_model", "rating", "comparison_id")
    if needs:
        return Section("judges", title, [NotAvailable("judges", "LLM judges", needs)])
    verdicts, readable = _verdicts(study.export)
    models = sorted(verdicts["judge_model"].dropna().unique())
    items: list[Item] = []
    rows = [_judge_row(model, verdicts, readable, study.rated) for model in models]
    for row in rows:
        m = row["judge_model"]
        participants_mean = row["participants_mean"]
        beside = (f" The participants' mean on the same comparisons: {participants_mean:.2f}."
                  if participants_mean is not None else "")
        items.append(_figure(f"judge_mean:{m}", f"{m}: mean rating (both orders)", row["mean"], row["_pooled"],
                             note=f"Readable verdicts in both orders on the comparisons the participants rated; "
                                  f"{row['unreadable']} unreadable counted, not averaged; mean_all in the table "
                                  "includes skipped comparisons." + beside))
        items.append(_figure(f"judge_spearman:{m}", f"{m}: Spearman with participants", row["spearman"],
                             row["_paired"], note="scipy spearmanr of the participant's rating against the judge's "
                                                  "mean over both orders, per rated comparison. "
                             + row["_spearman_why"]))
        items.append(_figure(f"judge_kappa:{m}", f"{m}: quadratic-weighted kappa with participants", row["kappa"],
                             row["_pooled"], note="statsmodels cohens_kappa(wt='quadratic') of the participant's "
                                                  "rating against each readable verdict (both orders). "
                             + row["_kappa_why"]))
        items.append(_figure(f"judge_order_effect:{m}", f"{m}: order effect (personalized left minus right)",
                             row["order_effect"], row["_mine"],
                             note="Mean judge rating when the judge saw the personalized answer as Response 1 "
                                  "minus as Response 2; 0 = no position bias."
                             + ("" if row["order_effect"] is not None else " Needs verdicts in both orders.")))
    frame = pd.DataFrame([{k: v for k, v in row.items() if not k.startswith("_")} for row in rows],
                         columns=["judge_model", "verdicts", "readable", "unreadable", "comparisons", "participants",
                                  "mean", "participants_mean", "mean_all", "mean_left", "mean_right", "order_effect",
                                  "spearman", "spearman_left", "spearman_right", "paired_comparisons", "kappa",
                                  "kappa_pairs"])
    for column in ("mean", "participants_mean", "mean_all", "mean_left", "mean_right", "order_effect", "spearman",
                   "spearman_left",
                   "spearman_right", "kappa"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    items.append(_table("judges", "LLM judges", frame, verdicts,
                        note="One row per judge model; ratings from the personalized answer's view (3 = no "
                             "difference). Unreadable verdicts are counted, not averaged."
                             + ("" if models else " No judge verdicts in this export.")))
    return Section("judges", title, items, intro="Do LLM judges agree with the participants? (paper: judges' mean "
                                                 "3.41-4.02, Spearman 0.11-0.38)")


# -- the paper beside this study ------------------------------------------------------------------------------------


# measure, paper's value as written, its low and high, the key of this study's item
PAPER_ROWS = (
    ("Stage 1: attributes that make sense (share)", "58%", 0.58, 0.58, "acceptance"),
    ("Stage 2: attributes participants call relevant (share)", "~20%", 0.20, 0.20, "relevance_rate"),
    ("Stage 2: attributes the model selects (share)", "40-60%", 0.40, 0.60, "selection_rate"),
    ("Stage 2: model-human agreement (Cohen's kappa)", "0.30", 0.30, 0.30, "kappa"),
    ("Stage 3: mean rating (1-5, 3 = no difference)", "3.176", 3.176, 3.176, "mean_rating"),
    ("Stage 3: personalized not better (share rating <= 3)", "54.6%", 0.546, 0.546, "no_better"),
)


def paper(sections: list[Section]) -> Section:
    found = Analysis("", sections)
    rows = [_paper_row(measure, text, low, high, found.find(key)) for measure, text, low, high, key in PAPER_ROWS]
    judge_keys = sorted({item.key.split(":", 1)[1] for s in sections for item in s.items
                         if item.key.startswith("judge_mean:")})
    for model in judge_keys or [None]:
        suffix = f" ({model})" if model else ""
        rows.append(_paper_row(f"Judges: mean rating{suffix}", "3.41-4.02", 3.41, 4.02,
                               found.find(f"judge_mean:{model}") if model else None))
        rows.append(_paper_row(f"Judges: Spearman with human ratings{suffix}", "0.11-0.38", 0.11, 0.38,
                               found.find(f"judge_spearman:{model}") if model else None))
    frame = pd.DataFrame(rows, columns=["measure", "paper", "paper_low", "paper_high", "study", "n_items",
                                        "n_participants", "study_note"])
    frame["study"] = pd.to_numeric(frame["study"], errors="coerce").astype("float64")
    n_items = int(frame["n_items"].max()) if len(frame) else 0
    n_people = int(frame["n_participants"].max()) if len(frame) else 0
    table = Table("paper_vs_study", "The paper and this study", frame, n_items, n_people,
                  note=f"Paper: {PAPER}, third-party raters on WildChat logs; this study: participants rating "
                       "answers in their own conversations. Shares as fractions (0.58 = 58%). n_items and "
                       "n_participants: what this study's value rests on.")
    return Section("paper", "The paper and this study", [table])


def _paper_row(measure: str, text: str, low: float, high: float, item: Item | None) -> dict[str, Any]:
    if isinstance(item, Figure):
        return {"measure": measure, "paper": text, "paper_low": low, "paper_high": high, "study": item.value,
                "n_items": item.n_items, "n_participants": item.n_participants,
                "study_note": "" if item.value is not None else "not computable in this study yet"}
    why = str(item) if isinstance(item, NotAvailable) else "not in this export"
    return {"measure": measure, "paper": text, "paper_low": low, "paper_high": high, "study": None,
            "n_items": 0, "n_participants": 0, "study_note": why}


# -- conditions ----------------------------------------------------------------------------------------------------


def stage_measures(study: _Study) -> tuple[list[Measure], list[str]]:
    """The stage measures item by item, with each item's participant and study week, for comparing conditions;
    and a line for each measure this export cannot give."""
    export, out, missing = study.export, [], []
    needs = export.missing("attribute_labels", "label", "attribute_id")
    if needs:
        missing.append(f"Acceptance: not compared (needs {needs}).")
    else:
        labels = export["attribute_labels"]
        labels = labels[labels["label"].notna()]
        if study.enrolled is not None and "labeled_at" in labels.columns:
            days = (utc_times(labels["labeled_at"]) - _enrolled_at(study, labels["participant_id"])) // DAY
            labels = labels.assign(week=_week_of_days(days))
            labels = labels[labels["week"].isna() | (labels["week"] >= 1)]
            latest = _latest_labels(labels, by=["week"])  # as labels_by_week: the latest label within each week
        else:
            latest = _latest_labels(labels).assign(week=np.nan)
        out.append(Measure("acceptance", "Acceptance (share of attributes that make sense)", "share",
                           measure_frame(latest["participant_id"], latest["week"],
                                         _is(latest["label"], "makes_sense")), "labels"))
    if study.answered is None:
        missing.append("Selection agreement, precision and recall: not compared (needs "
                       + (export.missing("relevance_labels", "selected_by_model", "relevance_status")
                          or "relevance_labels.relevance_status") + ").")
    else:
        a = study.answered
        weeks = (study.comparisons[["participant_id", "comparison_id", "week"]].drop_duplicates(
            ["participant_id", "comparison_id"]) if study.comparisons is not None else None)
        if weeks is not None:
            a = a.merge(weeks, on=["participant_id", "comparison_id"], how="left")
        else:
            a = a.assign(week=np.nan)
        agree = a["selected"] == a["human"]
        out.append(Measure("selection_agreement", "Selection agreement (share of answers where model and participant "
                           "agree)", "share",
                           measure_frame(a["participant_id"], a["week"], agree, a["weight"]), "answers"))
        chosen = a[a["selected"]]
        out.append(Measure("precision", "Precision (share relevant among selected)", "share",
                           measure_frame(chosen["participant_id"], chosen["week"], chosen["human"],
                                         chosen["weight"]), "answers"))
        relevant = a[a["human"]]
        out.append(Measure("recall", "Recall (share selected among relevant)", "share",
                           measure_frame(relevant["participant_id"], relevant["week"], relevant["selected"],
                                         relevant["weight"]), "answers"))
    if study.comparisons is None or "rating" not in study.comparisons.columns:
        missing.append("Ratings: not compared (needs "
                       + (export.missing("comparisons", "comparison_id") or "comparisons.rating") + ").")
    else:
        r = study.rated
        ratings = _floats(r["rating"])
        out.append(Measure("mean_rating", "Mean rating (1-5, above 3 favours personalized)", "number",
                           measure_frame(r["participant_id"], r["week"], ratings), "ratings"))
        out.append(Measure("no_better", "Personalized not better (share of ratings 3 or below)", "share",
                           measure_frame(r["participant_id"], r["week"], (ratings <= 3).astype(float)), "ratings"))
    return out, missing


def conditions_section(study: _Study, assigned: pd.Series, asked: list[Measure]) -> Section:
    """Every stage measure and every answered question compared across the study's conditions."""
    staged, missing = stage_measures(study)
    compared = [cond.compare(m, assigned) for m in [*staged, *asked] if len(m.items)]
    reference = sorted(assigned.unique())[0]
    items: list[Item] = [_conditions_table(study, assigned)]
    for comparison in compared:
        items.extend(cond.figures(comparison))
    items.append(cond.effects_table(compared))
    items.append(cond.means_table(compared))
    for comparison in compared:
        chart = cond.by_week_chart(comparison) if comparison.measure.charted else None
        if chart is not None:
            items.append(chart)
    intro = (f"Participants were randomized to conditions; each condition is compared with {reference} (the first "
             "by name), with the participant as the unit. Every measure is computed per participant and study week "
             "(a participant-week), and a linear mixed model (statsmodels MixedLM, REML) of measure ~ condition * "
             "week with a random intercept per participant gives the condition's difference at the mean study "
             "week and its change per week (condition x week), with 95% CIs and Wald p-values (no correction for "
             "the number of comparisons). Each comparison says how many participants, participant-weeks and items "
             "it rests on per condition. Where a model cannot be fitted, the comparison says why and gives the "
             "per-condition participant means with Welch's t-test instead.")
    if missing:
        intro += "\n\n" + " ".join(missing)
    return Section("conditions", "Conditions compared", items, intro=intro)


def _conditions_table(study: _Study, assigned: pd.Series) -> Table:
    everyone = pd.Series(study.participants, dtype="string")
    frame = pd.DataFrame({"participant_id": everyone, "condition": everyone.map(assigned).astype("string")})
    table = frame.groupby("condition").agg(participants=("participant_id", "size")).reset_index()
    left = int(frame["condition"].isna().sum())
    note = "Participants by the condition the server assigned at enrollment."
    if left:
        note += (f" {_plural(left, 'participant')} without a condition (enrolled before the study had conditions) "
                 "left out of every comparison.")
    return _table("conditions", "Participants per condition", table, frame[frame["condition"].notna()], note=note)


# -- the whole analysis ---------------------------------------------------------------------------------------------


def analyze(export: Export, *, seed: int = 0, bootstrap: int = 2000) -> Analysis:
    """Every section of the study's analysis, from one export (folder or live database)."""
    study = _prepare(export)
    sections = [participation(study), stage1(study), stage2(study), stage3(study, seed=seed, bootstrap=bootstrap),
                judges(study)]
    assigned = export.conditions()
    assigned = assigned[assigned.index.isin(study.participants)]
    asked = questions.section(export, assigned)
    if asked is not None:
        sections.append(asked)
    if assigned.nunique() >= 2:
        sections.append(conditions_section(study, assigned, questions.measures(export)))
    elif assigned.nunique() == 1:
        study.notes.append(f"Every participant with a condition is in {assigned.iloc[0]}: no conditions to compare.")
    sections.append(paper(sections))
    name = export.study_id
    return Analysis(title=f"Study analysis: {name}" if name else "Study analysis", sections=sections,
                    source=export.source, notes=[*export.notes, *study.notes])
