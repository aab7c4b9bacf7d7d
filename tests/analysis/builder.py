"""Export folders with known answers, written by hand with pandas in any of the three formats.

``StudyBuilder`` notes rows the way the tests think of them (a participant, a comparison on study day d rated r, a
relevance answer, a verdict) and fills every other column of the contract with empty; ``write`` puts the frames in
a folder as JSONL, CSV or Parquet the way the exporter does (CSV booleans true/false, lists as JSON arrays, Parquet
typed). ``older`` drops what apps and servers before contract 2 did not have: every "(since 2)" column of
docs/ARCHITECTURE.md section 8, and the files new in contract 2.
"""

from __future__ import annotations

import functools
import json
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from studyapp.server.export import RECORD_TYPE_NAMES, column_names, record_type
from tests.project.test_export_docs import DOC, SINCE, parse, section

STUDY = "known-answers"
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday, 09:00 UTC
DTYPES = {"string": "string", "float64": "float64", "int64": "Int64", "bool": "boolean", "list<string>": object}
NEW_IN_2 = ("selections", "memory_views")


@functools.cache
def since_2() -> dict[str, frozenset[str]]:
    """file -> its columns added in contract 2, as the docs mark them."""
    documented = parse(section(DOC.read_text(encoding="utf-8")))
    return {name: frozenset(c for c, _, meaning in doc["columns"] if meaning.startswith(SINCE))
            for name, doc in documented.items()}


def iso(t: datetime) -> str:
    return t.isoformat()


class StudyBuilder:
    def __init__(self) -> None:
        self.rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.enrolled: dict[str, datetime] = {}

    def participant(self, pid: str, *, enrolled: datetime = START, withdrawn: bool = False) -> str:
        self.enrolled[pid] = enrolled
        row: dict[str, Any] = {"participant_id": pid, "categories": ["ratings", "attribute_labels"]}
        if withdrawn:
            row["withdrawn_at"] = iso(enrolled + timedelta(days=3))
        else:
            row.update(enrolled_at=iso(enrolled), consent_version="1", consent_sha256="ab" * 32)
        self.rows["participants"].append(row)
        return pid

    def at(self, pid: str, day: int, hours: float = 1) -> datetime:
        """A time on the participant's study day ``day`` (1 = the first 24 hours from enrollment)."""
        return self.enrolled[pid] + timedelta(days=day - 1, hours=hours)

    def comparison(self, pid: str, *, day: int, rating: int | None = None, state: str | None = None,
                   side: str = "left", memory: int | None = 4, selected: int | None = 1,
                   comparison_id: str | None = None) -> str:
        cid = comparison_id or str(uuid.uuid4())
        state = state or ("rated" if rating is not None else "skipped")
        shown = None if rating is None else (rating if side == "right" else 6 - rating)
        created = self.at(pid, day)
        self.rows["comparisons"].append({
            "participant_id": pid, "comparison_id": cid, "conversation_id": f"conv-{pid}",
            "prompt": "a request", "generic_response": "generic answer", "personalized_response": "personal answer",
            "personalized_side": side, "model": "m", "created_at": iso(created), "rating": rating,
            "rated_at": iso(created + timedelta(minutes=1)) if state in ("rated", "skipped") else None,
            "skipped": state == "skipped", "rating_shown": shown, "memory_size": memory, "selected_count": selected,
            "study_day": day, "utc_offset_min": 0, "state": state, "contract_version": 2,
            "ended_at": iso(created + timedelta(minutes=1)) if state not in ("rated", "skipped") else None,
        })
        self.turn(pid, day=day, outcome="comparison", memory=memory, selected=selected)
        return cid

    def turn(self, pid: str, *, day: int, outcome: str = "draw_lost", memory: int | None = 4,
             selected: int | None = None) -> None:
        self.rows["schedule_decisions"].append({
            "participant_id": pid, "decision_id": str(uuid.uuid4()), "decided_at": iso(self.at(pid, day)),
            "eligible": True, "outcome": outcome, "memory_size": memory, "selected_count": selected,
            "contract_version": 2})

    def relevance(self, pid: str, comparison_id: str, *, selected: bool, status: str, probability: float = 1.0,
                  attribute_id: str | None = None) -> None:
        human = {"yes": True, "no": False}.get(status)
        self.rows["relevance_labels"].append({
            "participant_id": pid, "comparison_id": comparison_id, "attribute_id": attribute_id or str(uuid.uuid4()),
            "selected_by_model": selected, "model_relevant": selected, "human_relevant": human,
            "relevance_status": status, "ask_probability": probability,
            "asked_when": None if status == "not_asked" else "after_rating", "contract_version": 2})

    def label(self, pid: str, label: str, *, day: int, hours: float = 1, attribute_id: str | None = None,
              age_s: float | None = None, confidence: float | None = None) -> None:
        self.rows["attribute_labels"].append({
            "participant_id": pid, "attribute_id": attribute_id or str(uuid.uuid4()), "label": label,
            "labeled_at": iso(self.at(pid, day, hours)), "source": "label_prompt", "age_s": age_s,
            "confidence": confidence, "contract_version": 2})

    def verdict(self, pid: str, comparison_id: str, judge: str, side: str, rating: int | None,
                status: str = "ok") -> None:
        self.rows["judge_verdicts"].append({
            "participant_id": pid, "comparison_id": comparison_id, "judge_model": judge, "personalized_side": side,
            "rating": rating, "verdict_id": str(uuid.uuid4()), "verdict_status": status, "contract_version": 2})

    def message(self, pid: str, *, day: int, role: str = "user") -> None:
        self.rows["messages"].append({
            "participant_id": pid, "conversation_id": f"conv-{pid}", "message_id": str(uuid.uuid4()), "role": role,
            "content": "hello", "created_at": iso(self.at(pid, day)), "status": "complete", "contract_version": 2})

    def frames(self, *, older: bool = False, files: tuple[str, ...] = RECORD_TYPE_NAMES) -> dict[str, pd.DataFrame]:
        """Every file of the contract (empty where nothing was noted), typed as the contract says."""
        out = {}
        for name in files:
            if older and name in NEW_IN_2:
                continue
            drop = since_2()[name] if older else frozenset()
            out[name] = typed(name, self.rows.get(name, []), drop=drop)
        return out


def typed(name: str, rows: list[dict[str, Any]], *, drop: frozenset[str] = frozenset()) -> pd.DataFrame:
    kinds = {"study_id": "string", "participant_id": "string", "condition": "string",
             **dict(record_type(name).columns)}
    columns = [c for c in column_names(record_type(name)) if c not in drop]
    data = {c: pd.Series([r.get(c, STUDY if c == "study_id" else None) for r in rows], dtype=DTYPES[kinds[c]])
            for c in columns}
    return pd.DataFrame(data, columns=columns)


def write(folder: Path, frames: dict[str, pd.DataFrame], fmt: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in frames.items():
        path = folder / f"{name}.{fmt}"
        if fmt == "jsonl":
            path.write_text("".join(json.dumps(_json_row(row)) + "\n" for row in frame.to_dict("records")),
                            encoding="utf-8")
        elif fmt == "csv":
            _csv_frame(frame).to_csv(path, index=False, na_rep="")
        else:
            frame.to_parquet(path, index=False)
    return folder


def _empty(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and value != value)


def _json_row(row: dict[str, Any]) -> dict[str, Any]:
    return {k: None if not isinstance(v, list) and _empty(v) else v for k, v in row.items()}


def _csv_frame(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    for column in out.columns:
        if isinstance(out[column].dtype, pd.BooleanDtype):
            out[column] = out[column].map({True: "true", False: "false"}).astype(object).where(out[column].notna(), "")
        elif out[column].dtype == object:
            out[column] = [json.dumps(v) if isinstance(v, list) else "" for v in out[column]]
    return out
