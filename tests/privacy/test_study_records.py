"""Contract 2 records on their way out: the selector's decisions, the versions behind a comparison, values
checked on the device, and a database from before migration m008."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlite_utils import Database

from studyapp.events import CONTRACT_VERSION
from studyapp.migrations.client import migrations
from studyapp.privacy.collect import CollectError, check_payload
from studyapp.privacy.intake import build, comparison_context, earlier_records
from studyapp.store.collect_queue import CollectQueue
from studyapp.store.comparisons import ComparisonStore
from studyapp.store.conversations import ConversationStore
from studyapp.store.db import open_database
from studyapp.store.memory import MemoryStore
from studyapp.store.schedule import ScheduleStore
from studyapp.store.studies import StudyStore
from studyapp.turns import ComparisonOffered, TurnController
from tests.privacy.test_intake import pump_and_sync
from tests.server.live import LiveServer, live, sqlite_server_db  # noqa: F401
from tests.support.fixtures import scripted_llm  # noqa: F401
from tests.support.keyring import MemoryKeyring, memory_keyring  # noqa: F401
from tests.support.scripted_llm import ScriptedLLM
from tests.sync.helpers import enroll_and_consent
from tests.turns.test_turn_controller import Context, answer


def export_rows(live: LiveServer, out: Path, name: str) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    from studyapp.server.export import export

    export(live.storage, out, "parquet", researcher="test")
    return pq.read_table(out / f"{name}.parquet").to_pylist()


async def comparison_and_ordinary_turn(db: Database, llm: ScriptedLLM) -> tuple[ComparisonOffered, str]:
    """One turn that becomes a comparison, one ordinary turn, with two attributes in memory."""
    llm.set_default(answer(True))
    ctx = Context(db, llm, compare=True)
    ctx.personalization.memory.add("The user is vegetarian")
    ctx.personalization.memory.add("The user lives in Lisbon")
    offer = [e async for e in TurnController(ctx).run(None, "dinner ideas?")][-1]
    assert isinstance(offer, ComparisonOffered)
    ordinary = Context(db, llm, compare=False)
    events = [e async for e in TurnController(ordinary).run(offer.saved.conversation.id, "and for lunch?")]
    return offer, events[0].message.id


async def test_selections_travel_with_their_turn_and_consent(live: LiveServer, tmp_path: Path,
                                                             memory_keyring: MemoryKeyring,
                                                             scripted_llm: ScriptedLLM) -> None:
    path = tmp_path / "studyapp.db"
    db = open_database(path)
    await enroll_and_consent(db, live)
    offer, ordinary_id = await comparison_and_ordinary_turn(db, scripted_llm)
    await pump_and_sync(db, path)

    rows = export_rows(live, tmp_path / "out", "selections")
    by_turn = {(r["message_id"], r["attribute_id"]): r for r in rows}
    attributes = {a.text: a.id for a in MemoryStore(open_database(path)).list_attributes()}
    comparison_rows = [r for r in rows if r["message_id"] == offer.saved.message.id]
    # Every attribute in memory was judged, not only the selected one: the denominator of the selection rate.
    assert {r["attribute_id"] for r in comparison_rows} == set(attributes.values())
    assert {r["turn"] for r in comparison_rows} == {"comparison"}
    veg = by_turn[(offer.saved.message.id, attributes["The user is vegetarian"])]
    lisbon = by_turn[(offer.saved.message.id, attributes["The user lives in Lisbon"])]
    # The scripted selector names only attribute 1: the other one had no decision, which is not a "no".
    assert (veg["selected"], veg["valid"], veg["rationale"]) == (True, True, "food")
    assert (lisbon["selected"], lisbon["valid"]) == (False, False)
    assert veg["model"] == scripted_llm.model and veg["template"].startswith("select@")
    assert veg["conversation_id"] == offer.saved.conversation.id and veg["contract_version"] == CONTRACT_VERSION
    assert {r["turn"] for r in rows if r["message_id"] == ordinary_id} == {"ordinary"}
    assert len(rows) == 4


async def test_ordinary_turns_selections_stay_without_the_selections_category(
        live: LiveServer, tmp_path: Path, memory_keyring: MemoryKeyring, scripted_llm: ScriptedLLM) -> None:
    from studyapp.privacy.consent import ConsentService
    from studyapp.study.protocol import protocol_from_dict

    path = tmp_path / "studyapp.db"
    db = open_database(path)
    await enroll_and_consent(db, live)
    study = StudyStore(db).current()
    assert study is not None
    ConsentService(db).change_categories(protocol_from_dict(study.protocol), ["ratings", "relevance_labels"])
    offer, ordinary_id = await comparison_and_ordinary_turn(db, scripted_llm)
    await pump_and_sync(db, path)
    rows = export_rows(live, tmp_path / "out", "selections")
    assert {r["message_id"] for r in rows} == {offer.saved.message.id}, "only the comparison turn's decisions"
    assert all(r["turn"] == "comparison" for r in rows) and ordinary_id not in {r["message_id"] for r in rows}


async def test_an_unreadable_selector_answer_is_recorded_as_invalid(db: Database, scripted_llm: ScriptedLLM) -> None:
    def rule(body: dict[str, Any]) -> object:
        if '"use"' in json.dumps(body.get("response_format") or {}):
            return "I think the first one, maybe?"  # not the JSON asked for, even after the repair request
        return "an answer"

    scripted_llm.set_default(rule)
    ctx = Context(db, scripted_llm, compare=True)
    ctx.personalization.memory.add("The user is vegetarian")
    events = [e async for e in TurnController(ctx).run(None, "dinner ideas?")]
    prompt = events[0].message
    [decision] = ScheduleStore(db).list()
    assert decision.outcome == "selection_failed"
    [selection] = MemoryStore(db).selections(prompt.id)
    assert (selection.selected, selection.valid) == (False, False)
    StudyStore(db).enroll("s1", {"study": {"id": "s1"}}, participant_id="p1")
    records = [r for row in [r for r in CollectQueue(db).take(100)] for r in build(db, row)]
    assert records == []  # noted only while enrolled: nothing was
    [(_, payload)] = [r for r in earlier_records(db, ["selections"]) if r[0] == "turn_selection"]
    assert (payload["selected"], payload["valid"]) == (False, False)


def test_the_device_refuses_values_the_server_would_refuse() -> None:
    label = {"comparison_id": "c1", "attribute_id": "a1", "selected_by_model": True, "model_relevant": True,
             "human_relevant": None, "relevance_status": "not_asked", "ask_probability": 1.0}
    check_payload("relevance_label", label)
    for bad, field in ((label | {"relevance_status": "skipped"}, "relevance_status"),
                       (label | {"ask_probability": 0.0}, "ask_probability"),
                       (label | {"ask_probability": 1.5}, "ask_probability"),
                       (label | {"asked_when": "later"}, "asked_when"),
                       (label | {"labeled_at": "2026-11-29T10:00:00"}, "labeled_at"),  # no UTC offset
                       (label | {"labeled_at": "yesterday"}, "labeled_at")):
        with pytest.raises(CollectError, match=field):
            check_payload("relevance_label", bad)
    view = {"view_id": "v1", "opened_at": "2026-11-29T10:00:00+01:00", "duration_s": 3.5, "screen": "memory_screen"}
    check_payload("memory_view", view)
    with pytest.raises(CollectError, match="duration_s"):
        check_payload("memory_view", view | {"duration_s": -1})
    with pytest.raises(CollectError, match="replaced_entities"):
        check_payload("message", {"conversation_id": "c", "message_id": "m", "role": "user", "content": "hi",
                                  "created_at": "2026-11-29T10:00:00+00:00", "status": "complete",
                                  "replaced_entities": {"PERSON": -1}})


def test_the_server_keeps_accepting_times_without_an_offset_from_older_apps() -> None:
    from studyapp.server.validation import Rejected, check_event

    old = {"attribute_id": "a1", "label": "maybe", "labeled_at": "2026-11-29T10:00:00"}
    assert check_event("e1", "attribute_label", old).day == "2026-11-29"
    with pytest.raises(Rejected, match="labeled_at"):
        check_event("e1", "attribute_label", old | {"labeled_at": "soon"})


def test_a_malformed_record_in_the_intake_stays_on_the_device_and_the_rest_go(db: Database) -> None:
    from studyapp.privacy.anonymize import Anonymizer
    from studyapp.privacy.collect import Collector
    from studyapp.privacy.consent import ConsentService
    from studyapp.privacy.intake import drain
    from studyapp.store.outbox import OutboxStore
    from tests.privacy.conftest import make_protocol

    protocol = make_protocol(required=("ratings", "conversation_text"), optional=())
    StudyStore(db).enroll("s1", protocol.to_dict(), participant_id="p1")
    consent = ConsentService(db)
    consent.grant(protocol, ["ratings", "conversation_text"])
    conversation = ConversationStore(db).create()
    good = ConversationStore(db).add_message(conversation.id, "user", "hello")
    bad = ConversationStore(db).add_message(conversation.id, "user", "hi again")
    # A time written without its offset (not something this version writes) cannot be sent as it is.
    db.execute("UPDATE messages SET created_at = '2026-11-29T10:00:00' WHERE id = ?", [bad.id])
    db.conn.commit()
    queued, refused = drain(Collector(db, protocol, Anonymizer(db), consent))
    assert (queued, refused) == (1, 1)
    assert [e.payload["message_id"] for e in OutboxStore(db).list() if e.kind == "message"] == [good.id]
    assert CollectQueue(db).count() == 0


async def test_a_comparison_carries_the_consent_and_extractor_behind_it(
        live: LiveServer, tmp_path: Path, memory_keyring: MemoryKeyring, scripted_llm: ScriptedLLM) -> None:
    from studyapp.domain import ExtractionRun
    from studyapp.study.comparison import RatingResult

    path = tmp_path / "studyapp.db"
    db = open_database(path)
    await enroll_and_consent(db, live)
    memory = MemoryStore(db)
    memory.apply_changes([], actor="model", run=ExtractionRun(
        id="r1", status="ok", model="extractor-1", template="extract@3", message_ids=[], raw="{}", error=None,
        created_at="2026-01-01T00:00:00+00:00"))
    memory.record_failed_run(ExtractionRun(id="r2", status="failed", model="x", template="extract@9",
                                           message_ids=[], raw=None, error="boom",
                                           created_at="2026-01-02T00:00:00+00:00"))
    offer, _ = await comparison_and_ordinary_turn(db, scripted_llm)
    outcome = await offer.runner.run(offer.saved.conversation.id, offer.saved.message, offer.choices)
    offer.runner.mark_shown(outcome.comparison_id)
    offer.runner.record_result(RatingResult("rated", outcome.comparison_id, outcome.personalized_side,
                                            shown_choice=3, chosen_side="left"))
    comparison = ComparisonStore(db).get(outcome.comparison_id)
    context = comparison_context(db, comparison)
    # The extractor behind the memory is the latest run that worked before the comparison, not a later failure.
    assert (context.extractor_model, context.extractor_template) == ("extractor-1", "extract@3")
    assert context.consent_version == "1"
    await pump_and_sync(db, path)
    [row] = export_rows(live, tmp_path / "out", "comparisons")
    assert (row["state"], row["consent_version"], row["contract_version"]) == ("rated", "1", CONTRACT_VERSION)
    assert (row["extractor_model"], row["extractor_template"]) == ("extractor-1", "extract@3")
    assert (row["generic_template"], row["personalized_template"]) == (
        comparison.templates["generic"], comparison.templates["personalized"])
    assert "@" in row["generic_template"] and "@" in row["personalized_template"]
    assert row["ended_at"] is None


def test_a_database_from_before_m008_is_migrated_and_its_records_still_build(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = Database(path)
    migrations.apply(old, stop_before="m008_study_records")
    conversation = ConversationStore(old).create()
    prompt = ConversationStore(old).add_message(conversation.id, "user", "dinner?")
    memory = MemoryStore(old)
    attribute = memory.add_participant_attribute("The user is vegetarian")
    old.execute("INSERT INTO selections (id, message_id, attribute_id, selected, rationale, created_at) "
                "VALUES ('s1', ?, ?, 0, 'no decision from model (unreadable)', '2026-11-01T10:00:00+00:00')",
                [prompt.id, attribute.id])
    ScheduleStore(old).record(message_id=prompt.id, conversation_id=conversation.id, eligible=True, draw=0.9,
                              probability=0.5, outcome="draw_lost", reason="lost", memory_size=1, selected_count=0)
    old.conn.commit()
    old.close()

    db = open_database(path)  # applies m008
    assert {"end_state", "ended_at", "context_message_ids", "context_sha256"} <= {
        c.name for c in db["comparisons"].columns}
    assert {"status", "asked_when", "ask_probability"} <= {c.name for c in db["relevance_labels"].columns}
    assert "memory_views" in db.table_names()
    [selection] = MemoryStore(db).selections(prompt.id)
    assert selection.valid is None  # not recorded then
    [(_, payload)] = [r for r in earlier_records(db, ["selections"]) if r[0] == "turn_selection"]
    assert payload["valid"] is False, "the selector wrote that rationale exactly when it had no decision"

    # A comparison that ends without a rating is noted for the gate while enrolled (the m008 trigger).
    StudyStore(db).enroll("s1", {"study": {"id": "s1"}}, participant_id="p1")
    comparisons = ComparisonStore(db)
    comparison_id = comparisons.create(conversation_id=conversation.id, prompt_message_id=prompt.id,
                                       personalized_side="right", coin={}, attributes=[], model="m",
                                       parameters={}, templates={})
    db.execute("UPDATE comparisons SET end_state = 'abandoned', ended_at = ? WHERE id = ?",
               ["2026-11-29T10:00:00+00:00", comparison_id])
    db.conn.commit()
    [row] = [r for r in CollectQueue(db).take(100) if r.kind == "comparison"]
    [(kind, record)] = build(db, row)
    assert (kind, record["state"], record["ended_at"]) == ("comparison", "abandoned", "2026-11-29T10:00:00+00:00")
    db.close()


async def test_the_kept_answer_of_a_comparison_is_a_message_marked_with_its_arm(
        live: LiveServer, tmp_path: Path, memory_keyring: MemoryKeyring, scripted_llm: ScriptedLLM) -> None:
    from studyapp.study.comparison import RatingResult

    path = tmp_path / "studyapp.db"
    db = open_database(path)
    await enroll_and_consent(db, live)
    offer, _ = await comparison_and_ordinary_turn(db, scripted_llm)
    outcome = await offer.runner.run(offer.saved.conversation.id, offer.saved.message, offer.choices)
    offer.runner.mark_shown(outcome.comparison_id)
    # The participant keeps Response 2 (right) to continue the conversation.
    offer.runner.record_result(RatingResult("rated", outcome.comparison_id, outcome.personalized_side,
                                            shown_choice=4, chosen_side="right"))
    kept_arm = "personalized" if outcome.personalized_side == "right" else "generic"
    [(_, backfilled)] = [r for r in earlier_records(db, ["conversation_text"]) if r[1]["arm"] is not None]
    assert (backfilled["arm"], backfilled["comparison_id"]) == (kept_arm, outcome.comparison_id)
    await pump_and_sync(db, path)

    rows = export_rows(live, tmp_path / "out", "messages")
    arms = [r for r in rows if r["arm"] is not None]
    assert [(r["arm"], r["comparison_id"], r["message_id"]) for r in arms] == [
        (kept_arm, outcome.comparison_id, outcome.right_message_id)]
    assert arms[0]["content"] == outcome.right_text and arms[0]["role"] == "assistant"
    # The other answer is only in the comparison record.
    assert outcome.left_message_id not in {r["message_id"] for r in rows}
