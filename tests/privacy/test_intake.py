"""The outbox's intake: a study record written while enrolled reaches the server exactly once, whatever is
killed when (the database notes it for the privacy gate in the same transaction; see store/collect_queue.py)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlite_utils import Database

from studyapp.privacy.pump import RecordPump
from studyapp.store.collect_queue import CollectQueue
from studyapp.store.comparisons import ComparisonStore
from studyapp.store.conversations import ConversationStore
from studyapp.store.db import open_database
from studyapp.store.memory import MemoryStore
from studyapp.store.outbox import OutboxStore
from studyapp.store.studies import StudyStore
from studyapp.study.current import current_study
from studyapp.sync.client import run_sync
from tests.server.live import LiveServer, live, sqlite_server_db  # noqa: F401
from tests.support.fixtures import scripted_llm  # noqa: F401
from tests.support.keyring import MemoryKeyring, memory_keyring  # noqa: F401
from tests.support.scripted_llm import ScriptedLLM
from tests.support.timezone import machine_time_zone
from tests.sync.helpers import enroll_and_consent

ROOT = Path(__file__).resolve().parents[2]


def kinds(db: Database) -> list[str]:
    return [row.kind for row in CollectQueue(db).take(1000)]


def test_records_are_noted_only_while_enrolled(tmp_path: Path) -> None:
    db = open_database(tmp_path / "studyapp.db")
    conversations, memory = ConversationStore(db), MemoryStore(db)
    conversation = conversations.create()
    conversations.add_message(conversation.id, "user", "before joining")
    assert kinds(db) == [], "nothing is noted for a study while not enrolled"

    StudyStore(db).enroll("s1", {"study": {"id": "s1"}}, participant_id="p1")
    conversations.add_message(conversation.id, "user", "hello")
    reply = conversations.add_message(conversation.id, "assistant", "", status="streaming")
    assert kinds(db) == ["message"], "a reply is a record once it is finished, not while it streams"
    conversations.update_message(reply.id, content="Hi!", status="complete")
    attribute = memory.add_participant_attribute("I like hiking.")
    memory.label(attribute.id, "makes_sense", source="memory_screen")
    memory.edit(attribute.id, "I like long hikes.")
    assert kinds(db) == ["message", "message", "attribute", "attribute_label", "attribute"]
    # Each version of an attribute is kept as it was written, not as it is when the gate gets to it.
    texts = [r.payload["text"] for r in CollectQueue(db).take(1000) if r.kind == "attribute"]
    assert texts == ["I like hiking.", "I like long hikes."]

    StudyStore(db).withdraw("s1")
    conversations.add_message(conversation.id, "user", "after withdrawing")
    assert len(kinds(db)) == 5, "nothing new is noted after withdrawing"
    db.close()


def run_child_and_kill(db_path: Path, what: str) -> None:
    """Write records in another process and kill it with SIGKILL right after they are committed."""
    child = subprocess.Popen([sys.executable, "-m", "tests.privacy.intake_child", str(db_path), what], cwd=ROOT,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    line = child.stdout.readline()
    child.kill()
    child.wait()
    assert line.strip() == "written", f"the child process did not write its records (said {line!r})"


def restart_pump(db_path: Path) -> RecordPump:
    """What the app does at start while enrolled: a record pump, which drains the intake first."""
    db = open_database(db_path)
    protocol = current_study(db).protocol
    db.close()
    pump = RecordPump(db_path, protocol)
    pump.flush()
    pump.close()
    return pump


async def pump_and_sync(db: Database, path: Path) -> None:
    """Close the app's connection, start again as the app does (the pump drains the intake), then upload."""
    db.close()
    restart_pump(path)
    db = open_database(path)
    await run_sync(db)
    db.close()


async def test_a_rating_killed_before_the_gate_is_uploaded_exactly_once(live: LiveServer, tmp_path: Path,
                                                                       memory_keyring: MemoryKeyring) -> None:
    path = tmp_path / "studyapp.db"
    db = open_database(path)
    await enroll_and_consent(db, live)
    db.close()

    run_child_and_kill(path, "rating")
    db = open_database(path)
    assert sorted(kinds(db)) == ["comparison", "message"], "the rating was noted in the transaction that wrote it"
    assert [e.kind for e in OutboxStore(db).list()] == ["consent"], "no record pump ran in the killed process"
    db.close()

    pump = restart_pump(path)
    assert pump.queued == 3 and pump.last_error is None  # the message, the comparison, its relevance label
    db = open_database(path)
    assert kinds(db) == []
    assert sorted(e.kind for e in OutboxStore(db).list()) == ["comparison", "consent", "message", "relevance_label"]
    await run_sync(db)
    assert live.storage.count_records("comparison") == 1
    assert live.storage.count_records("relevance_label") == 1

    # Another start, another sync: nothing is queued or stored twice.
    db.close()
    assert restart_pump(path).queued == 0
    db = open_database(path)
    await run_sync(db)
    events = live.storage.conn.execute("SELECT kind, count(*) FROM events GROUP BY kind").fetchall()
    assert dict(events) == {"consent": 1, "message": 1, "comparison": 1, "relevance_label": 1}
    db.close()


async def test_judge_verdicts_reach_the_server_in_both_orders_and_reruns_replace_them(
        live: LiveServer, tmp_path: Path, memory_keyring: MemoryKeyring) -> None:
    path = tmp_path / "studyapp.db"
    db = open_database(path)
    await enroll_and_consent(db, live)
    db.close()
    run_child_and_kill(path, "verdicts")
    restart_pump(path)
    db = open_database(path)
    await run_sync(db)
    stored = sorted((p["personalized_side"], p["rating"]) for _, p in live.storage.records("judge_verdict"))
    assert stored == [("left", 5), ("right", 3)], "both orders of the pair reach the server"

    # `studyapp judge --rerun`: new verdicts for the same pair and orders are new events, and the export keeps them.
    comparisons = ComparisonStore(db)
    [comparison] = comparisons.list(rated_only=True)
    for side, rating in (("left", 4), ("right", 2)):
        comparisons.add_verdict(comparison.id, judge_model="judge-1", personalized_side=side, rating=rating,
                                raw=str(rating), template="judge@1")
    db.close()
    restart_pump(path)
    db = open_database(path)
    await run_sync(db)
    stored = sorted((p["personalized_side"], p["rating"]) for _, p in live.storage.records("judge_verdict"))
    assert stored == [("left", 4), ("right", 2)]
    assert live.storage.conn.execute("SELECT count(*) FROM events WHERE kind = 'judge_verdict'").fetchone()[0] == 4
    db.close()


async def test_schedule_decisions_reach_the_export_with_every_column(live: LiveServer, tmp_path: Path,
                                                                     memory_keyring: MemoryKeyring) -> None:
    import pyarrow.parquet as pq

    from studyapp.server.export import export
    from studyapp.store.schedule import ScheduleStore

    path = tmp_path / "studyapp.db"
    db = open_database(path)
    await enroll_and_consent(db, live)
    conversation = ConversationStore(db).create()
    prompt = ConversationStore(db).add_message(conversation.id, "user", "What should I cook?")
    schedules = ScheduleStore(db)
    schedules.record(message_id=prompt.id, conversation_id=conversation.id, eligible=True, draw=0.25,
                     probability=0.5, outcome="comparison", reason="eligible, and the draw 0.250 < 0.5",
                     memory_size=4, selected_count=2)
    schedules.record(message_id=prompt.id, conversation_id=conversation.id, eligible=False, draw=None,
                     probability=None, outcome="too_soon", reason="too soon", memory_size=4, selected_count=None)
    await pump_and_sync(db, path)
    assert live.storage.count_records("schedule_decision") == 2

    export(live.storage, tmp_path / "out", "parquet", researcher="test")
    table = pq.read_table(tmp_path / "out" / "schedule_decisions.parquet").to_pylist()
    by_outcome = {row["outcome"]: row for row in table}
    assert by_outcome["comparison"]["draw"] == 0.25 and by_outcome["comparison"]["eligible"] is True
    assert by_outcome["comparison"]["selected_count"] == 2 and by_outcome["too_soon"]["selected_count"] is None
    assert by_outcome["too_soon"]["message_id"] == prompt.id and by_outcome["too_soon"]["memory_size"] == 4


def test_the_server_refuses_a_schedule_decision_outside_the_contract() -> None:
    from studyapp.server.validation import Rejected, check_event

    good = {"decision_id": "d1", "conversation_id": "c1", "message_id": "m1", "decided_at": "2026-11-29T10:00:00+00:00",
            "eligible": True, "outcome": "draw_lost", "memory_size": 3, "draw": 0.7, "probability": 0.5}
    assert check_event("e1", "schedule_decision", good).record_key == "d1"
    for bad, field in ((good | {"outcome": "maybe"}, "outcome"), (good | {"memory_size": -1}, "memory_size"),
                       (good | {"selected_count": 1.5}, "selected_count"), (good | {"eligible": "yes"}, "eligible")):
        with pytest.raises(Rejected, match=field):
            check_event("e1", "schedule_decision", bad)


async def test_labels_and_dismissals_reach_the_export_with_every_column(live: LiveServer, tmp_path: Path,
                                                                        memory_keyring: MemoryKeyring) -> None:
    import pyarrow.parquet as pq

    from studyapp.server.export import export

    path = tmp_path / "studyapp.db"
    db = open_database(path)
    await enroll_and_consent(db, live)
    memory = MemoryStore(db)
    labeled = memory.add_participant_attribute("Friend of Maria Lopez")
    left = memory.add_participant_attribute("I like hiking")
    memory.label(labeled.id, "doesnt_make_sense", source="label_prompt")
    memory.edit(labeled.id, "Knows Maria Lopez from work")  # the label answered the earlier version
    dismissal_id = memory.dismiss(left.id, source="label_prompt")
    await pump_and_sync(db, path)
    assert live.storage.count_records("attribute_label") == 1
    assert live.storage.count_records("label_dismissal") == 1

    export(live.storage, tmp_path / "out", "parquet", researcher="test")
    [label] = pq.read_table(tmp_path / "out" / "attribute_labels.parquet").to_pylist()
    assert (label["attribute_id"], label["label"], label["source"]) == (labeled.id, "doesnt_make_sense",
                                                                         "label_prompt")
    # The snapshot is free text: anonymized on the device, like the attribute itself.
    assert label["attribute_text"] == "Friend of <PERSON_1>"
    assert label["confidence"] == 1.0 and 0 <= label["age_s"] < 60
    [dismissal] = pq.read_table(tmp_path / "out" / "label_dismissals.parquet").to_pylist()
    assert (dismissal["dismissal_id"], dismissal["attribute_id"], dismissal["source"]) == (
        dismissal_id, left.id, "label_prompt")
    assert dismissal["dismissed_at"] and dismissal["participant_id"] == label["participant_id"]


def test_the_server_refuses_labels_and_dismissals_outside_the_contract() -> None:
    from studyapp.server.validation import Rejected, check_event

    label = {"attribute_id": "a1", "label": "maybe", "labeled_at": "2026-11-29T10:00:00+00:00",
             "source": "memory_screen", "attribute_text": "Likes <PERSON_1>", "confidence": 0.7, "age_s": 12.5}
    assert check_event("e1", "attribute_label", label).payload["age_s"] == 12.5
    for bad, field in ((label | {"source": "elsewhere"}, "source"), (label | {"age_s": -1}, "age_s"),
                       (label | {"confidence": 1.5}, "confidence"), (label | {"attribute_text": 3}, "attribute_text"),
                       (label | {"age_s": "10"}, "age_s")):
        with pytest.raises(Rejected, match=field):
            check_event("e1", "attribute_label", bad)
    dismissal = {"dismissal_id": "d1", "attribute_id": "a1", "dismissed_at": "2026-11-29T10:00:00+00:00",
                 "source": "label_prompt"}
    checked = check_event("e1", "label_dismissal", dismissal)
    assert checked.record_key == "d1" and checked.day == "2026-11-29"
    for bad, field in ((dismissal | {"source": "nowhere"}, "source"),
                       (dismissal | {"dismissal_id": ""}, "dismissal_id"),
                       ({k: v for k, v in dismissal.items() if k != "dismissed_at"}, "dismissed_at")):
        with pytest.raises(Rejected, match=field):
            check_event("e1", "label_dismissal", bad)


def test_an_older_apps_label_without_the_new_fields_is_accepted() -> None:
    from studyapp.server.validation import check_event

    old = {"attribute_id": "a1", "label": "maybe", "labeled_at": "2026-11-29T10:00:00+00:00"}
    assert check_event("e1", "attribute_label", old).payload == old


@pytest.fixture
def kathmandu_time() -> Iterator[None]:
    """The machine's local time zone is UTC+05:45."""
    with machine_time_zone("NPT-5:45"):
        yield


async def test_a_rated_comparison_reaches_the_export_with_its_context(
        live: LiveServer, tmp_path: Path, memory_keyring: MemoryKeyring, scripted_llm: ScriptedLLM,
        kathmandu_time: None) -> None:
    import pyarrow.parquet as pq

    from studyapp.server.export import export
    from studyapp.store.schedule import ScheduleStore
    from studyapp.study.comparison import RatingResult
    from studyapp.turns import ComparisonOffered, TurnController
    from tests.turns.test_turn_controller import Context, answer

    path = tmp_path / "studyapp.db"
    db = open_database(path)
    await enroll_and_consent(db, live)
    scripted_llm.set_default(answer(True))
    ctx = Context(db, scripted_llm, compare=True)
    ctx.personalization.memory.add("The user is vegetarian")
    ctx.personalization.memory.add("The user lives in Lisbon")
    controller = TurnController(ctx)
    events = [e async for e in controller.run(None, "dinner ideas?")]
    offer = events[-1]
    assert isinstance(offer, ComparisonOffered)
    outcome = await offer.runner.run(offer.saved.conversation.id, offer.saved.message, offer.choices)
    offer.runner.mark_shown(outcome.comparison_id)  # what the comparison screen does when both arms are revealed
    # 2 on the shown scale: Response 1 (left) somewhat better; the personalized arm's view depends on its side.
    rating = controller.finish_comparison(offer, RatingResult(
        "rated", outcome.comparison_id, outcome.personalized_side, shown_choice=2, chosen_side="left"))
    assert rating == (4 if outcome.personalized_side == "left" else 2)
    decision = ScheduleStore(db).for_message(offer.saved.message.id)
    assert decision is not None and decision.outcome == "comparison"
    await pump_and_sync(db, path)
    assert live.storage.count_records("comparison") == 1

    export(live.storage, tmp_path / "out", "parquet", researcher="test")
    [row] = pq.read_table(tmp_path / "out" / "comparisons.parquet").to_pylist()
    assert row["comparison_id"] == outcome.comparison_id and row["prompt_message_id"] == offer.saved.message.id
    assert (row["rating_shown"], row["rating"]) == (2, rating)
    # Two attributes in memory, the selector chose one (its answer names only the first).
    assert (row["memory_size"], row["selected_count"]) == (decision.memory_size, decision.selected_count) == (2, 1)
    assert row["selector_model"] == scripted_llm.model and row["selector_template"]
    assert row["protocol_version"] == "1" and row["study_day"] == 1 and row["utc_offset_min"] == 345
    assert row["created_at"] <= row["shown_at"] <= row["rated_at"]


def test_comparison_context_is_empty_where_the_database_knows_nothing(tmp_path: Path) -> None:
    from datetime import timedelta, timezone

    from studyapp.privacy.intake import comparison_context
    from studyapp.privacy.records import ComparisonContext

    db = open_database(tmp_path / "studyapp.db")
    conversation = ConversationStore(db).create()
    prompt = ConversationStore(db).add_message(conversation.id, "user", "hi")
    comparisons = ComparisonStore(db)
    before = comparisons.get(comparisons.create(
        conversation_id=conversation.id, prompt_message_id=prompt.id, personalized_side="left", coin={},
        attributes=[], model="m", parameters={}, templates={}))
    # Not enrolled, no schedule decision, no selection: nothing to tell but the offset.
    west = timezone(timedelta(hours=-3, minutes=-30))
    assert comparison_context(db, before, tz=west) == ComparisonContext(utc_offset_min=-210)
    StudyStore(db).enroll("s1", {"study": {"id": "s1", "version": "2.0", "duration_days": 7}}, participant_id="p1")
    # Made before the enrollment: no study day, but the protocol it is sent under.
    context = comparison_context(db, before, tz=west)
    assert (context.protocol_version, context.study_day) == ("2.0", None)
    db.close()


async def test_failed_and_cancelled_comparisons_and_unreadable_verdicts_reach_the_export(
        live: LiveServer, tmp_path: Path, memory_keyring: MemoryKeyring, scripted_llm: ScriptedLLM) -> None:
    import asyncio

    import pyarrow.parquet as pq

    from studyapp.llm.openai_compat import OpenAICompatModel
    from studyapp.server.export import export
    from studyapp.study.comparison import ComparisonFailed
    from studyapp.study.judge import Judge
    from tests.study.test_comparison import ATTRIBUTES, arm_of, reply_by_arm, runner_for
    from tests.study.test_comparison_end import failing_generic_arm

    path = tmp_path / "studyapp.db"
    db = open_database(path)
    await enroll_and_consent(db, live)
    conversations, comparisons = ConversationStore(db), ComparisonStore(db)
    conversation = conversations.create()
    conversations.add_message(conversation.id, "user", "Hi!")
    conversations.add_message(conversation.id, "assistant", "Hello, how can I help?")
    runner = runner_for(scripted_llm, conversations, comparisons)

    # An arm fails.
    scripted_llm.set_default(failing_generic_arm)
    with pytest.raises(ComparisonFailed) as failed:
        await runner.run(conversation.id, conversations.add_message(conversation.id, "user", "Dinner?"), ATTRIBUTES)
    # The participant stops one while both answers are being written.
    replies = reply_by_arm(scripted_llm, hold_after=1)
    task = asyncio.create_task(
        runner.run(conversation.id, conversations.add_message(conversation.id, "user", "Lunch?"), ATTRIBUTES))
    try:
        for reply in replies.values():
            await reply.wait_held_async()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        for reply in replies.values():
            reply.release()
    [cancelled] = [c for c in comparisons.list() if c.end_state == "cancelled"]
    # One is rated; the judge reads its answer in one order and cannot in the other.
    reply_by_arm(scripted_llm)
    rated = await runner.run(conversation.id, conversations.add_message(conversation.id, "user", "Breakfast?"),
                             ATTRIBUTES)
    runner.record_rating(rated.comparison_id, 4, rated.personalized_side, "left")

    def judge_answer(body: dict[str, Any]) -> Any:
        shown_first = body["messages"][-1]["content"].partition("Response 1:\n<<<\n")[2]
        return {"rating": 2} if shown_first.startswith("A vegetarian") else "Hard to say."

    scripted_llm.set_default(lambda body: judge_answer(body) if not body.get("stream") else arm_of(body))
    await Judge([OpenAICompatModel(scripted_llm.base_url, scripted_llm.model)], comparisons).judge(rated.comparison_id)
    context_sha256 = comparisons.get(rated.comparison_id).context_sha256
    await pump_and_sync(db, path)

    export(live.storage, tmp_path / "out", "parquet", researcher="test")
    rows = {r["comparison_id"]: r for r in pq.read_table(tmp_path / "out" / "comparisons.parquet").to_pylist()}
    assert {cid: row["state"] for cid, row in rows.items()} == {
        failed.value.comparison_id: "failed", cancelled.id: "cancelled", rated.comparison_id: "rated"}
    assert rows[cancelled.id]["ended_at"] and rows[cancelled.id]["rating"] is None
    assert rows[failed.value.comparison_id]["ended_at"] and rows[rated.comparison_id]["ended_at"] is None
    # Each says which conversation its answers were written with (here: the two messages before the first request).
    assert rows[failed.value.comparison_id]["context_messages"] == 2
    assert rows[rated.comparison_id]["context_sha256"] == context_sha256
    verdicts = pq.read_table(tmp_path / "out" / "judge_verdicts.parquet").to_pylist()
    assert sorted((v["personalized_side"], v["verdict_status"], v["rating"]) for v in verdicts) == [
        ("left", "ok", 4), ("right", "unreadable", None)]
    assert {(v["comparison_id"], v["context_sha256"]) for v in verdicts} == {(rated.comparison_id, context_sha256)}


async def test_an_abandoned_comparison_rated_later_is_exported_as_rated(
        live: LiveServer, tmp_path: Path, memory_keyring: MemoryKeyring, scripted_llm: ScriptedLLM) -> None:
    import pyarrow.parquet as pq

    from studyapp.server.export import export
    from tests.study.test_comparison import ATTRIBUTES, reply_by_arm, runner_for

    path = tmp_path / "studyapp.db"
    db = open_database(path)
    await enroll_and_consent(db, live)
    conversations = ConversationStore(db)
    conversation = conversations.create()
    reply_by_arm(scripted_llm)
    runner = runner_for(scripted_llm, conversations, ComparisonStore(db))
    outcome = await runner.run(conversation.id, conversations.add_message(conversation.id, "user", "Dinner?"),
                               ATTRIBUTES)
    runner.mark_shown(outcome.comparison_id)
    assert ComparisonStore(db).mark_abandoned() == 1  # what the next start does
    await pump_and_sync(db, path)
    export(live.storage, tmp_path / "before", "parquet", researcher="test")
    [row] = pq.read_table(tmp_path / "before" / "comparisons.parquet").to_pylist()
    assert (row["comparison_id"], row["state"]) == (outcome.comparison_id, "abandoned")

    db = open_database(path)
    runner = runner_for(scripted_llm, ConversationStore(db), ComparisonStore(db))
    runner.record_rating(outcome.comparison_id, 5, outcome.personalized_side, "right")
    await pump_and_sync(db, path)
    export(live.storage, tmp_path / "after", "parquet", researcher="test")
    [row] = pq.read_table(tmp_path / "after" / "comparisons.parquet").to_pylist()
    assert (row["comparison_id"], row["state"], row["ended_at"]) == (outcome.comparison_id, "rated", None)
    assert live.storage.conn.execute("SELECT count(*) FROM events WHERE kind = 'comparison'").fetchone()[0] == 2
