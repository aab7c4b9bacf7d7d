"""Stage 1: read the participant's new messages and propose attributes, then reconcile them into memory.

Only **user** turns are read, only from conversations with memory on, and each at most once
(``messages.extracted_at``; runs claim their messages first, so concurrent runs never share one).
The model sees the messages numbered [1], [2], ... and cites those numbers as evidence; the numbers are
mapped back to real message ids here, and numbers that were not shown are dropped. Proposals below the
confidence threshold (default 0.4) are not stored.

Outcomes of ``Extractor.run``: ``ok`` (memory reconciled, run recorded), ``failed`` (the model's answer was
unusable after one repair: recorded as a failed extraction run with its raw text, memory untouched, the
messages count as read), ``unavailable`` (the model could not be reached: nothing recorded, the messages
stay pending for a later run), ``idle`` (nothing to read). Scheduling (debounce, background worker) is the
caller's; ``run`` never raises for model problems.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from studyapp.domain import AttributeEvent, ExtractionRun, Message
from studyapp.llm.base import ChatMessage, ChatModel, ChatParams
from studyapp.personalize.memory import Proposal, ReconcileOutcome, Reconciler, near_duplicate, normalize
from studyapp.personalize.structured import StructuredResult, complete_structured
from studyapp.personalize.templates import load_template
from studyapp.store.memory import MemoryStore
from studyapp.store.util import new_id, now

EXTRACT_TEMPLATE = "extract"
DEFAULT_THRESHOLD = 0.4
# Bounds one run's prompt: with the embedded model's 2048-token context, prompt + answer (max_tokens 640)
# must fit; the rest waits for the next run.
MAX_BATCH_CHARS = 2000
MAX_BATCH_MESSAGES = 20
MAX_MESSAGE_CHARS = 800

EXTRACT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "attributes": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "statement": {"type": "string"},
                    "reason": {"type": "string"},
                    "confidence": {"type": "number", "minimum": 0, "maximum": 1},
                    "evidence": {"type": "array", "items": {"type": "integer"}},
                },
                "required": ["statement", "reason", "confidence", "evidence"],
            },
        }
    },
    "required": ["attributes"],
}


@dataclass
class Dropped:
    statement: str
    why: str


@dataclass
class Proposals:
    """What the model proposed for a batch, already mapped to real ids and filtered."""

    structured: StructuredResult
    kept: list[Proposal] = field(default_factory=list)
    dropped: list[Dropped] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.structured.ok


@dataclass
class ExtractionResult:
    status: str  # ok | failed | unavailable | idle
    run_id: str | None = None
    message_ids: list[str] = field(default_factory=list)
    proposals: list[Proposal] = field(default_factory=list)
    dropped: list[Dropped] = field(default_factory=list)
    events: list[AttributeEvent] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None


_EXAMPLE = re.compile(r'"statement":\s*"([^"]+)"')


def _content_words(text: str) -> set[str]:
    return {w for w in normalize(text).split() if len(w) >= 4}


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 1] + "…"


class Extractor:
    def __init__(
        self,
        model: ChatModel,
        store: MemoryStore | None = None,
        *,
        threshold: float = DEFAULT_THRESHOLD,
        params: ChatParams | None = None,
        reconciler: Reconciler | None = None,
    ) -> None:
        self.model = model
        self.store = store
        self.threshold = threshold
        self.params = params or ChatParams(temperature=0.0, max_tokens=640)
        self.template = load_template(EXTRACT_TEMPLATE)
        # Small models copy the prompt's example answer; such a copy is kept only if the messages say so too.
        self.examples = _EXAMPLE.findall(self.template.text)
        self.reconciler = reconciler or (Reconciler(model, store) if store is not None else None)
        # Runs of one extractor take turns, so two reconciliations never plan against the same memory.
        self._lock = asyncio.Lock()

    # Pure stage: messages in, proposals out --------------------------------------------------

    def build_messages(self, messages: Sequence[Message]) -> list[ChatMessage]:
        numbered = "\n".join(f"[{i}] {_clip(m.content)}" for i, m in enumerate(messages, start=1))
        return [
            {"role": "system", "content": self.template.text},
            {"role": "user", "content": f"Messages from the user:\n{numbered}"},
        ]

    async def propose(self, messages: Sequence[Message]) -> Proposals:
        """Ask the model about these user messages; map evidence numbers to ids; apply the threshold."""
        structured = await complete_structured(self.model, self.build_messages(messages), EXTRACT_SCHEMA,
                                               self.params)
        result = Proposals(structured)
        if not structured.ok:
            return result
        refs = {i: m.id for i, m in enumerate(messages, start=1)}
        by_id = {m.id: m.content for m in messages}
        for item in structured.value["attributes"]:
            statement = " ".join(str(item["statement"]).split())
            if not statement:
                result.dropped.append(Dropped(statement, "empty statement"))
                continue
            confidence = float(item["confidence"])
            evidence = list(dict.fromkeys(refs[r] for r in item["evidence"] if r in refs))
            if confidence < self.threshold:
                result.dropped.append(Dropped(statement, f"confidence {confidence:.2f} below {self.threshold}"))
            elif not evidence:
                result.dropped.append(Dropped(statement, "no evidence among the messages shown"))
            elif self._copied_example(statement, [by_id[i] for i in evidence]):
                result.dropped.append(Dropped(statement, "copied from the prompt's example, not the messages"))
            else:
                result.kept.append(Proposal(statement, " ".join(str(item["reason"]).split()), confidence,
                                            evidence))
        return result

    def _copied_example(self, statement: str, evidence_texts: Sequence[str]) -> bool:
        if not any(near_duplicate(statement, example) for example in self.examples):
            return False
        said = set().union(*(_content_words(t) for t in evidence_texts)) if evidence_texts else set()
        return not (_content_words(statement) & said)

    # With the participant's database ------------------------------------------------------

    async def run(self, target: str | Sequence[Message] | None = None) -> ExtractionResult:
        """Extract from one batch of pending user messages: of one conversation (its id), of the given
        messages (those still pending among them), or of all conversations (None)."""
        if self.store is None or self.reconciler is None:
            raise RuntimeError("Extractor.run needs a MemoryStore; use propose() for messages without one.")
        async with self._lock:
            return await self._run(self.store, self.reconciler, target)

    async def run_pending(self, target: str | Sequence[Message] | None = None, *,
                          max_runs: int = 10) -> list[ExtractionResult]:
        """Run until nothing is pending (or the model is unavailable, or ``max_runs``)."""
        results = []
        for _ in range(max_runs):
            result = await self.run(target)
            results.append(result)
            if result.status in ("idle", "unavailable"):
                break
        return results

    async def _run(self, store: MemoryStore, reconciler: Reconciler,
                   target: str | Sequence[Message] | None) -> ExtractionResult:
        if target is None or isinstance(target, str):
            pending = store.pending_user_messages(target, limit=MAX_BATCH_MESSAGES)
        else:
            pending = store.pending_user_messages(limit=MAX_BATCH_MESSAGES, message_ids=[m.id for m in target])
        batch: list[Message] = []
        size = 0
        for message in pending:
            size += min(len(message.content), MAX_MESSAGE_CHARS)
            if batch and size > MAX_BATCH_CHARS:
                break
            batch.append(message)
        run_id = new_id()
        claim, claimed = store.claim([m.id for m in batch], run_id)
        messages = [m for m in batch if m.id in set(claimed)]
        if not messages:
            return ExtractionResult(status="idle")
        ids = [m.id for m in messages]
        try:
            proposals = await self.propose(messages)
        except BaseException:
            store.release_claim(claim)  # cancelled (the app is closing): read them next time
            raise
        structured = proposals.structured
        run = ExtractionRun(id=run_id, status="ok", model=self.model.name, template=self.template.ref,
                            message_ids=ids, raw=structured.raw or None, error=None, created_at=now())
        if structured.unavailable:
            store.release_claim(claim)
            return ExtractionResult(status="unavailable", message_ids=ids, error=structured.error)
        if not structured.ok:
            run.status, run.error = "failed", structured.error
            store.record_failed_run(run, finish_claim=claim)
            return ExtractionResult(status="failed", run_id=run_id, message_ids=ids, error=structured.error)
        try:
            outcome: ReconcileOutcome = await reconciler.reconcile(proposals.kept, run=run, finish_claim=claim)
        except BaseException:
            store.release_claim(claim)
            raise
        plan = outcome.plan
        if plan.structured is not None and plan.structured.unavailable:
            store.release_claim(claim)
            return ExtractionResult(status="unavailable", message_ids=ids, proposals=proposals.kept,
                                    error=plan.structured.error)
        return ExtractionResult(
            status=run.status, run_id=run_id, message_ids=ids, proposals=proposals.kept,
            dropped=proposals.dropped, events=outcome.events, notes=plan.notes, error=run.error,
        )
