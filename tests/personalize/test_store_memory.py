"""MemoryStore on a real database file: claims, atomic reconciliation, participant actions, selections."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from studyapp.domain import AttributeChange, ExtractionRun, MemoryChangeError, NewAttribute
from studyapp.store.conversations import ConversationStore
from studyapp.store.util import now


def _conversation_with_user_turns(conversations: ConversationStore, *texts: str, memory_enabled: bool = True):
    conv = conversations.create(memory_enabled=memory_enabled)
    ids = []
    for text in texts:
        ids.append(conversations.add_message(conv.id, "user", text).id)
        conversations.add_message(conv.id, "assistant", f"reply to {text}")
    return conv, ids


def test_pending_reads_only_user_turns_of_memory_enabled_conversations(conversations, memory):
    conv, ids = _conversation_with_user_turns(conversations, "I am a nurse", "I like tea")
    _conversation_with_user_turns(conversations, "private", memory_enabled=False)
    pending = memory.pending_user_messages()
    assert [m.id for m in pending] == ids
    assert all(m.role == "user" for m in pending)
    assert [m.id for m in memory.pending_user_messages(conv.id, limit=1)] == ids[:1]


def test_claim_is_exclusive_and_release_gives_messages_back(conversations, memory):
    _, ids = _conversation_with_user_turns(conversations, "one", "two")
    claim, claimed = memory.claim(ids, "run-a")
    assert claimed == ids
    _, second = memory.claim(ids, "run-b")
    assert second == []
    assert memory.pending_user_messages() == []
    memory.release_claim(claim)
    assert [m.id for m in memory.pending_user_messages()] == ids


def test_stale_claim_counts_as_pending(conversations, memory, db):
    _, ids = _conversation_with_user_turns(conversations, "one")
    with db.conn:
        db.execute("UPDATE messages SET extracted_at = ? WHERE id = ?",
                   ["claim:2000-01-01T00:00:00.000000+00:00:dead-run", ids[0]])
    assert [m.id for m in memory.pending_user_messages()] == ids


def test_apply_changes_is_all_or_nothing(conversations, memory):
    _, ids = _conversation_with_user_turns(conversations, "I live in Paris")
    claim, _ = memory.claim(ids, "run-1")
    run = ExtractionRun(id="run-1", status="ok", model="m", template="extract@1", message_ids=ids, raw="{}",
                        error=None, created_at=now())
    changes = [
        AttributeChange(action="add", reason="r", new=NewAttribute("The user lives in Paris.", "said so", 0.9, ids)),
        AttributeChange(action="update", reason="r", attribute_id="no-such-attribute", text="x"),
    ]
    with pytest.raises(MemoryChangeError):
        memory.apply_changes(changes, actor="model", run=run, finish_claim=claim)
    assert memory.list_attributes(include_deleted=True) == []
    assert memory.events() == []
    assert memory.runs() == []
    # The claim was not finished: the message is still claimed by this run (released by the caller).
    memory.release_claim(claim)
    assert [m.id for m in memory.pending_user_messages()] == ids


def test_participant_actions_are_events_with_times(conversations, memory):
    own = memory.add_participant_attribute("  I cycle to work  ")
    assert (own.text, own.origin, own.confidence) == ("I cycle to work", "participant", 1.0)
    edited = memory.edit(own.id, "I cycle to work every day")
    assert edited.text == "I cycle to work every day"
    labeled_at = memory.label(own.id, "makes_sense")
    memory.label(own.id, "maybe")
    assert memory.get(own.id).label == "maybe"
    assert (memory.labels(own.id)[0].label, memory.labels(own.id)[0].labeled_at) == ("makes_sense", labeled_at)
    memory.forget(own.id)
    assert memory.list_attributes() == []
    assert memory.get(own.id).status == "deleted"
    events = memory.events(own.id)
    assert [(e.action, e.actor) for e in events] == [
        ("add", "participant"), ("update", "participant"), ("delete", "participant")]
    assert events[1].before["text"] == "I cycle to work" and events[1].after["text"] == "I cycle to work every day"
    assert memory.forgotten_texts() == ["I cycle to work every day"]


def test_a_label_keeps_the_attribute_as_it_was_and_its_age(memory):
    attribute = memory.add_participant_attribute("I cycle to work")
    # Created 90 minutes before it is labeled.
    memory.db.execute("UPDATE attributes SET created_at = ?, confidence = 0.6 WHERE id = ?",
                      [(datetime.now(UTC) - timedelta(minutes=90)).isoformat(), attribute.id])
    memory.db.conn.commit()
    memory.label(attribute.id, "maybe", source="label_prompt")
    memory.edit(attribute.id, "I cycle to work every day")  # later edits do not change what was labeled
    [label] = memory.labels(attribute.id)
    assert (label.attribute_text, label.confidence, label.source) == ("I cycle to work", 0.6, "label_prompt")
    assert label.age_s is not None and 90 * 60 <= label.age_s < 90 * 60 + 60
    assert memory.get_label(label.id) == label


def test_a_label_given_before_m007_reads_with_no_snapshot(memory):
    attribute = memory.add_participant_attribute("I like tea")
    with memory.db.conn:
        memory.db.execute("INSERT INTO attribute_labels (id, attribute_id, label, labeled_at) VALUES (?, ?, ?, ?)",
                          ["old", attribute.id, "maybe", now()])
    old = memory.get_label("old")
    assert old is not None and (old.source, old.attribute_text, old.confidence, old.age_s) == (None, None, None, None)


def test_a_dismissal_is_stored_with_its_time_and_source(memory):
    attribute = memory.add_participant_attribute("I like tea")
    dismissal_id = memory.dismiss(attribute.id, source="label_prompt")
    [dismissal] = memory.dismissals(attribute.id)
    assert (dismissal.id, dismissal.source) == (dismissal_id, "label_prompt") and dismissal.dismissed_at
    assert memory.get_dismissal(dismissal_id) == dismissal
    with pytest.raises(MemoryChangeError, match="Unknown label source"):
        memory.dismiss(attribute.id, source="somewhere")
    with pytest.raises(MemoryChangeError, match="No attribute"):
        memory.dismiss("missing", source="label_prompt")


def test_bad_participant_input_gets_clear_errors(memory):
    with pytest.raises(MemoryChangeError, match="needs some text"):
        memory.add_participant_attribute("   ")
    attribute = memory.add_participant_attribute("I like tea")
    with pytest.raises(MemoryChangeError, match="cannot be empty"):
        memory.edit(attribute.id, "")
    with pytest.raises(MemoryChangeError, match="Unknown label"):
        memory.label(attribute.id, "great")
    memory.forget(attribute.id)
    with pytest.raises(MemoryChangeError, match="forgotten"):
        memory.edit(attribute.id, "I like coffee")


def test_evidence_messages_and_selections(conversations, memory):
    _, ids = _conversation_with_user_turns(conversations, "I work nights", "At the hospital")
    new = NewAttribute("The user works night shifts.", "said so", 0.8, [ids[1], ids[0], ids[0]])
    memory.apply_changes([AttributeChange(action="add", reason="r", new=new)], actor="model")
    assert [m.id for m in memory.evidence_messages(new.id)] == ids
    assert memory.get(new.id).evidence == [ids[1], ids[0]]
    other = memory.add_participant_attribute("I like tea")
    memory.record_selections(ids[1], [(new.id, True, "relevant", True), (other.id, False, "unrelated", True)],
                             model="m", template="select@1")
    rows = memory.selections(ids[1])
    assert [(r.attribute_id, r.selected, r.template) for r in rows] == [
        (new.id, True, "select@1"), (other.id, False, "select@1")]
    assert [a.id for a in memory.selected_attributes(ids[1])] == [new.id]
