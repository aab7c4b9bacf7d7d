"""Attribute reviews: which newly extracted attributes to ask the participant to label, and when.

The protocol's ``[attribute_review]`` cadence (``schedule.reviews_due``) is applied to the memory: attributes
the model extracted that the participant has not labeled yet, oldest first. Attributes the participant
added themselves need no review. The app only announces due reviews (status line, one notification); the
participant opens them when ready, so no keystroke meant for a message can answer one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from studyapp.domain import Attribute
from studyapp.store.memory import MemoryStore
from studyapp.study.protocol import AttributeReview
from studyapp.study.schedule import reviews_due, start_of_day


@dataclass(frozen=True)
class ReviewPlan:
    # Ask about these now (empty: not now).
    due: list[Attribute]
    # Model-extracted attributes still without a label (shown on the status line).
    unlabeled: int
    labeled_today: int


def plan_reviews(memory: MemoryStore, review: AttributeReview, *, now: datetime | None = None) -> ReviewPlan:
    attributes = memory.list_attributes()
    unlabeled = [a for a in attributes if a.origin == "model" and a.label is None]
    today = start_of_day(now or datetime.now(UTC))
    labeled_today = sum(1 for a in attributes if a.labeled_at is not None and a.labeled_at >= today)
    count = reviews_due(review, len(unlabeled), labeled_today)
    return ReviewPlan(due=unlabeled[:count], unlabeled=len(unlabeled), labeled_today=labeled_today)
