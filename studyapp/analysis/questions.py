"""The study's own questions (``question_answers``): what each was answered, and the answers as measures.

Every record is one question put to a participant: ``answered``, ``skipped``, or ``unanswered`` (asked, but the
app closed or the period ended first). A question is the pair of its id and version (a changed wording is a new
version, never pooled with the old). Answers are read by type: likert as the point (1..N), yes_no as 1 yes / 0 no,
choice as the option chosen, text only counted (its words are never in the report).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from studyapp.analysis.conditions import Measure, measure_frame
from studyapp.analysis.load import Export, utc_times
from studyapp.analysis.model import Item, Section, Table

FILE = "question_answers"
STATUSES = ("answered", "skipped", "unanswered")
KEYS = ["question_id", "question_version"]
DAY = pd.Timedelta(days=1)


def answers(export: Export) -> pd.DataFrame | None:
    """The question records with a ``week`` (from study_day; from asked_at and enrollment where it is empty), or
    None when the export has no question records."""
    frame = export.get(FILE)
    if frame is None or frame.empty or export.missing(FILE, "question_id", "status") is not None:
        return None
    frame = frame[frame["question_id"].notna()].copy()
    for column in ("question_version", "question_type", "question_when"):
        if column not in frame.columns:
            frame[column] = pd.Series(pd.NA, index=frame.index, dtype="string")
    frame["question_version"] = frame["question_version"].fillna("")
    day = (frame["study_day"].astype("Int64") if "study_day" in frame.columns
           else pd.Series(pd.NA, index=frame.index, dtype="Int64"))
    frame["week"] = _week(day, _enrolled_days(export, frame))
    return frame.reset_index(drop=True)


def _enrolled_days(export: Export, frame: pd.DataFrame) -> pd.Series:
    """The study day of each record from asked_at and the participant's enrollment (NA where either is unknown)."""
    empty = pd.Series(pd.NA, index=frame.index, dtype="Int64")
    if "asked_at" not in frame.columns or export.missing("participants", "enrolled_at") is not None:
        return empty
    p = export["participants"].drop_duplicates("participant_id")
    enrolled = pd.Series(utc_times(p["enrolled_at"]).to_numpy(), index=p["participant_id"].to_numpy())
    start = pd.to_datetime(frame["participant_id"].map(enrolled).astype(object), utc=True)
    days = (utc_times(frame["asked_at"]) - start) // DAY + 1
    return pd.Series(pd.array(days.to_numpy(dtype="float64", na_value=np.nan), dtype="Int64"), index=frame.index)


def _week(study_day: pd.Series, fallback_day: pd.Series) -> pd.Series:
    day = study_day.fillna(fallback_day)
    day = day.where(day >= 1)
    return (day - 1) // 7 + 1


def _answered(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["status"].isin(["answered"]).fillna(False).astype(bool)]


def _value_label(row_type: str, number: object, option: object) -> str | None:
    """The answer as the distribution shows it: a likert point, yes/no, a choice's option; text has none."""
    if row_type == "yes_no" and not pd.isna(number):
        return {1: "yes", 0: "no"}.get(int(number))  # type: ignore[call-overload]
    if row_type == "likert" and not pd.isna(number):
        return str(int(number))  # type: ignore[call-overload]
    if row_type == "choice" and not pd.isna(option):
        return str(option)
    return None


def _type_of(rows: pd.DataFrame) -> str:
    types = rows["question_type"].dropna()
    return str(types.mode().iloc[0]) if len(types) else ""


def _status_counts(rows: pd.DataFrame) -> dict[str, int]:
    counts = rows["status"].value_counts()
    return {"asked": len(rows), **{s: int(counts.get(s, 0)) for s in STATUSES}}


def _mean(rows: pd.DataFrame, kind: str) -> float | None:
    """The mean answer of a likert (the point) or yes_no (the share yes) question; None for the others."""
    if kind not in ("likert", "yes_no") or "answer_number" not in rows.columns:
        return None
    numbers = _answered(rows)["answer_number"].dropna().to_numpy(dtype=float)
    return float(numbers.mean()) if len(numbers) else None


def _summary_row(key: tuple, rows: pd.DataFrame, extra: dict[str, object]) -> dict[str, object]:
    kind = _type_of(rows)
    when = rows["question_when"].dropna()
    return {"question_id": key[0], "question_version": key[1], **extra, "question_type": kind,
            "question_when": str(when.mode().iloc[0]) if len(when) else "",
            "participants": int(rows["participant_id"].nunique()), **_status_counts(rows),
            "mean_answer": _mean(rows, kind)}


def _summary(frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    rows = []
    for key, group in frame.groupby([*KEYS, *by], dropna=False, sort=True):
        rows.append(_summary_row(key, group, dict(zip(by, key[2:], strict=True))))
    columns = [*KEYS, *by, "question_type", "question_when", "participants", "asked", *STATUSES, "mean_answer"]
    out = pd.DataFrame(rows, columns=columns)
    out["mean_answer"] = pd.to_numeric(out["mean_answer"], errors="coerce").astype("float64")
    return out


def _or_empty(frame: pd.DataFrame, column: str) -> pd.Series:
    return frame[column] if column in frame.columns else pd.Series(pd.NA, index=frame.index, dtype=object)


def _distribution(frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Per question (and ``by``): how many answered answers chose each point, yes/no or option, and the share."""
    answered = _answered(frame)
    number, option = _or_empty(answered, "answer_number"), _or_empty(answered, "answer_option")
    labels = [_value_label(t, n, o) for t, n, o in zip(answered["question_type"].fillna(""), number, option,
                                                        strict=True)]
    labelled = answered.assign(answer=pd.Series(labels, index=answered.index, dtype="string"))
    labelled = labelled[labelled["answer"].notna()]
    columns = [*KEYS, *by, "answer", "answers", "participants", "share"]
    if labelled.empty:
        return pd.DataFrame(columns=columns)
    out = labelled.groupby([*KEYS, *by, "answer"], dropna=False).agg(
        answers=("answer", "size"), participants=("participant_id", "nunique")).reset_index()
    totals = out.groupby([*KEYS, *by], dropna=False)["answers"].transform("sum")
    out["share"] = out["answers"] / totals
    return out[columns]


def section(export: Export, conditions: pd.Series) -> Section | None:
    """The questions' summaries; None when the export has no question records (older exports, no questions)."""
    frame = answers(export)
    if frame is None or frame.empty:
        return None
    with_conditions = conditions.dropna().nunique() >= 2
    items: list[Item] = [Table(
        "questions", "The study's questions", _summary(frame, []), len(frame), int(frame["participant_id"].nunique()),
        note="One row per question and version. asked: records of the question being put; answered, skipped, "
             "unanswered (asked, but the app closed or the period ended first). mean_answer: the mean point of a "
             "likert question, the share yes of a yes_no one, over answered records. Text answers are counted "
             "only.")]
    distribution = _distribution(frame, [])
    items.append(Table("question_distribution", "Answers by question", distribution, int(distribution["answers"].sum())
                       if len(distribution) else 0, int(_answered(frame)["participant_id"].nunique()),
                       note="For likert, yes_no and choice questions: the answered records choosing each point, "
                            "yes or no, or option, and their share of the question's answers."))
    dated = frame[frame["week"].notna()].astype({"week": "int64"})
    if len(dated):
        items.append(Table("questions_by_week", "The study's questions by study week", _summary(dated, ["week"]),
                           len(dated), int(dated["participant_id"].nunique()),
                           note="Week = (study_day - 1) // 7 + 1 of the asking."
                                + (f" {len(frame) - len(dated)} records without a study day left out."
                                   if len(dated) < len(frame) else "")))
    if with_conditions:
        assigned = frame.assign(condition=frame["participant_id"].map(conditions).astype("string"))
        assigned = assigned[assigned["condition"].notna()]
        items.append(Table("questions_by_condition", "The study's questions by condition",
                           _summary(assigned, ["condition"]), len(assigned),
                           int(assigned["participant_id"].nunique()),
                           note="As the questions table, within each condition (text answers: counts only)."))
        by_condition = _distribution(assigned, ["condition"])
        items.append(Table("question_distribution_by_condition", "Answers by question and condition",
                           by_condition, int(by_condition["answers"].sum()) if len(by_condition) else 0,
                           int(_answered(assigned)["participant_id"].nunique())))
    return Section("questions", "The study's questions", items,
                   intro="What participants answered to the questions the protocol asks ([[questions]]): how often "
                         "each was answered, skipped or left unanswered, and the answers.")


def measures(export: Export) -> list[Measure]:
    """The answers as measures for comparing conditions: likert points, yes_no as 0/1, each choice option's share.
    Text answers are not measures (counted only)."""
    frame = answers(export)
    if frame is None:
        return []
    answered = _answered(frame)
    out = []
    for (qid, version), rows in answered.groupby(KEYS, sort=True):
        kind = _type_of(rows)
        name = f"Question {qid}" + (f" (version {version})" if version else "")
        key = f"question:{qid}:{version}"
        number = rows["answer_number"] if "answer_number" in rows.columns else None
        if kind == "likert" and number is not None:
            out.append(Measure(key, f"{name}: mean point", "number",
                               measure_frame(rows["participant_id"], rows["week"], number), "answers"))
        elif kind == "yes_no" and number is not None:
            out.append(Measure(key, f"{name}: share yes", "share",
                               measure_frame(rows["participant_id"], rows["week"], number), "answers"))
        elif kind == "choice" and "answer_option" in rows.columns:
            for option in sorted(rows["answer_option"].dropna().unique()):
                chose = (rows["answer_option"] == option).fillna(False).astype(float)
                out.append(Measure(f"{key}:{option}", f"{name}: share choosing {option!r}", "share",
                                   measure_frame(rows["participant_id"], rows["week"], chose), "answers",
                                   charted=False))
    return out
