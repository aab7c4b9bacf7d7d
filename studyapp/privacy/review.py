"""Review before upload: the service behind the "what will be sent" screen.

Lists what waits in the outbox (grouped by kind and day), shows each payload exactly as it will be
sent with what was found in it (``found``: each placeholder and, from the local mapping, the value it
stands for, so a miss is visible before upload), and lets the participant approve, withhold single
items or whole conversations, and add always-remove terms (here and at consent: ``save_terms``). The
outbox never holds raw text, so re-scrubbing applies the new terms to the anonymized payload text (that
is enough because terms are literal strings) and adds what they replaced to the payload's
``replaced_entities``.

What ``found`` returns holds the participant's own details: it is for their screen only, and is never
queued, exported or logged (privacy invariant 2).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlite_utils import Database

from studyapp.events import TEXT_FIELDS
from studyapp.privacy.anonymize import PLACEHOLDER, Anonymizer, placeholder_type
from studyapp.privacy.collect import apply_terms
from studyapp.store.db import database_file, open_database
from studyapp.store.outbox import OutboxEvent, OutboxStore
from studyapp.store.privacy import PrivacyStore
from studyapp.study.protocol import Protocol

# Not yet sent, so still in the participant's hands.
WAITING = ("pending", "approved")


@dataclass
class ReviewGroup:
    kind: str
    day: str
    items: list[OutboxEvent] = field(default_factory=list)

    @property
    def label(self) -> str:
        n = len(self.items)
        return f"{self.day} · {self.kind} · {n} item{'s' if n != 1 else ''}"


@dataclass(frozen=True)
class Found:
    """One placeholder in an item's text, how often it occurs there, and what it stands for on this computer.

    ``values`` are the mapping's keys (lower-cased, spaces collapsed: how the mapping stores them); empty when
    the mapping does not know the placeholder (a database from before the mapping, or text typed that way).
    """

    placeholder: str
    entity_type: str
    count: int
    values: tuple[str, ...]


@dataclass(frozen=True)
class TermsSaved:
    """What ``save_terms`` changed in the participant's always-remove terms."""

    added: tuple[str, ...] = ()
    already: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()


def split_terms(text: str) -> list[str]:
    """Terms typed on one line, separated by commas ("Jonas Becker, Acme GmbH"); blanks dropped."""
    terms = []
    for part in text.split(","):
        term = " ".join(part.split())
        if term and term not in terms:
            terms.append(term)
    return terms


def preview(event: OutboxEvent) -> str:
    """The payload exactly as it will be sent (pretty JSON)."""
    return json.dumps(event.payload, ensure_ascii=False, indent=2, sort_keys=True)


# The participant's answer to "should this have shaped the answer?" (relevance_status), in their words.
RELEVANCE_ANSWERS = {"yes": "Yes", "no": "No", "not_sure": "Not sure", "not_asked": "not asked"}


def _quoted(text: object) -> str:
    return f"“{' '.join(str(text).split())}”"


def summary(event: OutboxEvent, width: int = 60) -> str:
    """One line for a list: the first text field, else the kind's key fields."""
    for name in TEXT_FIELDS.get(event.kind, ()):
        text = event.payload.get(name)
        if isinstance(text, str) and text.strip():
            line = " ".join(text.split())
            return line if len(line) <= width else line[: width - 1] + "…"
    if event.kind == "consent":
        return f"consent {event.payload.get('action')}: {', '.join(event.payload.get('categories', []))}"
    if event.kind == "relevance_label":
        answer = RELEVANCE_ANSWERS.get(str(event.payload.get("relevance_status")), "–")
        return f"Should it have shaped the answer? {answer}"
    if event.kind == "question_answer":
        return f"{event.payload.get('question_id')}: {_short_answer(event.payload)}"
    for key in ("label", "rating", "human_relevant"):
        if key in event.payload:
            return f"{key}: {event.payload[key]}"
    return event.kind


# What became of a question of the study's, when there is no answer to show.
QUESTION_STATUS_TEXT = {"skipped": "You skipped this question.",
                        "unanswered": "Not answered (the app closed, or its time ran out, first)."}


def _short_answer(payload: dict[str, Any]) -> str:
    """A question's answer in a few words: the number, the option, yes/no, or what became of it."""
    if payload.get("status") != "answered":
        return str(payload.get("status"))
    if payload.get("question_type") == "yes_no":
        return {1: "Yes", 0: "No"}.get(payload.get("answer_number"), "–")  # type: ignore[arg-type]
    for name in ("answer_option", "answer_number", "answer_text"):
        if payload.get(name) is not None:
            return str(payload[name])
    return "–"


class ReviewService:
    def __init__(self, db: Database, protocol: Protocol, anonymizer: Anonymizer) -> None:
        self.db = db
        self.protocol = protocol
        self.anonymizer = anonymizer
        self.outbox = OutboxStore(db)
        # Read here, in the thread that owns ``db``: on_new_connection runs in a worker thread, where
        # touching ``db`` would be a cross-thread use of the connection.
        self._database_file = database_file(db)

    def database_file(self) -> str | None:
        """The database file behind this service (None for an in-memory database)."""
        return self._database_file

    def on_new_connection(self) -> ReviewService:
        """The same service on its own connection, for a worker thread (a connection is not shared across
        threads). The caller closes ``.db`` when done. Without a database file it returns itself."""
        path = self.database_file()
        if path is None:
            return self
        db = open_database(path)
        return ReviewService(db, self.protocol, Anonymizer(db, model_name=self.anonymizer.model_name,
                                                           ner=self.anonymizer.ner))

    @property
    def review_required(self) -> bool:
        return self.protocol.review_uploads

    def waiting(self) -> list[OutboxEvent]:
        """Everything not yet sent: pending review first, then approved, each oldest first."""
        return [e for status in WAITING for e in self.outbox.list(status=status, study_id=self.protocol.id)]

    def pending(self) -> list[OutboxEvent]:
        return self.outbox.list(status="pending", study_id=self.protocol.id)

    def groups(self, events: Iterable[OutboxEvent] | None = None) -> list[ReviewGroup]:
        """Waiting events grouped by day (newest first) and kind."""
        groups: dict[tuple[str, str], ReviewGroup] = {}
        for event in events if events is not None else self.waiting():
            key = (event.created_at[:10], event.kind)
            groups.setdefault(key, ReviewGroup(event.kind, key[0])).items.append(event)
        return [groups[k] for k in sorted(groups, key=lambda k: (k[0], k[1]), reverse=True)]

    def counts(self) -> dict[str, int]:
        return self.outbox.counts(self.protocol.id)

    # Decisions -------------------------------------------------------------------------------------

    def _own(self, event_ids: Iterable[str], statuses: tuple[str, ...]) -> list[str]:
        """Only this study's events in the given statuses (a sent or withheld item stays as it is)."""
        ids = []
        for event_id in event_ids:
            event = self.outbox.get(event_id)
            if event is not None and event.study_id == self.protocol.id and event.status in statuses:
                ids.append(event_id)
        return ids

    def approve(self, event_ids: Iterable[str]) -> int:
        # An event an upload is sending right now is not changed (the count says how many were).
        return self.outbox.approve(self._own(event_ids, ("pending",)))

    def approve_all(self) -> int:
        return self.approve([e.event_id for e in self.pending()])

    def withhold(self, event_ids: Iterable[str]) -> int:
        """Withheld items never leave the machine. Consent records are not withheld: the study must know
        what was agreed to (to share less, change categories instead)."""
        ids = [i for i in self._own(event_ids, WAITING) if self.outbox.get(i).kind != "consent"]  # type: ignore[union-attr]
        return self.outbox.set_status(ids, "withheld", "participant withheld it", unclaimed_only=True)

    def withhold_conversation(self, conversation_id: str) -> int:
        """Withhold every waiting item of a conversation (messages and comparisons made in it)."""
        ids = [e.event_id for e in self.waiting() if e.payload.get("conversation_id") == conversation_id]
        return self.withhold(ids)

    def add_term(self, term: str, *, rescrub: bool = True) -> int:
        """Always remove ``term`` from now on; with ``rescrub``, also from what is waiting. Returns items changed."""
        self.anonymizer.add_term(term)
        return self.rescrub() if rescrub else 0

    def rescrub(self) -> int:
        """Apply the participant's terms to the text of every queued payload; returns how many changed.

        Withheld items too: consent given again with earlier records included can bring them back. An item an
        upload is sending at this moment keeps the text it is being sent with (``in_flight`` counts them).
        """
        changed = 0
        for event in self.outbox.list(study_id=self.protocol.id):
            payload = self._rescrubbed(event)
            if payload != event.payload and self.outbox.update_payload(event.event_id, payload, unclaimed_only=True):
                changed += 1
        return changed

    def _rescrubbed(self, event: OutboxEvent) -> dict[str, Any]:
        """The event's payload with the terms applied to its text and counted in ``replaced_entities``."""
        return apply_terms(self.anonymizer, event.kind, event.payload)

    def save_terms(self, add: Iterable[str] = (), remove: Iterable[str] = ()) -> TermsSaved:
        """Store always-remove terms and stop removing others, without re-scrubbing (a quick write: the consent
        screen and ``studyapp consent`` store them before the decision, then ``rescrub()``, the slow part, runs
        in a worker). A term both removed and added stays. Text already scrubbed stays scrubbed."""
        removed = [t for t in dict.fromkeys(" ".join(r.split()) for r in remove) if self.anonymizer.remove_term(t)]
        added: list[str] = []
        already: list[str] = []
        for term in dict.fromkeys(" ".join(a.split()) for a in add):
            if not term:
                continue
            (added if self.anonymizer.add_term(term) else already).append(term)
        return TermsSaved(tuple(added), tuple(already), tuple(t for t in removed if t not in added))

    def found(self, event: OutboxEvent) -> list[Found]:
        """The placeholders in the event's text as it will be sent (first seen first), each with its count and the
        local value(s) it replaced. For the participant's screen only: never queued, exported or logged."""
        counts: dict[str, int] = {}
        for name in TEXT_FIELDS.get(event.kind, ()):
            text = event.payload.get(name)
            if isinstance(text, str):
                for match in PLACEHOLDER.finditer(text):
                    counts[match.group()] = counts.get(match.group(), 0) + 1
        if not counts:
            return []
        values: dict[str, list[str]] = {}
        for (_entity_type, value), placeholder in PrivacyStore(self.db).mapping().items():
            if placeholder in counts:
                values.setdefault(placeholder, []).append(value)
        return [Found(p, placeholder_type(p) or "", n, tuple(values.get(p, ()))) for p, n in counts.items()]

    def as_seen(self, event: OutboxEvent) -> str | None:
        """The item as the participant met it on screen, for the kinds whose payload is ids and codes (None for
        the others). Built from payloads (anonymized, as sent); only a relevance answer's attribute may come from
        the local memory when its text is not queued, and the text says it is not part of the item."""
        if event.kind == "comparison":
            return self._comparison_as_seen(event.payload)
        if event.kind == "relevance_label":
            return self._relevance_as_seen(event.payload)
        if event.kind == "question_answer":
            return self._question_as_seen(event.payload)
        return None

    def _question_as_seen(self, payload: dict[str, Any]) -> str:
        """The study's question as the participant read it (from the protocol) and their answer as it is sent."""
        # Only the wording it was asked in: a newer protocol may have reworded the question or changed its scale.
        question = next((q for q in self.protocol.questions if q.id == payload.get("question_id")
                         and q.version == payload.get("question_version")), None)
        version = payload.get("question_version")
        lines = [f"The study asked: {_quoted(question.text)}" if question is not None
                 else f"The study's question {payload.get('question_id')!r} (version {version})"]
        status = payload.get("status")
        if status != "answered":
            lines.append(QUESTION_STATUS_TEXT.get(str(status), f"Not answered ({status})."))
            return "\n".join(lines)
        number, qtype = payload.get("answer_number"), payload.get("question_type")
        if (qtype == "likert" and isinstance(number, int) and question is not None and question.points
                and 1 <= number <= question.points):
            labels = question.labels
            if len(labels) == question.points:
                answer = f"{number} of {question.points}, {_quoted(labels[number - 1])}"
            else:
                answer = f"{number} on a scale from 1 ({labels[0]}) to {question.points} ({labels[-1]})"
        elif qtype == "text":
            answer = _quoted(payload.get("answer_text") or "")
        else:
            answer = _short_answer(payload)
        lines.append(f"Your answer: {answer}")
        return "\n".join(lines)

    def _comparison_as_seen(self, payload: dict[str, Any]) -> str:
        right_personal = payload.get("personalized_side") == "right"
        generic, personal = payload.get("generic_response"), payload.get("personalized_response")
        lines = []
        if payload.get("prompt"):
            lines += ["Your request:", str(payload["prompt"]), ""]
        for number, text in ((1, personal if not right_personal else generic),
                             (2, generic if not right_personal else personal)):
            if text:
                lines += [f"Response {number}:", str(text), ""]
        labels = self.protocol.rating_scale.labels
        shown = payload.get("rating_shown")
        if isinstance(shown, int) and 1 <= shown <= len(labels):
            lines.append(f"Your rating: {labels[shown - 1]}")
        elif payload.get("skipped"):
            lines.append("You skipped the rating.")
        elif payload.get("state"):
            lines.append(f"Not rated ({payload['state']}).")
        if payload.get("comment"):
            lines.append(f"Your comment: {payload['comment']}")
        chosen = payload.get("chosen")
        if chosen in ("generic", "personalized"):
            number = 2 if (chosen == "personalized") == right_personal else 1
            lines.append(f"Response {number} continued the conversation.")
        return "\n".join(lines)

    def _relevance_as_seen(self, payload: dict[str, Any]) -> str:
        attribute_id = str(payload.get("attribute_id", ""))
        text, where = self._attribute_text(attribute_id)
        answer = RELEVANCE_ANSWERS.get(str(payload.get("relevance_status")),
                                       {True: "Yes", False: "No"}.get(payload.get("human_relevant"), "none"))
        lines = [f"About {_quoted(text)}" if text else "About an attribute no longer in your memory",
                 f"Should this have shaped the answer? Your answer: {answer}"]
        if payload.get("selected_by_model") is not None:
            lines.append(f"The assistant {'used' if payload['selected_by_model'] else 'did not use'} it for its "
                         "answer.")
        comparison = self.outbox.latest_with(self.protocol.id, "comparison", "comparison_id",
                                             str(payload.get("comparison_id", "")))
        if comparison is not None and comparison.payload.get("prompt"):
            lines.append(f"Your request: {_quoted(comparison.payload['prompt'])}")
        if where:
            lines.append(where)
        return "\n".join(lines)

    def _attribute_text(self, attribute_id: str) -> tuple[str | None, str]:
        """An attribute's text as queued for this study (anonymized), else from the local memory; and a note
        saying this item carries only the attribute's id."""
        for kind, field_name in (("attribute", "text"), ("attribute_label", "attribute_text")):
            queued = self.outbox.latest_with(self.protocol.id, kind, "attribute_id", attribute_id)
            if queued is not None and queued.payload.get(field_name):
                return str(queued.payload[field_name]), "(This item sends the attribute's id, not its text.)"
        from studyapp.store.memory import MemoryStore

        attribute = MemoryStore(self.db).get(attribute_id)
        if attribute is None:
            return None, ""
        return attribute.text, ("(The attribute's text is from your memory on this computer, shown only here: "
                                "this item sends its id, not its text.)")

    def in_flight(self) -> int:
        """Items an upload is sending right now: too late to change."""
        return self.outbox.claimed(self.protocol.id)
