"""Attribute labeling: which newly extracted attributes to ask the participant to label, and when.

The protocol's ``[attribute_review]`` cadence (``schedule.labels_due``) is applied to the memory: attributes
the model extracted that the participant has not labeled yet, oldest first. Attributes the participant
added themselves need no label. The app only announces due labels (status line, one notification); the
participant opens them when ready, so no keystroke meant for a message can answer one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from studyapp.domain import Attribute
from studyapp.store.memory import MemoryStore
from studyapp.study.protocol import LabelingCadence
from studyapp.study.schedule import labels_due, start_of_day


@dataclass(frozen=True)
class LabelingPlan:
    # Ask about these now (empty: not now).
    due: list[Attribute]
    # Model-extracted attributes still without a label (shown on the status line).
    unlabeled: int
    labeled_today: int


def plan_labeling(memory: MemoryStore, cadence: LabelingCadence, *, now: datetime | None = None) -> LabelingPlan:
    attributes = memory.list_attributes()
    unlabeled = [a for a in attributes if a.origin == "model" and a.label is None]
    today = start_of_day(now or datetime.now(UTC))
    labeled_today = sum(1 for a in attributes if a.labeled_at is not None and a.labeled_at >= today)
    count = labels_due(cadence, len(unlabeled), labeled_today)
    return LabelingPlan(due=unlabeled[:count], unlabeled=len(unlabeled), labeled_today=labeled_today)
