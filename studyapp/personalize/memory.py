"""Reconciling proposed attributes into the participant's memory, and the participant's own memory actions.

``Reconciler`` decides, for each proposal from the extractor, add / update / delete / keep against the
current memory. Cheap local checks come first and last (normalized text, so "The user likes tea." and
"the user likes tea" merge instead of stacking); only what remains goes to the model, which sees short
ids (E1, E2 for memory, N1, N2 for proposals, as mem0 does) and never a real id. Whatever the model says,
the plan is made of known ids only, and it is written in one transaction together with its extraction run.

``MemoryService`` is what the memory screen talks to: list, evidence, label, edit, forget, add.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from difflib import SequenceMatcher
from typing import Any

from studyapp.domain import Attribute, AttributeChange, AttributeEvent, ExtractionRun, Message, NewAttribute
from studyapp.llm.base import ChatModel, ChatParams
from studyapp.personalize.structured import StructuredResult, complete_structured
from studyapp.personalize.templates import load_template
from studyapp.store.memory import MemoryStore

log = logging.getLogger(__name__)

# Called with (event kind, payload) after a change is committed: ("attribute", ...) or ("attribute_label", ...),
# payloads with the fields of studyapp.events. The app passes the privacy collector here.
# Called after a change the study may collect was committed. The record itself needs no hand-over: while
# enrolled, the database notes it for the privacy gate in the same transaction (migration m005); this only
# wakes the gate so it goes out soon.
ChangeHook = Callable[[], None]

RECONCILE_TEMPLATE = "reconcile"
# How many existing attributes the model sees per reconciliation: the most similar ones (bounded prompt).
MAX_EXISTING_SHOWN = 20
NEAR_DUPLICATE_RATIO = 0.9

RECONCILE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "decisions": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "new": {"type": "integer"},
                    "action": {"type": "string", "enum": ["add", "update", "delete", "keep"]},
                    "target": {"type": ["integer", "null"]},
                    "text": {"type": ["string", "null"]},
                    "reason": {"type": "string"},
                },
                "required": ["new", "action"],
            },
        }
    },
    "required": ["decisions"],
}


@dataclass
class Proposal:
    """An attribute proposed by the extractor; ``evidence`` holds real message ids (mapped, never trusted)."""

    statement: str
    reason: str
    confidence: float
    evidence: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {"statement": self.statement, "reason": self.reason, "confidence": self.confidence,
                "evidence": list(self.evidence)}


_WORD = re.compile(r"[a-z0-9]+")
_LEAD = ("the", "user", "users", "user's")


def normalize(text: str) -> str:
    """Lowercase words without punctuation or the leading 'The user', for near-duplicate checks."""
    words = _WORD.findall(text.lower().replace("'s", "s"))
    while words and words[0] in _LEAD:
        words = words[1:]
    return " ".join(words)


def near_duplicate(a: str, b: str) -> bool:
    na, nb = normalize(a), normalize(b)
    if not na or not nb:
        return na == nb
    if na == nb:
        return True
    return SequenceMatcher(None, na, nb).ratio() >= NEAR_DUPLICATE_RATIO


def _as_int(value: Any) -> int | None:
    """A short id as the model wrote it (3 or 3.0); anything else is no id."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _similarity(a: str, b: str) -> float:
    wa, wb = set(normalize(a).split()), set(normalize(b).split())
    if not wa or not wb:
        return 0.0
    return len(wa & wb) / len(wa | wb)


@dataclass
class ReconcilePlan:
    changes: list[AttributeChange] = field(default_factory=list)
    # What happened to each proposal, in plain words (for the CLI, tests and logs).
    notes: list[str] = field(default_factory=list)
    structured: StructuredResult | None = None

    @property
    def failed(self) -> bool:
        return self.structured is not None and not self.structured.ok


@dataclass
class ReconcileOutcome:
    plan: ReconcilePlan
    events: list[AttributeEvent]


class Reconciler:
    def __init__(self, model: ChatModel, store: MemoryStore | None = None, *,
                 params: ChatParams | None = None) -> None:
        self.model = model
        self.store = store
        self.params = params
        self.template = load_template(RECONCILE_TEMPLATE)
        self.examples = re.findall(r'"text":\s*"([^"]+)"', self.template.text)

    async def plan(self, proposals: Sequence[Proposal], existing: Sequence[Attribute],
                   forgotten: Sequence[str] = ()) -> ReconcilePlan:
        """Decide the changes; writes nothing. ``forgotten``: texts the participant asked to forget."""
        plan = ReconcilePlan()
        existing = [a for a in existing if a.status == "active"]
        by_id = {a.id: a for a in existing}
        # Evidence each existing attribute gains / which were touched (keeps a target from being hit twice).
        touched: dict[str, str] = {}

        def keep(target: Attribute, proposal: Proposal, why: str) -> None:
            if touched.get(target.id) == "delete":
                plan.notes.append(f"dropped {proposal.statement!r}: its match was just deleted")
                return
            plan.changes.append(AttributeChange(
                action="keep", reason=why, attribute_id=target.id,
                confidence=max(target.confidence, proposal.confidence), evidence=proposal.evidence,
            ))
            touched.setdefault(target.id, "keep")
            plan.notes.append(f"kept {target.text!r} for {proposal.statement!r}")

        added: list[tuple[NewAttribute, Proposal]] = []

        def add(proposal: Proposal, why: str) -> None:
            for new, _ in added:
                if near_duplicate(new.text, proposal.statement):
                    new.evidence = list(dict.fromkeys([*new.evidence, *proposal.evidence]))
                    new.confidence = max(new.confidence, proposal.confidence)
                    plan.notes.append(f"merged {proposal.statement!r} into a new attribute")
                    return
            for target in existing:
                if touched.get(target.id) != "delete" and near_duplicate(target.text, proposal.statement):
                    keep(target, proposal, "same as an existing attribute")
                    return
            new = NewAttribute(text=proposal.statement, reason=proposal.reason, confidence=proposal.confidence,
                               evidence=list(proposal.evidence))
            added.append((new, proposal))
            plan.changes.append(AttributeChange(action="add", reason=why, new=new))
            plan.notes.append(f"added {proposal.statement!r}")

        # 1. Local checks: merge proposals among themselves, match exact/near duplicates, respect forgetting.
        remaining: list[Proposal] = []
        for proposal in proposals:
            if any(near_duplicate(text, proposal.statement) for text in forgotten):
                plan.notes.append(f"dropped {proposal.statement!r}: the participant forgot it")
                continue
            twin = next((p for p in remaining if near_duplicate(p.statement, proposal.statement)), None)
            if twin is not None:
                twin.evidence = list(dict.fromkeys([*twin.evidence, *proposal.evidence]))
                twin.confidence = max(twin.confidence, proposal.confidence)
                continue
            match = next((a for a in existing if near_duplicate(a.text, proposal.statement)), None)
            if match is not None:
                keep(match, proposal, "same as an existing attribute")
                continue
            remaining.append(proposal)
        if not remaining:
            return plan
        if not existing:
            for proposal in remaining:
                add(proposal, proposal.reason or "new attribute")
            return plan

        # 2. The model decides the rest against the most similar existing attributes, by short ids.
        shown = self._most_similar(remaining, existing)
        messages = [
            {"role": "system", "content": self.template.text},
            {"role": "user", "content": self._prompt(shown, remaining)},
        ]
        # About 60 tokens per decision (a rewritten sentence and a reason): a budget that grows with the proposals
        # keeps a rambling small model from running on to a fixed large limit.
        params = self.params or ChatParams(temperature=0.0, max_tokens=min(1024, 64 + 96 * len(remaining)))
        plan.structured = await complete_structured(self.model, messages, RECONCILE_SCHEMA, params)
        if not plan.structured.ok:
            return plan
        decided: set[int] = set()
        for decision in plan.structured.value.get("decisions", []):
            index = _as_int(decision.get("new"))
            if index is None or not 1 <= index <= len(remaining) or index in decided:
                continue
            decided.add(index)
            proposal = remaining[index - 1]
            action = decision.get("action")
            why = (decision.get("reason") or proposal.reason or action or "").strip()
            target_ref = _as_int(decision.get("target"))
            target = shown[target_ref - 1] if target_ref is not None and 1 <= target_ref <= len(shown) else None
            if action in ("update", "delete", "keep") and (target is None or touched.get(target.id) == "delete"):
                plan.notes.append(f"model gave no valid target for {action} of {proposal.statement!r}")
                if action == "delete":
                    continue
                add(proposal, why)
                continue
            if action == "add" or target is None:
                add(proposal, why)
            elif action == "keep":
                keep(target, proposal, why)
            elif action == "delete":
                if touched.get(target.id):
                    plan.notes.append(f"ignored delete of {target.text!r}: already changed in this run")
                    continue
                plan.changes.append(AttributeChange(action="delete", reason=why, attribute_id=target.id))
                touched[target.id] = "delete"
                plan.notes.append(f"deleted {target.text!r} because of {proposal.statement!r}")
            else:  # update
                text = " ".join(str(decision.get("text") or "").split()) or proposal.statement
                if any(near_duplicate(text, ex) for ex in self.examples) and not near_duplicate(
                    text, proposal.statement
                ):
                    text = proposal.statement  # the prompt's example, copied: not what the participant said
                if touched.get(target.id) or any(
                    near_duplicate(text, a.text) for a in existing if a.id != target.id
                ):
                    keep(target, proposal, why)
                    continue
                plan.changes.append(AttributeChange(
                    action="update", reason=why, attribute_id=target.id, text=text,
                    attribute_reason=proposal.reason or by_id[target.id].reason,
                    confidence=proposal.confidence, evidence=proposal.evidence,
                ))
                touched[target.id] = "update"
                plan.notes.append(f"updated {target.text!r} to {text!r}")
        # Proposals the model said nothing about: add them unless they repeat what is known.
        for index, proposal in enumerate(remaining, start=1):
            if index not in decided:
                add(proposal, proposal.reason or "new attribute (no decision from model)")
        return plan

    def _most_similar(self, proposals: Sequence[Proposal], existing: Sequence[Attribute]) -> list[Attribute]:
        if len(existing) <= MAX_EXISTING_SHOWN:
            return list(existing)
        scored = sorted(existing, key=lambda a: max(_similarity(a.text, p.statement) for p in proposals),
                        reverse=True)
        return scored[:MAX_EXISTING_SHOWN]

    @staticmethod
    def _prompt(shown: Sequence[Attribute], proposals: Sequence[Proposal]) -> str:
        memory = "\n".join(f"E{i}: {a.text}" for i, a in enumerate(shown, start=1))
        new = "\n".join(f"N{i}: {p.statement}" for i, p in enumerate(proposals, start=1))
        return (f"Memory:\n{memory}\n\nNew attributes:\n{new}\n\n"
                "Use plain numbers in JSON: new 1 means N1, target 2 means E2.")

    async def reconcile(self, proposals: Sequence[Proposal], *, run: ExtractionRun,
                        finish_claim: str | None = None) -> ReconcileOutcome:
        """Plan against the stored memory and write it with ``run`` in one transaction.

        If the model's reconciliation cannot be used, ``run`` is recorded as failed (with every raw answer)
        and memory is left untouched. Raises nothing for bad model output.
        """
        if self.store is None:
            raise RuntimeError("Reconciler.reconcile needs a MemoryStore; use plan() without one.")
        existing = self.store.list_attributes()
        plan = await self.plan(proposals, existing, self.store.forgotten_texts())
        if plan.structured is not None:
            run.template = f"{run.template},{self.template.ref}" if run.template else self.template.ref
        if plan.structured is not None and plan.structured.unavailable:
            return ReconcileOutcome(plan, [])
        if plan.failed:
            assert plan.structured is not None
            run.status = "failed"
            run.error = f"reconciliation: {plan.structured.error}"
            run.raw = "\n--- reconciliation ---\n".join(filter(None, [run.raw, plan.structured.raw]))
            self.store.record_failed_run(run, finish_claim=finish_claim)
            return ReconcileOutcome(plan, [])
        events = self.store.apply_changes(plan.changes, actor="model", run=run, finish_claim=finish_claim)
        return ReconcileOutcome(plan, events)


# The participant's memory screen ----------------------------------------------------------


@dataclass
class AttributeRow:
    """One line of the memory screen."""

    id: str
    text: str
    reason: str
    confidence: float
    origin: str
    created_at: str
    updated_at: str
    label: str | None
    evidence_count: int
    # The participant changed its text (the memory screen then says so next to its origin).
    edited: bool = False

    def age(self, now: datetime | None = None) -> str:
        """'just now', '5 min', '3 h', '2 d': how long ago the attribute was created."""
        now = now or datetime.now(UTC)
        seconds = max(0.0, (now - datetime.fromisoformat(self.created_at)).total_seconds())
        if seconds < 60:
            return "just now"
        if seconds < 3600:
            return f"{int(seconds // 60)} min"
        if seconds < 86400:
            return f"{int(seconds // 3600)} h"
        return f"{int(seconds // 86400)} d"


def notify_change(on_change: ChangeHook | None) -> None:
    """Tell the study side that records were written (the database already holds them, see ``ChangeHook``)."""
    if on_change is None:
        return
    try:
        on_change()
    except Exception:
        # The memory change is committed, and noted for the study in the same transaction: nothing is lost.
        log.exception("could not wake the study's record pump")


class MemoryService:
    """The participant's view of and actions on their memory (no SQL in the screen, no Textual here)."""

    def __init__(self, store: MemoryStore, *, on_change: ChangeHook | None = None) -> None:
        self.store = store
        self.on_change = on_change

    def attributes(self) -> list[AttributeRow]:
        edited = self.store.edited_by_participant()
        return [
            AttributeRow(id=a.id, text=a.text, reason=a.reason, confidence=a.confidence, origin=a.origin,
                         created_at=a.created_at, updated_at=a.updated_at, label=a.label,
                         evidence_count=len(a.evidence), edited=a.id in edited)
            for a in self.store.list_attributes()
        ]

    def get(self, attribute_id: str) -> Attribute | None:
        return self.store.get(attribute_id)

    def unlabeled(self) -> list[AttributeRow]:
        """Attributes the participant has not labeled yet, oldest first (for the study's review prompts)."""
        return [row for row in self.attributes() if row.label is None]

    def evidence(self, attribute_id: str) -> list[Message]:
        return self.store.evidence_messages(attribute_id)

    def label(self, attribute_id: str, label: str, *, source: str) -> str:
        """Store a label the participant gave in ``source`` (LABEL_SOURCES); returns labeled_at."""
        labeled_at = self.store.label(attribute_id, label, source=source)
        notify_change(self.on_change)
        return labeled_at

    def dismiss(self, attribute_id: str, *, source: str) -> str:
        """Record that the participant left this attribute for later in ``source``; returns the dismissal id."""
        dismissal_id = self.store.dismiss(attribute_id, source=source)
        notify_change(self.on_change)
        return dismissal_id

    def edit(self, attribute_id: str, text: str) -> Attribute:
        attribute = self.store.edit(attribute_id, text)
        notify_change(self.on_change)
        return attribute

    def forget(self, attribute_id: str) -> None:
        self.store.forget(attribute_id)
        notify_change(self.on_change)

    def add(self, text: str) -> Attribute:
        attribute = self.store.add_participant_attribute(text)
        notify_change(self.on_change)
        return attribute

    def history(self, attribute_id: str) -> list[AttributeEvent]:
        return self.store.events(attribute_id)
