"""The participant's data as plain objects: what the stores return and take, and what the screens show.

No SQL and no Textual here (docs/ARCHITECTURE.md, "Parts"): the stores (studyapp.store) map rows to and from
these objects; the pipeline, the study, privacy and the screens use them without knowing where they are kept.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from studyapp.events import ATTRIBUTE_ORIGINS
from studyapp.events import LABEL_SOURCES as LABEL_SOURCES  # where a label was given; shared with the server

# Conversations and their messages ----------------------------------------------------------------------------


@dataclass
class Conversation:
    id: str
    title: str
    created_at: str
    updated_at: str
    memory_enabled: bool
    message_count: int = 0


@dataclass
class Message:
    n: int
    id: str
    conversation_id: str
    role: str
    content: str
    status: str
    created_at: str
    error: str | None = None
    model: str | None = None
    arm: str | None = None
    comparison_id: str | None = None
    template: str | None = None
    first_token_ms: float | None = None
    duration_ms: float | None = None


@dataclass
class SearchHit:
    message: Message
    conversation_title: str
    # The matching passage, with each matched term between HIT_START and HIT_END.
    snippet: str


HIT_START, HIT_END = "\x02", "\x03"


# Memory: attributes, their history, labels, extraction runs and selections -----------------------------------

ORIGINS = ATTRIBUTE_ORIGINS
ACTORS = ("model", "participant")


@dataclass
class Attribute:
    id: str
    text: str
    reason: str
    confidence: float
    status: str
    origin: str
    evidence: list[str]
    created_at: str
    updated_at: str
    # The participant's latest stage-1 label, if any (filled by list_attributes / get).
    label: str | None = None
    labeled_at: str | None = None

    def snapshot(self) -> dict[str, Any]:
        """What an attribute_event keeps as 'before' / 'after'."""
        return {
            "text": self.text,
            "reason": self.reason,
            "confidence": self.confidence,
            "status": self.status,
            "evidence": list(self.evidence),
        }


@dataclass(frozen=True)
class AttributeLabel:
    """One stage-1 label the participant gave (``source``: LABEL_SOURCES, None before it was recorded)."""

    id: str
    attribute_id: str
    label: str
    labeled_at: str
    source: str | None
    # The attribute as it was when labeled, and its age then (seconds since it was created); None for labels
    # given before migration m007 recorded them.
    attribute_text: str | None = None
    confidence: float | None = None
    age_s: float | None = None


@dataclass(frozen=True)
class LabelDismissal:
    """The participant left the label prompt with this attribute on screen unanswered ("Later")."""

    id: str
    attribute_id: str
    dismissed_at: str
    source: str | None


@dataclass
class AttributeEvent:
    id: str
    attribute_id: str
    action: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    reason: str
    actor: str
    run_id: str | None
    created_at: str


@dataclass
class ExtractionRun:
    id: str
    status: str
    model: str | None
    template: str | None
    message_ids: list[str]
    raw: str | None
    error: str | None
    created_at: str


@dataclass
class SelectionRecord:
    id: str
    message_id: str
    attribute_id: str
    selected: bool
    rationale: str
    model: str | None
    template: str | None
    created_at: str
    # Whether the selector's answer was readable and decided this attribute (None: recorded before m008).
    valid: bool | None = None
    conversation_id: str | None = None


@dataclass(frozen=True)
class MemoryView:
    """The participant looked at their memory: where, when, for how long (recorded when they leave it)."""

    id: str
    opened_at: str
    closed_at: str
    duration_s: float
    screen: str


@dataclass
class NewAttribute:
    """An attribute to insert as part of a reconciliation."""

    text: str
    reason: str
    confidence: float
    evidence: list[str]
    origin: str = "model"
    # A random UUID4, like every id of the participant's database (never derived from a person).
    id: str = field(default_factory=lambda: str(uuid.uuid4()))


@dataclass
class AttributeChange:
    """One change of a reconciliation: add (``new``), or update / delete / keep of ``attribute_id``."""

    action: str
    reason: str
    new: NewAttribute | None = None
    attribute_id: str | None = None
    text: str | None = None
    attribute_reason: str | None = None
    confidence: float | None = None
    evidence: list[str] | None = None


class MemoryChangeError(RuntimeError):
    """A change to memory (an attribute, its text, a label) cannot be made; the message says why and what to do."""


@dataclass(frozen=True)
class ScheduleRecord:
    """One participant turn the comparison schedule looked at (study/schedule.py OUTCOMES says why)."""

    id: str
    message_id: str
    conversation_id: str
    decided_at: str
    eligible: bool
    draw: float | None
    probability: float | None
    outcome: str
    reason: str
    memory_size: int
    # Attributes the selector chose for this request (None: no selection ran).
    selected_count: int | None
