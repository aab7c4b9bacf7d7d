"""An always-remove term added while a record is on its way through the gate still reaches that record.

The record pump anonymizes outside any transaction and inserts afterwards; an upload claims what it sends, and
the re-scrub a new term starts leaves claimed events alone. Each test pauses one side at the exact point of the
race (an injected hook on the anonymizer, with events as barriers), lets the participant add the term from
another connection, then lets it go on; the database and the collection server are real.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from studyapp.events import REPLACED_FIELD
from studyapp.privacy.anonymize import Anonymized, Anonymizer
from studyapp.privacy.consent import ConsentService
from studyapp.privacy.pump import RecordPump
from studyapp.privacy.review import ReviewService
from studyapp.privacy.services import PrivacyServices
from studyapp.store.conversations import ConversationStore
from studyapp.store.db import open_database
from studyapp.store.outbox import OutboxStore
from studyapp.study.current import current_study
from studyapp.study.protocol import Protocol
from studyapp.sync.client import run_sync
from studyapp.sync.enroll import enroll
from tests.server import live as f
from tests.server.live import LiveServer, live, sqlite_server_db  # noqa: F401
from tests.support.keyring import MemoryKeyring, memory_keyring  # noqa: F401
from tests.sync.helpers import enroll_and_consent, queue

# Not a name any recognizer knows: only the participant's term can remove it.
TERM = "Brightwave"
WAIT_S = 60  # a bound on a broken test, not a synchronisation


class Barrier:
    """One side of the race stops at ``reached`` until the other side sets ``go``."""

    def __init__(self) -> None:
        self.reached = threading.Event()
        self.go = threading.Event()

    def pause(self) -> None:
        if not self.reached.is_set():
            self.reached.set()
            assert self.go.wait(WAIT_S), "the test never let the paused side go on"


class PausedAfterScrubbing(Anonymizer):
    """The pump's anonymizer: stops once its batch is scrubbed, before the pump inserts it into the outbox."""

    def __init__(self, db: Database, barrier: Barrier) -> None:
        super().__init__(db, ner=False)
        self.barrier = barrier

    def anonymize_batch_counted(self, texts: Any, *, batch_size: int = 32) -> list[Anonymized]:
        scrubbed = super().anonymize_batch_counted(texts, batch_size=batch_size)
        self.barrier.pause()
        return scrubbed


class PausedRescrub(Anonymizer):
    """The review screen's anonymizer: its re-scrub stops at the first text, after listing the outbox."""

    def __init__(self, db: Database, barrier: Barrier) -> None:
        super().__init__(db, ner=False)
        self.barrier = barrier

    def apply_terms_counted(self, text: str) -> Anonymized:
        self.barrier.pause()
        return super().apply_terms_counted(text)


def stored_messages(live: LiveServer) -> list[dict[str, Any]]:
    return [p for _, p in live.storage.records("message")]


async def test_a_term_added_while_the_pump_scrubs_a_record_reaches_it_before_it_is_queued(
        live: LiveServer, tmp_path: Path, memory_keyring: MemoryKeyring) -> None:
    path = tmp_path / "studyapp.db"
    db = open_database(path)
    await enroll_and_consent(db, live)
    protocol = current_study(db).protocol
    conversation = ConversationStore(db).create()
    ConversationStore(db).add_message(conversation.id, "user", f"Lunch at {TERM} today")

    barrier = Barrier()

    def services(pump_db: Database, study: Protocol) -> PrivacyServices:
        return PrivacyServices.create(pump_db, study, anonymizer=PausedAfterScrubbing(pump_db, barrier))

    pump = RecordPump(path, protocol, make_services=services)  # drains the intake at once
    try:
        assert barrier.reached.wait(WAIT_S), "the pump never scrubbed the message"
        # The participant adds the term (the review screen's `t`, on its own connection) while the scrubbed
        # message is not yet in the outbox: the re-scrub cannot find it.
        review_db = open_database(path)
        review = ReviewService(review_db, protocol, Anonymizer(review_db, ner=False))
        assert review.add_term(TERM) == 0
        review_db.close()
    finally:
        barrier.go.set()
        pump.flush()
        pump.close()
    assert pump.queued == 1 and pump.last_error is None

    [message] = OutboxStore(db).list(kind="message")
    assert message.payload["content"] == "Lunch at <TERM_1> today"
    assert message.payload[REPLACED_FIELD] == {"TERM": 1}

    await run_sync(db)
    [sent] = stored_messages(live)
    assert TERM not in sent["content"]
    assert sent[REPLACED_FIELD] == {"TERM": 1}
    db.close()


async def test_a_term_added_while_earlier_records_are_scrubbed_for_a_backfill_reaches_them(
        live: LiveServer, tmp_path: Path, memory_keyring: MemoryKeyring) -> None:
    path = tmp_path / "studyapp.db"
    db = open_database(path)
    conversation = ConversationStore(db).create()
    ConversationStore(db).add_message(conversation.id, "user", f"Before joining: {TERM} again")
    await enroll(db, live.base_url, live.code())
    protocol = current_study(db).protocol
    ConsentService(db).grant(protocol, ["ratings"])

    barrier = Barrier()

    def services(pump_db: Database, study: Protocol) -> PrivacyServices:
        return PrivacyServices.create(pump_db, study, anonymizer=PausedAfterScrubbing(pump_db, barrier))

    pump = RecordPump(path, protocol, make_services=services)
    try:
        # Conversation text granted later, with the earlier messages included: the pump backfills them.
        pump.after_consent(ConsentService(db).change_categories(protocol, ["ratings", "conversation_text"],
                                                                include_earlier=["conversation_text"]))
        assert barrier.reached.wait(WAIT_S), "the backfill never scrubbed the earlier message"
        review_db = open_database(path)
        assert ReviewService(review_db, protocol, Anonymizer(review_db, ner=False)).add_term(TERM) == 0
        review_db.close()
    finally:
        barrier.go.set()
        pump.flush()
        pump.close()

    [message] = OutboxStore(db).list(kind="message")
    assert message.payload["content"] == "Before joining: <TERM_1> again"
    assert message.payload[REPLACED_FIELD] == {"TERM": 1}
    await run_sync(db)
    assert [m["content"] for m in stored_messages(live)] == ["Before joining: <TERM_1> again"]
    db.close()


async def test_an_upload_claiming_an_event_the_rescrub_has_not_reached_sends_it_with_the_term_removed(
        live: LiveServer, tmp_path: Path, memory_keyring: MemoryKeyring) -> None:
    path = tmp_path / "studyapp.db"
    db = open_database(path)
    await enroll_and_consent(db, live)
    protocol = current_study(db).protocol
    queue(db, f.STUDY_ID, [f.message(f"Dinner at {TERM}", replaced_entities={"PERSON": 1})])

    barrier = Barrier()
    changed: list[int] = []

    def add_term() -> None:
        # The review screen's worker: stores the term, then re-scrubs, on its own connection.
        own = open_database(path)
        try:
            changed.append(ReviewService(own, protocol, PausedRescrub(own, barrier)).add_term(TERM))
        finally:
            own.close()

    worker = threading.Thread(target=add_term)
    worker.start()
    try:
        assert barrier.reached.wait(WAIT_S), "the re-scrub never started"
        # The term is stored and the re-scrub has listed the outbox, but not yet rewritten the event: an upload
        # claims it now.
        await run_sync(db)
    finally:
        barrier.go.set()
        worker.join(WAIT_S)
    assert not worker.is_alive()

    [sent] = stored_messages(live)
    assert sent["content"] == "Dinner at <TERM_1>"
    assert sent[REPLACED_FIELD] == {"PERSON": 1, "TERM": 1}
    assert changed == [0], "the event had already left: the re-scrub does not claim to have changed it"
    assert OutboxStore(db).list(kind="message") == []
    db.close()
