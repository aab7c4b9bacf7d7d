"""Consent: what the participant agreed to, recorded as append-only events.

Every decision (grant, change of categories, withdrawal) is one row in ``consent_events`` with the
document version and the sha256 of the exact text shown, so a later edit of the consent text never
makes an old record look as if it agreed to the new one. ``current()`` replays the log to find the
consent in force. Records count for a category only from the moment it was granted, unless the
participant chose to include earlier ones (``include_earlier``).

Consequences for data already queued are applied here, in the same step as the decision:
a category given up (or a withdrawal) takes its events out of the upload queue at once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlite_utils import Database

from studyapp.events import CATEGORIES
from studyapp.privacy.records import consent_payload
from studyapp.store.consent import ConsentStore
from studyapp.store.outbox import OutboxStore
from studyapp.store.util import atomic
from studyapp.study.protocol import ConsentDocument, Protocol

# The outbox category of consent records (always sent; no participant category governs them).
CONSENT_CATEGORY = "consent"
# Outbox reasons set when consent (not the participant's review) takes an event out of the queue.
CONSENT_WITHHELD_PREFIX = "consent: "
# "since" value meaning: records of any age count (the participant chose include_earlier).
BEGINNING = ""


class ConsentError(ValueError):
    """A consent decision that cannot be recorded; the message says what to change."""


@dataclass(frozen=True)
class ConsentRecord:
    """One row of the consent log."""

    id: str
    study_id: str
    document_version: str
    document_sha256: str
    categories: tuple[str, ...]
    action: str
    created_at: str
    include_earlier: tuple[str, ...] = ()


@dataclass(frozen=True)
class Consent:
    """The consent in force for a study."""

    study_id: str
    version: str
    sha256: str
    categories: frozenset[str]
    granted_at: str
    # category -> ISO time from which its records count (BEGINNING: records of any age)
    since: dict[str, str] = field(default_factory=dict)

    def allows(self, category: str | None) -> bool:
        return category is None or category in self.categories


def _record(row: dict[str, Any]) -> ConsentRecord:
    return ConsentRecord(
        id=row["id"], study_id=row["study_id"], document_version=row["document_version"],
        document_sha256=row["document_sha256"], categories=tuple(row["categories"]), action=row["action"],
        created_at=row["created_at"], include_earlier=tuple(row.get("include_earlier") or ()),
    )


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class ConsentService:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.store = ConsentStore(db)
        self.outbox = OutboxStore(db)

    # Reading ---------------------------------------------------------------------------------------

    def history(self, study_id: str) -> list[ConsentRecord]:
        return [_record(r) for r in self.store.events(study_id)]

    def current(self, study_id: str) -> Consent | None:
        """The consent in force, or None (never consented, or withdrawn)."""
        consent: Consent | None = None
        for rec in self.history(study_id):
            if rec.action == "withdraw":
                consent = None
                continue
            before = consent.since if consent else {}
            since = {c: before[c] for c in rec.categories if c in before}
            for c in rec.categories:
                if c in rec.include_earlier:
                    since[c] = BEGINNING
                elif c not in since:
                    since[c] = rec.created_at
            consent = Consent(rec.study_id, rec.document_version, rec.document_sha256,
                              frozenset(rec.categories), rec.created_at, since)
        return consent

    def withdrawn(self, study_id: str) -> bool:
        history = self.history(study_id)
        return bool(history) and history[-1].action == "withdraw"

    def needs_reconsent(self, protocol: Protocol) -> bool:
        """True when consent is in force but for another consent document (version or text changed)."""
        consent = self.current(protocol.id)
        if consent is None:
            return False
        doc = protocol.current_consent
        return consent.version != doc.version or consent.sha256 != doc.sha256

    def needs_consent(self, protocol: Protocol) -> bool:
        """True when the participant must be asked (never asked, or the document changed); False after withdrawal."""
        if self.withdrawn(protocol.id):
            return False
        return self.current(protocol.id) is None or self.needs_reconsent(protocol)

    # Deciding --------------------------------------------------------------------------------------

    def check_choice(self, protocol: Protocol, categories: Iterable[str]) -> list[str]:
        """The chosen categories, sorted, or ConsentError saying what to change; records nothing. Lets a caller
        store what goes with the decision (always-remove terms) only once the decision can be recorded."""
        return self._validate(protocol, categories)

    def grant(self, protocol: Protocol, categories: Iterable[str], *, shown_text: str | None = None,
              include_earlier: bool | Iterable[str] = False) -> ConsentRecord:
        """Record the participant's agreement to the study's current consent document.

        ``shown_text`` is the text the participant actually read (its sha256 is checked against the
        document, so a record can only agree to a text that was shown); ``categories`` must include every
        required category. Also used to agree to a new consent document after a protocol update.
        """
        document = protocol.current_consent
        if shown_text is not None and text_sha256(shown_text) != document.sha256:
            raise ConsentError(
                f"The consent text shown is not the text of consent document version {document.version} "
                "of the study: show the study's current consent document and ask again.")
        chosen = self._validate(protocol, categories)
        return self._decide(protocol, document, chosen, "grant", include_earlier)

    def change_categories(self, protocol: Protocol, categories: Iterable[str], *,
                          include_earlier: bool | Iterable[str] = False) -> ConsentRecord:
        """Grant or give up optional categories, under the consent document in force."""
        consent = self.current(protocol.id)
        if consent is None:
            raise ConsentError(f"There is no consent in force for study {protocol.id!r}: "
                               "agree to the consent document first.")
        if self.needs_reconsent(protocol):
            raise ConsentError(f"Study {protocol.id!r} has a new consent document "
                               f"(version {protocol.current_consent.version}): read and agree to it first.")
        chosen = self._validate(protocol, categories)
        return self._decide(protocol, protocol.current_consent, chosen, "update", include_earlier)

    def withdraw(self, study_id: str) -> ConsentRecord:
        """Withdraw from the study: nothing more is collected and the upload queue is emptied at once.

        The server is told by the sync's deletion request, not by a queued event (the queue is emptied).
        """
        consent = self.current(study_id)
        history = self.history(study_id)
        last = history[-1] if history else None
        self.outbox.clear(study_id)
        row = self.store.append(
            study_id=study_id,
            document_version=consent.version if consent else (last.document_version if last else ""),
            document_sha256=consent.sha256 if consent else (last.document_sha256 if last else ""),
            categories=[], action="withdraw")
        return _record(row)

    # Internals -------------------------------------------------------------------------------------

    def _validate(self, protocol: Protocol, categories: Iterable[str]) -> list[str]:
        chosen = sorted(set(categories))
        unknown = [c for c in chosen if c not in protocol.categories]
        if unknown:
            asked = ", ".join(protocol.categories) or "(none)"
            known = [c for c in unknown if c in CATEGORIES]
            why = " (a data category this study does not ask for)" if known else ""
            raise ConsentError(f"Unknown category {', '.join(unknown)}{why}; study {protocol.id!r} asks for: {asked}.")
        missing = [c for c in protocol.required_categories if c not in chosen]
        if missing:
            raise ConsentError(
                f"Study {protocol.id!r} requires {', '.join(missing)} to take part: accept "
                f"{'it' if len(missing) == 1 else 'them'}, or decline to join the study.")
        return chosen

    def _decide(self, protocol: Protocol, document: ConsentDocument, chosen: list[str], action: str,
                include_earlier: bool | Iterable[str]) -> ConsentRecord:
        before = self.current(protocol.id)
        earlier = list(chosen if include_earlier is True else [] if include_earlier is False else include_earlier)
        stray = [c for c in earlier if c not in chosen]
        if stray:
            raise ConsentError(f"include_earlier names {', '.join(stray)}, which is not among the granted "
                               "categories: grant it too, or leave it out.")
        # The decision, what it does to waiting events, and its record for the study: all or nothing.
        with atomic(self.db):
            row = self.store.append(study_id=protocol.id, document_version=document.version,
                                    document_sha256=document.sha256, categories=chosen, action=action,
                                    include_earlier=earlier)
            record = _record(row)
            dropped = sorted((before.categories if before else frozenset()) - set(chosen))
            self._withhold_categories(protocol.id, dropped)
            self._restore_categories(protocol, earlier)
            self._queue(record)
        return record

    def _queue(self, record: ConsentRecord) -> str:
        """Queue a consent decision: no text, no category to check, always sent (the study must know it).

        The consent event's own id is the event id, so queueing it twice is harmless.
        """
        if self.outbox.get(record.id) is not None:
            return record.id
        payload = consent_payload(version=record.document_version, sha256=record.document_sha256,
                                  categories=record.categories, action=record.action, created_at=record.created_at)
        return self.outbox.add(study_id=record.study_id, kind="consent", category=CONSENT_CATEGORY, payload=payload,
                               consent_version=record.document_version, approved=True, event_id=record.id)

    def _withhold_categories(self, study_id: str, categories: list[str]) -> None:
        """Events of a category given up never leave: they are withheld, with the reason."""
        for category in categories:
            ids = [e.event_id for status in ("pending", "approved")
                   for e in self.outbox.list(status=status, study_id=study_id) if e.category == category]
            self.outbox.set_status(ids, "withheld", f"{CONSENT_WITHHELD_PREFIX}{category} no longer granted")

    def _restore_categories(self, protocol: Protocol, categories: list[str]) -> None:
        """include_earlier: events withheld only because consent lapsed come back (to review if the study asks)."""
        status = "pending" if protocol.review_uploads else "approved"
        for category in categories:
            ids = [e.event_id for e in self.outbox.list(status="withheld", study_id=protocol.id)
                   if e.category == category and (e.reason or "").startswith(CONSENT_WITHHELD_PREFIX)]
            self.outbox.set_status(ids, status)
