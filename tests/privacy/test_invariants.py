"""Privacy invariants 1-3 (docs/ARCHITECTURE.md section 10) over random consent histories and records.

A hypothesis state machine grants, changes and withdraws consent, publishes a new consent document,
collects records of every kind (new ones and ones made long ago, with identifying details in their
text), reviews, withholds and adds always-remove terms, in random order, on a real database. After
every step it checks:

1. nothing ready for upload belongs to a category that is not consented now (and every queued record
   was consented when it was queued; records made before a grant only with include_earlier);
2. no queued text contains a raw identifying detail, and anonymizing queued text again changes nothing;
3. in a review study nothing is ready unless the participant approved it; withheld items never become ready.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from studyapp.events import TEXT_FIELDS
from studyapp.privacy.anonymize import Anonymizer
from studyapp.privacy.collect import Collector
from studyapp.privacy.consent import ConsentError, ConsentService
from studyapp.privacy.review import ReviewService
from studyapp.store.db import open_database
from studyapp.store.outbox import OutboxStore
from studyapp.store.util import new_id, now
from tests.privacy.conftest import make_protocol

OPTIONAL = ("attribute_labels", "relevance_labels", "attributes", "conversation_text")
LONG_AGO = "2020-01-01T00:00:00.000000+00:00"
# (text, the identifying details in it that must never be queued)
TEXTS = [
    ("Maria Lopez emailed me from maria.lopez@example.org", ["Maria Lopez", "maria.lopez@example.org"]),
    ("Please call John Smith at +1 415-555-0132 tomorrow", ["John Smith", "415-555-0132"]),
    ("My IBAN is DE89 3704 0044 0532 0130 00 for the refund", ["DE89 3704 0044 0532 0130 00", "3704 0044"]),
    ("I live at 42 Elm Street in Boston", ["42 Elm Street", "Boston"]),
    ("the card 4111 1111 1111 1111 expires soon", ["4111 1111 1111 1111"]),
    ("I was born on 12/03/1987, a Thursday", ["12/03/1987"]),
    ("our server 192.168.1.20 is down again", ["192.168.1.20"]),
    ("I work at Brightwave and I like it", []),
    ("a recipe for tomato soup please", []),
]
TERMS = ["Brightwave", "tomato soup"]


def record(kind: str, text: str, made_at: str, conversation_id: str) -> dict:
    if kind == "message":
        return {"conversation_id": conversation_id, "message_id": new_id(), "role": "user", "content": text,
                "created_at": made_at, "status": "complete"}
    if kind == "attribute":
        return {"attribute_id": new_id(), "text": text, "reason": f"Said: {text}", "confidence": 0.7,
                "origin": "model", "status": "active", "created_at": made_at, "updated_at": made_at}
    if kind == "attribute_label":
        return {"attribute_id": new_id(), "label": "maybe", "labeled_at": made_at}
    if kind == "relevance_label":
        return {"comparison_id": new_id(), "attribute_id": new_id(), "selected_by_model": True,
                "model_relevant": False, "human_relevant": True}
    if kind == "comparison":
        return {"comparison_id": new_id(), "conversation_id": conversation_id, "personalized_side": "left",
                "model": "local", "created_at": made_at, "skipped": False, "prompt": text,
                "generic_response": "Sure.", "personalized_response": f"Sure, {text}", "rating": 4,
                "chosen": "personalized", "rated_at": made_at}
    return {"comparison_id": new_id(), "judge_model": "local", "personalized_side": "right", "rating": 2}


class PrivacyMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="studyapp-privacy-"))
        self.db = open_database(self.dir / "studyapp.db")
        self.consent = ConsentService(self.db)
        self.anonymizer = Anonymizer(self.db)
        self.outbox = OutboxStore(self.db)
        # The model of what the participant decided.
        self.granted: set[str] | None = None
        self.since_beginning: set[str] = set()
        self.withdrawn = False
        self.approved_by_participant: set[str] = set()
        self.withheld_by_participant: set[str] = set()
        self.secrets: set[str] = set()

    @initialize(review=st.booleans())
    def start(self, review: bool) -> None:
        self.protocol = make_protocol(review_uploads=review)
        self.collector = Collector(self.db, self.protocol, self.anonymizer, self.consent)
        self.review = ReviewService(self.db, self.protocol, self.anonymizer)

    def teardown(self) -> None:
        self.db.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # Consent decisions ------------------------------------------------------------------------------

    @precondition(lambda self: not self.withdrawn)
    @rule(chosen=st.sets(st.sampled_from(("ratings", *OPTIONAL))), earlier=st.booleans())
    def decide(self, chosen: set[str], earlier: bool) -> None:
        fresh = self.granted is None or self.consent.needs_reconsent(self.protocol)
        try:
            if fresh:
                self.consent.grant(self.protocol, chosen, include_earlier=earlier)
            else:
                self.consent.change_categories(self.protocol, chosen, include_earlier=earlier)
        except ConsentError:
            assert "ratings" not in chosen  # the only reason to refuse: a required category is missing
            return
        assert "ratings" in chosen
        self.since_beginning = {c for c in self.since_beginning if c in chosen}
        if earlier:
            self.since_beginning |= chosen
        self.granted = set(chosen)

    @precondition(lambda self: not self.withdrawn)
    @rule()
    def new_consent_document(self) -> None:
        version = str(int(self.protocol.current_consent.version) + 1)
        self.protocol = make_protocol(review_uploads=self.protocol.review_uploads, version=version,
                                      consent_version=version, consent_text=f"Consent text {version}.\n")
        self.collector = Collector(self.db, self.protocol, self.anonymizer, self.consent)
        self.review = ReviewService(self.db, self.protocol, self.anonymizer)

    @rule()
    def withdraw(self) -> None:
        self.consent.withdraw(self.protocol.id)
        self.withdrawn = True
        self.granted = None

    # Records ----------------------------------------------------------------------------------------

    @rule(kind=st.sampled_from(("message", "attribute", "attribute_label", "relevance_label", "comparison",
                                "judge_verdict")),
          text=st.sampled_from(TEXTS), old=st.booleans(), conversation=st.sampled_from(("c1", "c2")))
    def collect(self, kind: str, text: tuple[str, list[str]], old: bool, conversation: str) -> None:
        payload = record(kind, text[0], LONG_AGO if old else now(), conversation)
        self.secrets.update(text[1])
        event_id = self.collector.collect(kind, payload)
        category = {"message": "conversation_text", "attribute": "attributes", "attribute_label": "attribute_labels",
                    "relevance_label": "relevance_labels"}.get(kind, "ratings")
        timed = kind != "relevance_label" and kind != "judge_verdict"
        allowed = (
            not self.withdrawn and self.granted is not None and not self.consent.needs_reconsent(self.protocol)
            and category in self.granted and (not (old and timed) or category in self.since_beginning)
        )
        assert (event_id is not None) == allowed, self.collector.last_skip

    # Review -----------------------------------------------------------------------------------------

    @rule(data=st.data())
    def approve_some(self, data: st.DataObject) -> None:
        pending = [e.event_id for e in self.review.pending()]
        if not pending:
            return
        chosen = data.draw(st.lists(st.sampled_from(pending), unique=True))
        self.review.approve(chosen)
        self.approved_by_participant.update(chosen)

    @rule(data=st.data())
    def withhold_some(self, data: st.DataObject) -> None:
        waiting = [e.event_id for e in self.review.waiting() if e.kind != "consent"]
        if not waiting:
            return
        chosen = data.draw(st.lists(st.sampled_from(waiting), unique=True, min_size=1))
        self.review.withhold(chosen)
        self.withheld_by_participant.update(chosen)

    @rule(conversation=st.sampled_from(("c1", "c2")))
    def withhold_conversation(self, conversation: str) -> None:
        ids = [e.event_id for e in self.review.waiting() if e.payload.get("conversation_id") == conversation]
        self.review.withhold_conversation(conversation)
        self.withheld_by_participant.update(ids)

    @rule(term=st.sampled_from(TERMS))
    def add_term(self, term: str) -> None:
        self.review.add_term(term)
        self.secrets.add(term)

    # Invariants -------------------------------------------------------------------------------------

    @invariant()
    def only_consented_categories_are_ready(self) -> None:
        if not hasattr(self, "protocol"):
            return
        ready = self.outbox.ready(self.protocol.id, 10_000)
        if self.withdrawn:
            assert self.outbox.list(study_id=self.protocol.id) == []
            return
        current = self.consent.current(self.protocol.id)
        for event in ready:
            if event.kind == "consent":
                continue
            assert current is not None and event.category in current.categories, event

    @invariant()
    def queued_text_is_anonymized(self) -> None:
        for event in self.outbox.list():
            for name in TEXT_FIELDS.get(event.kind, ()):
                text = event.payload.get(name)
                if not isinstance(text, str):
                    continue
                for secret in self.secrets:
                    assert not re.search(rf"\b{re.escape(secret)}\b", text, re.IGNORECASE), (secret, text)
                # Re-anonymizing changes nothing: nothing the anonymizer would remove is left.
                assert self.anonymizer.anonymize(text) == text

    @invariant()
    def review_decisions_hold(self) -> None:
        if not hasattr(self, "protocol"):
            return
        ready = {e.event_id for e in self.outbox.ready(self.protocol.id, 10_000) if e.kind != "consent"}
        assert ready.isdisjoint(self.withheld_by_participant)
        if self.protocol.review_uploads:
            assert ready <= self.approved_by_participant


PrivacyMachine.TestCase.settings = settings(
    max_examples=50, stateful_step_count=15, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_privacy_invariants = PrivacyMachine.TestCase
