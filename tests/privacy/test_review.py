"""Review before upload: grouping, approve, withhold (items and conversations), terms and re-scrub."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from sqlite_utils import Database

from studyapp.privacy.anonymize import Anonymizer
from studyapp.privacy.collect import Collector
from studyapp.privacy.consent import ConsentService
from studyapp.privacy.review import ReviewService, preview, summary
from studyapp.store.outbox import OutboxStore
from tests.privacy.conftest import make_protocol
from tests.privacy.test_collect import message


def setup(db: Database, consent: ConsentService, anonymizer: Anonymizer) -> tuple[ReviewService, list[str]]:
    protocol = make_protocol(review_uploads=True)
    consent.grant(protocol, ["ratings", "conversation_text"])
    collector = Collector(db, protocol, anonymizer, consent)
    ids = [
        collector.collect("message", message("I had lunch with Maria Lopez today. I work at Brightwave",
                                             conversation_id="c1")),
        collector.collect("message", message("Brightwave is in Dublin", conversation_id="c1")),
        collector.collect("message", message("a recipe for soup please", conversation_id="c2")),
        collector.collect("judge_verdict", {"comparison_id": "k1", "judge_model": "local",
                                            "personalized_side": "left", "rating": 4}),
    ]
    assert all(ids)
    return ReviewService(db, protocol, anonymizer), [i for i in ids if i]


def test_pending_items_grouped_by_kind_and_day(db: Database, consent: ConsentService, anonymizer: Anonymizer) -> None:
    review, _ids = setup(db, consent, anonymizer)
    assert review.review_required
    groups = review.groups()
    kinds = sorted((g.kind, len(g.items)) for g in groups)
    assert kinds == [("consent", 1), ("judge_verdict", 1), ("message", 3)]
    message_group = next(g for g in groups if g.kind == "message")
    assert message_group.label.endswith("· message · 3 items")
    first = message_group.items[0]
    assert summary(first) == "I had lunch with <PERSON_1> today. I work at Brightwave"
    assert '"content": "I had lunch with <PERSON_1> today. I work at Brightwave"' in preview(first)


def test_approve_some_then_all(db: Database, consent: ConsentService, anonymizer: Anonymizer) -> None:
    review, ids = setup(db, consent, anonymizer)
    outbox = OutboxStore(db)
    assert review.approve([ids[0]]) == 1
    assert outbox.get(ids[0]).status == "approved"  # type: ignore[union-attr]
    assert outbox.get(ids[1]).status == "pending"  # type: ignore[union-attr]
    assert review.approve_all() == 3
    assert review.pending() == []
    assert len(outbox.ready("s1", 100)) == 5


def test_withhold_item_and_conversation_never_become_ready(db: Database, consent: ConsentService,
                                                           anonymizer: Anonymizer) -> None:
    review, ids = setup(db, consent, anonymizer)
    assert review.withhold([ids[2]]) == 1
    assert review.withhold_conversation("c1") == 2
    assert review.approve_all() == 1  # only the judge verdict was still pending
    assert review.approve(ids[:3]) == 0  # withheld items cannot be approved
    consent_ids = [e.event_id for e in review.waiting() if e.kind == "consent"]
    assert review.withhold(consent_ids) == 0  # the consent record always goes
    ready = {e.event_id for e in OutboxStore(db).ready("s1", 100)}
    assert ready.isdisjoint(ids[:3])
    assert ids[3] in ready


def test_add_term_rescrubs_waiting_payloads(db: Database, consent: ConsentService, anonymizer: Anonymizer) -> None:
    review, ids = setup(db, consent, anonymizer)
    review.approve([ids[1]])
    assert review.add_term("Brightwave") == 2
    outbox = OutboxStore(db)
    assert outbox.get(ids[0]).payload["content"] == "I had lunch with <PERSON_1> today. I work at <TERM_1>"  # type: ignore[union-attr]
    assert outbox.get(ids[1]).payload["content"].startswith("<TERM_1> is in")  # type: ignore[union-attr]
    assert outbox.get(ids[1]).status == "approved"  # type: ignore[union-attr]
    assert review.rescrub() == 0
    # New records use the term too.
    assert "Brightwave" not in anonymizer.anonymize("Brightwave again")


def test_a_worker_gets_its_own_connection_to_the_same_file(db: Database, consent: ConsentService,
                                                           anonymizer: Anonymizer) -> None:
    review, ids = setup(db, consent, anonymizer)

    def in_worker_thread() -> int:
        # As the review screen's re-scrub worker does: the app's connection must not be touched from here.
        worker = review.on_new_connection()
        try:
            assert worker.db is not review.db
            assert worker.database_file() == review.database_file()
            return worker.add_term("Brightwave")
        finally:
            worker.db.close()

    with ThreadPoolExecutor(max_workers=1) as pool:
        assert pool.submit(in_worker_thread).result() == 2
    assert "<TERM_1>" in OutboxStore(db).get(ids[1]).payload["content"]  # type: ignore[union-attr]
