"""What every storage backend of the server shares: its errors, the per-event result of an upload, and the sorting
of an uploaded batch into rows to store and events to refuse (no SQL here).

A backend looks up which of the batch's event ids are already stored (and by whom) and the participant's consented
categories, calls :func:`sort_batch`, stores ``Batch.rows`` in one transaction and counts ``Batch.rejected``.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from studyapp.events import EVENT_KINDS
from studyapp.server.validation import Rejected, checked_fields, show


class StorageError(RuntimeError):
    """The server database cannot be used; the message names the database and what to do."""


class NotInitialized(StorageError):
    pass


class StorageBusy(StorageError):
    """The server takes no more snapshots (exports) now; nothing was read or changed: retry after ``retry_after_s``."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


def no_study(where: object) -> NotInitialized:
    return NotInitialized(f"{where} holds no study yet. Run `studyapp-server init --protocol FILE --db {where}`.")


class ParticipantGone(Exception):
    """The participant withdrew while a request was in flight."""


class EventResult(NamedTuple):
    # A named tuple: one is made for every uploaded event, in half a frozen dataclass's time.
    event_id: str
    status: str  # accepted | duplicate | rejected
    reason: str | None = None


# The reason given for an event id another participant's record already holds.
TAKEN_ID = "this event_id is already used by another record; the app must give every event a new random id"


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


# ensure_ascii: untrusted text (even lone surrogates) always encodes, so storing never fails. One encoder for every
# call (json.dumps builds a new one for each): it encodes every stored payload. check_circular off: what it encodes
# comes from parsed JSON or the server's own lists, never a structure that holds itself.
_ENCODER = json.JSONEncoder(ensure_ascii=True, sort_keys=True, separators=(",", ":"), check_circular=False)


def dumps(value: Any) -> str:
    return _ENCODER.encode(value)


def kind_name(kind: str) -> str:
    # Rejection counts name only the contract's kinds: an unknown kind is untrusted text (its reason quotes it).
    return kind if kind in EVENT_KINDS else "(unknown)"


StudyTerms = tuple[set[str], dict[str, str]]


def study_terms(protocol_json: str) -> StudyTerms:
    """The study's categories and its consent documents (version -> sha256), from the stored protocol."""
    data = json.loads(protocol_json)
    documents = {str(d.get("version")): str(d.get("sha256")) for d in data.get("consent", [])}
    return set(data.get("categories", {})), documents


def check_consent(consent: dict[str, Any], terms: StudyTerms) -> None:
    """A consent record must name this study's categories and the exact text of one of its documents."""
    if consent["action"] == "withdraw":
        return  # a withdrawal is always accepted, whatever it names
    categories, documents = terms
    unknown = [c for c in consent["categories"] or [] if c not in categories]
    if unknown:
        raise Rejected(f"consent names categories this study does not ask for: {', '.join(unknown)}")
    version = consent["consent_version"]
    if version not in documents:
        raise Rejected(f"consent_version {show(version)} is not a consent document of this study "
                       f"(versions: {', '.join(documents) or 'none'})")
    if consent["consent_sha256"] != documents[version]:
        raise Rejected(f"consent_sha256 does not match the text of consent document version {version}")


def consented_categories(stored: str | None) -> set[str] | None:
    """The participant's consented categories from its stored JSON list; None before any consent record."""
    return set(json.loads(stored)) if stored is not None else None


def categories_after(consent: dict[str, Any]) -> list[str]:
    """What a consent record leaves consented: nothing after a withdrawal of consent."""
    return [] if consent["action"] == "withdraw" else list(consent["categories"] or [])


@dataclass
class Batch:
    results: list[EventResult] = field(default_factory=list)
    # (event_id, participant_id, kind, record_key, day, payload JSON, received_at), in upload order.
    rows: list[tuple[str, str, str, str, str | None, str, str]] = field(default_factory=list)
    # The batch's last accepted consent record (its payload), to store on the participant.
    consent: dict[str, Any] | None = None
    # Refused events by (kind, reason).
    rejected: Counter[tuple[str, str]] = field(default_factory=Counter)

    def reject(self, event_id: str, kind: str, reason: str) -> None:
        self.results.append(EventResult(event_id, "rejected", reason))
        self.rejected[kind_name(kind), reason] += 1

    def taken_meanwhile(self, inserted: set[str]) -> None:
        """Refuse the accepted events whose rows were not ``inserted``: another participant's upload took their
        ids between the backend's lookup and its insert."""
        kinds = {row[0]: row[2] for row in self.rows}
        self.rows = [row for row in self.rows if row[0] in inserted]
        results = []
        for result in self.results:
            if result.status == "accepted" and result.event_id not in inserted:
                result = EventResult(result.event_id, "rejected", TAKEN_ID)
                self.rejected[kind_name(kinds[result.event_id]), TAKEN_ID] += 1
            results.append(result)
        self.results = results


def sort_batch(participant_id: str, events: list[tuple[str, str, Any]], *, owners: dict[str, str],
               consented: set[str] | None, terms: Callable[[], StudyTerms], received_at: str) -> Batch:
    """Check each event of an upload: a duplicate (its id is stored for this participant), refused (with the
    reason) or a row to store. ``owners`` maps the batch's already stored event ids to their participant;
    ``terms`` is called only when the batch holds a consent record."""
    batch = Batch()
    owners = dict(owners)
    results = batch.results
    rows = batch.rows
    # One reading of the clock for the upload's times (none lies more than FUTURE_SKEW ahead of it).
    clock = datetime.now(UTC)
    for event_id, kind, payload in events:
        owner = owners.get(event_id)
        if owner is not None:
            if owner == participant_id:
                results.append(EventResult(event_id, "duplicate"))
            else:
                batch.reject(event_id, kind, TAKEN_ID)
            continue
        try:
            checked, record_key, day = checked_fields(event_id, kind, payload, clock)
            if kind == "consent":
                check_consent(checked, terms())
            category = EVENT_KINDS[kind][0]
            if category is not None and (consented is None or category not in consented):
                raise Rejected(f"category '{category}' is not consented by this participant "
                               "(no consent record for it has been received)")
        except Rejected as exc:
            batch.reject(event_id, kind, str(exc))
            continue
        if kind == "consent":
            batch.consent = checked
            consented = set(categories_after(checked))
        owners[event_id] = participant_id
        rows.append((event_id, participant_id, kind, record_key, day, dumps(checked), received_at))
        results.append(EventResult(event_id, "accepted"))
    return batch
