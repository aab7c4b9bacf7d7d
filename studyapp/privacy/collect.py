"""The gate every collected record goes through on its way to the outbox (and the only way in).

``Collector.collect(kind, payload)`` checks, in order: the record is well formed (known kind, its
fields and no others, so nothing unexpected can ride along); the participant consented to its
category under the study's current consent document, and the record is not older than that grant
(unless they chose to include earlier records); the anonymizer is good enough for the study (NER,
when the study requires it). Then every free-text field is anonymized, the record notes which entity
types were replaced in it and how often (``replaced_entities``; never the values), and the event is queued
with the consent version in force, waiting for review when the study asks for it.

A record that may not be collected is not queued: ``collect`` returns None and ``last_skip`` says
why. It stays in the participant's own database; nothing is lost, it just never leaves.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlite_utils import Database

from studyapp.contract import ContractError, check_fields
from studyapp.events import EVENT_KINDS, REPLACED_FIELD, TEXT_FIELDS
from studyapp.privacy.anonymize import add_counts
from studyapp.store.outbox import OutboxStore
from studyapp.store.util import atomic
from studyapp.study.protocol import Protocol

if TYPE_CHECKING:
    from studyapp.privacy.anonymize import Anonymizer
    from studyapp.privacy.consent import Consent, ConsentService

log = logging.getLogger(__name__)

# Which payload field tells when a record was made (for "a later grant does not pull older records in").
RECORD_TIME_FIELD = {"attribute": "updated_at", "attribute_label": "labeled_at", "schedule_decision": "decided_at",
                     "label_dismissal": "dismissed_at", "selection": "decided_at", "turn_selection": "decided_at",
                     "memory_view": "opened_at", "question_answer": "asked_at"}
# Fields that carry another category's data: sent only where that category is consented too (and the record is
# not older than its grant), else dropped. A label's snapshot of the attribute text is the attribute itself.
FIELD_CATEGORIES: dict[str, dict[str, str]] = {"attribute_label": {"attribute_text": "attributes"}}


# Event ids of collected records are derived (uuid5) from the record's own random ids and version, so
# offering the same record twice (live, then again in an include-earlier backfill) yields the same
# event: queued once here, stored once by the server. Nothing about the participant goes into them.
EVENT_ID_NAMESPACE = uuid.UUID("6f1c2a8e-3d4b-4f5a-9b7c-2e1d0a9f8c7b")
RECORD_KEY_FIELDS: dict[str, tuple[str, ...]] = {
    "message": ("message_id",),
    "attribute": ("attribute_id", "updated_at", "status"),
    "attribute_label": ("attribute_id", "labeled_at"),
    "comparison": ("comparison_id", "rated_at", "skipped"),
    "relevance_label": ("comparison_id", "attribute_id"),
    # Both orders of a pair, and every re-run, are records of their own.
    "judge_verdict": ("comparison_id", "judge_model", "personalized_side", "verdict_id"),
    "schedule_decision": ("decision_id",),
    "label_dismissal": ("dismissal_id",),
    "selection": ("selection_id",),
    "turn_selection": ("selection_id",),
    "memory_view": ("view_id",),
    "question_answer": ("answer_id",),
}


def event_id_for(kind: str, payload: dict[str, Any]) -> str:
    """The event id of a record: the same record always gets the same id; a random one if it has no key."""
    fields = RECORD_KEY_FIELDS.get(kind)
    if not fields or any(payload.get(f) in (None, "") for f in fields[:1]):
        return str(uuid.uuid4())
    key = "\x1f".join([kind, *(str(payload.get(f)) for f in fields)])
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, key))


class CollectError(ValueError):
    """A malformed record (a programming error in the caller); the message names the field."""


class AnonymizationFailed(RuntimeError):
    """The anonymizer failed on a batch: nothing of it was queued, and the records stay where they are."""


@dataclass(frozen=True)
class PreparedEvent:
    """A record that passed the gate (consent, anonymization), ready for the outbox."""

    event_id: str
    kind: str
    category: str
    payload: dict[str, Any]
    consent_version: str | None
    approved: bool


@dataclass(frozen=True)
class CollectorStatus:
    can_queue: bool
    message: str


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def apply_terms(anonymizer: Anonymizer, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    """``payload`` with the participant's current always-remove terms applied to its text fields, what they
    replaced added to its ``replaced_entities``. Terms are literal strings, so this works on text that is already
    anonymized, and applying them again finds nothing more (placeholders are never matched)."""
    payload = dict(payload)
    for name in TEXT_FIELDS.get(kind, ()):
        if not isinstance(payload.get(name), str):
            continue
        result = anonymizer.apply_terms_counted(payload[name])
        payload[name] = result.text
        # The counts of the first anonymization stay and this step's are added. A payload queued without counts
        # (by an earlier version) stays so: its earlier replacements are unknown, and counting only the terms
        # would read as complete.
        if REPLACED_FIELD in payload:
            payload[REPLACED_FIELD] = add_counts(payload[REPLACED_FIELD], result.replaced)
    return payload


def check_payload(kind: str, payload: dict[str, Any]) -> None:
    """Raise CollectError unless ``payload`` has exactly the fields studyapp.events allows for ``kind``, each
    holding a value the contract allows (studyapp.contract; times with their UTC offset), so a record the
    server would refuse never leaves the machine."""
    if kind not in EVENT_KINDS:
        raise CollectError(f"Unknown event kind {kind!r}: use one of {', '.join(EVENT_KINDS)}.")
    _, required, optional = EVENT_KINDS[kind]
    missing = [f for f in required if f not in payload]
    if missing:
        raise CollectError(f"A {kind!r} event needs {', '.join(missing)} (see studyapp.events.EVENT_KINDS).")
    extra = sorted(set(payload) - set(required) - set(optional))
    if extra:
        # Unlisted fields would bypass anonymization, so they are refused rather than passed on.
        raise CollectError(f"A {kind!r} event has unknown fields {', '.join(extra)}: only the fields listed in "
                           "studyapp.events.EVENT_KINDS may be collected.")
    try:
        check_fields(kind, payload, require_offset=True)
    except ContractError as exc:
        raise CollectError(f"A {kind!r} event holds a value the study cannot take: {exc}") from None


class Collector:
    def __init__(self, db: Database, protocol: Protocol, anonymizer: Anonymizer, consent: ConsentService) -> None:
        self.db = db
        self.protocol = protocol
        self.anonymizer = anonymizer
        self.consent = consent
        self.outbox = OutboxStore(db)
        self.last_skip: str | None = None

    def status(self, *, check_ner: bool = True) -> CollectorStatus:
        """Whether anything can be queued now, and if not, what the participant can do about it.

        ``check_ner=False`` skips the one check that loads the anonymizer (``studyapp doctor`` without --full).
        """
        study = self.protocol.id
        if self.consent.withdrawn(study):
            return CollectorStatus(False, f"You withdrew from study {study!r}: nothing is collected.")
        current = self.consent.current(study)
        if current is None:
            return CollectorStatus(False, f"Nothing is collected until you agree to the consent of study {study!r}.")
        if self.consent.needs_reconsent(self.protocol):
            return CollectorStatus(False, f"Study {study!r} has a new consent document "
                                          f"(version {self.protocol.current_consent.version}): nothing more is "
                                          "collected until you read and agree to it.")
        if check_ner and self.protocol.require_ner and not self.anonymizer.ner_available:
            return CollectorStatus(False, "Nothing is queued: this study requires name recognition (NER) and it "
                                          f"is not available. {self.anonymizer.status_message}")
        return CollectorStatus(True, f"Collecting {', '.join(sorted(current.categories)) or 'only consent records'}"
                                     f" under consent version {current.version}.")

    def _skip(self, reason: str) -> None:
        self.last_skip = reason
        log.info("not collected: %s", reason)

    def _admit(self, kind: str, payload: dict[str, Any], status: CollectorStatus,
               current: Consent | None) -> str | None:
        """The consent version to record if the record may be collected, else None (with last_skip set)."""
        category = EVENT_KINDS[kind][0]
        if not status.can_queue or current is None:
            self._skip(status.message)
            return None
        if category not in current.categories:
            self._skip(f"{kind}: category {category!r} is not consented")
            return None
        since = _parse_time(current.since.get(category))
        made = _parse_time(payload.get(RECORD_TIME_FIELD.get(kind, "created_at")))
        if since is not None and made is not None and made < since:
            self._skip(f"{kind}: made before {category!r} was granted, and earlier records were not included")
            return None
        return current.version

    @staticmethod
    def _drop_unconsented_fields(kind: str, payload: dict[str, Any], current: Consent) -> None:
        for name, category in FIELD_CATEGORIES.get(kind, {}).items():
            if name not in payload:
                continue
            since = _parse_time(current.since.get(category))
            made = _parse_time(payload.get(RECORD_TIME_FIELD.get(kind, "created_at")))
            if category not in current.categories or (since is not None and made is not None and made < since):
                payload[name] = None

    def collect(self, kind: str, payload: dict[str, Any], *, event_id: str | None = None) -> str | None:
        """Anonymize and queue one record if consent allows it; returns its event id, or None if not queued."""
        return self.collect_many([(kind, payload)], event_ids=[event_id])[0]

    def collect_many(self, records: Iterable[tuple[str, dict[str, Any]]], *,
                     event_ids: Iterable[str | None] | None = None) -> list[str | None]:
        """``collect`` for many records, anonymizing their texts in one batch (e.g. include-earlier backfill)."""
        records = list(records)
        try:
            prepared = self.prepare(records, event_ids=event_ids)
        except AnonymizationFailed:
            return [None] * len(records)  # last_skip says why; the records stay in the participant's database
        with atomic(self.db):
            return self.queue(prepared)

    def prepare(self, records: Iterable[tuple[str, dict[str, Any]]], *,
                event_ids: Iterable[str | None] | None = None) -> list[PreparedEvent | None]:
        """The gate without the queueing: consent checked, free text anonymized; None for a record refused.

        Anonymizing can take a while, so it happens here, outside any transaction; ``queue`` then writes the
        outbox in one short one (which the record pump shares with removing the records from its intake).
        Raises if anonymization fails: nothing unscrubbed may be queued, and the caller keeps the records.
        """
        records = list(records)
        ids = list(event_ids) if event_ids is not None else [None] * len(records)
        self.last_skip = None
        results: list[PreparedEvent | None] = [None] * len(records)
        admitted: list[tuple[int, str, dict[str, Any], str]] = []
        for kind, payload in records:
            check_payload(kind, payload)
            if kind == "consent":
                # One path for consent records: the consent log queues them with the decision itself.
                raise CollectError("consent records are queued by ConsentService with the decision, not by the gate")
        # Consent is read once per batch: a decision cannot change in the middle of it.
        status = self.status()
        current = self.consent.current(self.protocol.id)
        for i, (kind, payload) in enumerate(records):
            version = self._admit(kind, payload, status, current)
            if version is not None and current is not None:
                payload = dict(payload)
                self._drop_unconsented_fields(kind, payload, current)
                admitted.append((i, kind, payload, version))
        if not admitted:
            return results
        # Every free-text field of every admitted record, anonymized together.
        slots = [(n, f) for n, (_, kind, payload, _) in enumerate(admitted)
                 for f in TEXT_FIELDS.get(kind, ()) if isinstance(payload.get(f), str)]
        try:
            scrubbed = self.anonymizer.anonymize_batch_counted([admitted[n][2][f] for n, f in slots])
        except Exception as exc:  # never queue raw text: on any failure nothing is queued
            log.exception("anonymization failed")
            self._skip(f"anonymization failed ({exc}); nothing was queued")
            raise AnonymizationFailed(str(exc)) from exc
        for _, kind, payload, _ in admitted:
            if kind in TEXT_FIELDS:
                # Set even when nothing is replaced: {} says "checked, nothing replaced", unlike an older app's
                # record without the field.
                payload[REPLACED_FIELD] = {}
        for (n, f), result in zip(slots, scrubbed, strict=True):
            payload = admitted[n][2]
            payload[f] = result.text
            payload[REPLACED_FIELD] = add_counts(payload[REPLACED_FIELD], result.replaced)
        approved = not self.protocol.review_uploads
        for i, kind, payload, version in admitted:
            category = EVENT_KINDS[kind][0]
            assert category is not None
            results[i] = PreparedEvent(ids[i] or event_id_for(kind, payload), kind, category, payload, version,
                                       approved)
        return results

    def queue(self, prepared: Iterable[PreparedEvent | None]) -> list[str | None]:
        """Write prepared events to the outbox (inside the caller's ``atomic``, else in one of its own); returns
        their event ids (None: refused).

        The text was anonymized earlier, outside any transaction, with the terms of that moment. A term added
        since, and the re-scrub of the outbox it starts, may both have run before this insert, so the re-scrub
        never saw the new event: the terms are therefore read and applied again here, in the write transaction
        that inserts (adding a term is a write too, so it lands either before this read or after the insert,
        where the re-scrub finds the event). They are applied always rather than when they changed: a term
        removed and added again in between would look unchanged, and applying terms is a quick literal match.
        """
        results: list[str | None] = []
        with atomic(self.db):
            for event in prepared:
                if event is None:
                    results.append(None)
                elif self.outbox.get(event.event_id) is not None:
                    results.append(event.event_id)  # already queued (offered twice): kept as it is, with its review
                else:
                    payload = apply_terms(self.anonymizer, event.kind, event.payload)
                    results.append(self.outbox.add(
                        study_id=self.protocol.id, kind=event.kind, category=event.category, payload=payload,
                        consent_version=event.consent_version, approved=event.approved, event_id=event.event_id))
        return results
