"""Conversations and messages in the store."""

from __future__ import annotations

from pathlib import Path

import pytest

from studyapp.store.conversations import ConversationStore
from studyapp.store.db import open_database


@pytest.fixture
def store(tmp_path: Path) -> ConversationStore:
    return ConversationStore(open_database(tmp_path / "s.db"))


def test_list_is_most_recent_first_and_counts_messages(store: ConversationStore) -> None:
    a = store.create("a")
    b = store.create("b")
    store.add_message(a.id, "user", "hello")
    assert [c.title for c in store.list()] == ["a", "b"]
    assert store.list()[0].message_count == 1
    store.add_message(b.id, "user", "later")
    assert [c.title for c in store.list()] == ["b", "a"]


def test_rename_trims_and_refuses_empty(store: ConversationStore) -> None:
    c = store.create("old")
    store.rename(c.id, "  Trip to Lisbon  ")
    assert store.get(c.id).title == "Trip to Lisbon"  # type: ignore[union-attr]
    store.rename(c.id, "   ")
    assert store.get(c.id).title == "New conversation"  # type: ignore[union-attr]


def test_delete_removes_messages_and_search_entries(store: ConversationStore) -> None:
    c = store.create()
    store.add_message(c.id, "user", "unique-word-zebra")
    assert store.search("zebra")
    store.delete(c.id)
    assert store.get(c.id) is None
    assert store.search("zebra") == []
    assert store.db.execute("SELECT count(*) FROM messages").fetchone()[0] == 0


def test_paging_returns_the_newest_page_in_order(store: ConversationStore) -> None:
    c = store.create()
    for i in range(120):
        store.add_message(c.id, "user", f"m{i}")
    page = store.messages(c.id, limit=50)
    assert [m.content for m in page] == [f"m{i}" for i in range(70, 120)]
    earlier = store.messages(c.id, before_n=page[0].n, limit=50)
    assert [m.content for m in earlier] == [f"m{i}" for i in range(20, 70)]
    around = store.messages_around(c.id, page[10].n, before=3, after=3)
    assert [m.content for m in around] == [f"m{i}" for i in range(77, 84)]


def test_comparison_arms_stay_out_of_the_thread_until_chosen(store: ConversationStore) -> None:
    c = store.create()
    store.add_message(c.id, "user", "q")
    arm = store.add_message(c.id, "assistant", "generic", arm="generic", in_thread=False)
    assert [m.content for m in store.messages(c.id)] == ["q"]
    assert len(store.messages(c.id, include_arms=True)) == 2
    store.set_in_thread(arm.id, True)
    assert [m.content for m in store.messages(c.id)] == ["q", "generic"]


def test_messages_by_id_keep_the_order_given_and_leave_out_deleted_ones(store: ConversationStore) -> None:
    kept, gone = store.create(), store.create()
    first = store.add_message(kept.id, "user", "first")
    second = store.add_message(kept.id, "assistant", "second")
    lost = store.add_message(gone.id, "user", "lost")
    store.delete(gone.id)
    # The order of the ids, not of the table: a comparison's context is read back as it was recorded.
    assert [m.content for m in store.messages_by_id([second.id, lost.id, first.id])] == ["second", "first"]
    assert store.messages_by_id([]) == []


def test_search_handles_punctuation_and_prefixes(store: ConversationStore) -> None:
    c = store.create("Cooking")
    store.add_message(c.id, "user", "How long should I knead bread dough?")
    store.add_message(c.id, "assistant", "About 10 minutes by hand.")
    assert [h.message.role for h in store.search('knead "bread')] == ["user"]
    assert [h.message.role for h in store.search("minu")] == ["assistant"]
    assert store.search("   ") == []
    # FTS operators and stray quotes are taken as words, never as query syntax (no error).
    assert store.search('AND OR NOT ( "') == []
    hit = store.search("dough")[0]
    assert hit.conversation_title == "Cooking"
    assert "\x02dough\x03" in hit.snippet


def test_streaming_messages_left_by_a_crash_become_interrupted(store: ConversationStore) -> None:
    c = store.create()
    m = store.add_message(c.id, "assistant", "half an ans", status="streaming")
    assert store.mark_streaming_interrupted() == 1
    got = store.get_message(m.id)
    assert got is not None and got.status == "interrupted" and got.content == "half an ans"
