"""The outbox store: statuses, ordering, filters and removal."""

from __future__ import annotations

from pathlib import Path

from studyapp.store.db import open_database
from studyapp.store.outbox import OutboxStore


def test_outbox_lifecycle(tmp_path: Path) -> None:
    outbox = OutboxStore(open_database(tmp_path / "s.db"))
    consent = outbox.add(study_id="s", kind="consent", category="-", payload={"a": 1}, consent_version="1",
                         approved=True)
    waiting = outbox.add(study_id="s", kind="message", category="conversation_text", payload={"content": "x"},
                         consent_version="1", approved=False)
    other = outbox.add(study_id="t", kind="message", category="conversation_text", payload={}, consent_version="1",
                       approved=True)
    assert [e.event_id for e in outbox.ready("s", 10)] == [consent]
    assert [e.event_id for e in outbox.list(study_id="s", kind="message")] == [waiting]
    outbox.approve([waiting])
    outbox.note_attempt([waiting, consent])
    assert {e.event_id: e.attempts for e in outbox.ready("s", 10)} == {consent: 1, waiting: 1}
    outbox.reject(waiting, "field 'content' too long")
    assert outbox.get(waiting).reason == "field 'content' too long"  # type: ignore[union-attr]
    assert outbox.counts("s") == {"pending": 0, "approved": 1, "withheld": 0, "rejected": 1}
    outbox.remove([consent])
    assert outbox.get(consent) is None
    assert outbox.clear("s") == 1
    assert [e.event_id for e in outbox.list()] == [other]
