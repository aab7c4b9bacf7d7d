"""Stage 2 and the Personalization facade against the scripted server; the schema validator on its own."""

from __future__ import annotations

from studyapp.personalize.pipeline import Personalization
from studyapp.personalize.select import NO_DECISION, Selector
from studyapp.personalize.structured import parse_lenient, validate
from studyapp.store.memory import MemoryStore


def _memory(memory: MemoryStore, *texts: str):
    return [memory.add_participant_attribute(t) for t in texts]


async def test_one_call_decides_every_attribute_and_records_all(scripted_llm, model, conversations, memory):
    attrs = _memory(memory, "The user is vegetarian.", "The user lives in Oslo.", "The user has a cat.")
    conv = conversations.create()
    request = conversations.add_message(conv.id, "user", "Suggest a dinner recipe.")
    scripted_llm.add_json({"decisions": [
        {"id": 1, "use": True, "rationale": "Diet matters for a recipe."},
        {"id": 2, "use": False, "rationale": "Location is irrelevant."},
        {"id": 9, "use": True, "rationale": "Not a shown attribute."},
    ]})
    result = await Selector(model, memory).select(request.content, memory.list_attributes(), message_id=request.id)

    assert len(scripted_llm.requests) == 1
    prompt = scripted_llm.requests[0]["messages"][-1]["content"]
    assert "1. The user is vegetarian." in prompt and "Suggest a dinner recipe." in prompt
    assert all(a.id not in prompt for a in attrs)
    assert result.selected == ["The user is vegetarian."]
    assert result.template == "select@1" and result.model == scripted_llm.model
    rows = {r.attribute_id: r for r in memory.selections(request.id)}
    assert set(rows) == {a.id for a in attrs}
    assert rows[attrs[0].id].selected and rows[attrs[0].id].rationale == "Diet matters for a recipe."
    assert not rows[attrs[1].id].selected
    assert (rows[attrs[2].id].selected, rows[attrs[2].id].rationale) == (False, NO_DECISION)
    assert all(r.model == scripted_llm.model and r.template == "select@1" for r in rows.values())
    assert [a.id for a in memory.selected_attributes(request.id)] == [attrs[0].id]


async def test_wrong_type_is_repaired(scripted_llm, model, memory):
    _memory(memory, "The user is vegetarian.")
    scripted_llm.add_json({"decisions": [{"id": 1, "use": "yes", "rationale": "diet"}]})
    scripted_llm.add_json({"decisions": [{"id": 1, "use": True, "rationale": "diet"}]})
    result = await Selector(model, memory).select("Dinner ideas?", memory.list_attributes())
    assert result.ok and result.selected == ["The user is vegetarian."]
    assert "$.decisions[0].use: expected boolean, got string" in scripted_llm.requests[1]["messages"][-1]["content"]


async def test_unusable_answer_selects_nothing_and_records_why(scripted_llm, model, conversations, memory):
    attrs = _memory(memory, "The user is vegetarian.", "The user has a cat.")
    conv = conversations.create()
    request = conversations.add_message(conv.id, "user", "Dinner?")
    scripted_llm.add_raw_content("I think the first one.")
    scripted_llm.add_raw_content("")
    result = await Selector(model, memory).select(request.content, attrs, message_id=request.id)
    assert not result.ok and result.selected == []
    rows = memory.selections(request.id)
    assert len(rows) == 2 and not any(r.selected for r in rows)
    assert all(r.rationale.startswith(NO_DECISION + " (invalid output") for r in rows)


async def test_empty_decision_list_means_nothing_selected(scripted_llm, model, memory):
    _memory(memory, "The user is vegetarian.")
    scripted_llm.add_json({"decisions": []})
    result = await Selector(model, memory).select("Hi", memory.list_attributes())
    assert result.ok and result.selected == [] and result.decisions[0].rationale == NO_DECISION


async def test_empty_memory_makes_no_call(scripted_llm, model, memory):
    result = await Selector(model, memory).select("Hi", [])
    assert result.decisions == [] and scripted_llm.requests == []


async def test_personalization_respects_memory_off(scripted_llm, model, db, conversations):
    personalization = Personalization(db, extractor_model=model)
    personalization.memory.add("The user is vegetarian.")
    off = conversations.create(memory_enabled=False)
    request = conversations.add_message(off.id, "user", "Dinner?")
    selection = await personalization.select_for(off, request)
    assert selection.decisions == [] and scripted_llm.requests == []
    messages, template = personalization.build([request], selection)
    assert template == "assistant@1" and "vegetarian" not in messages[0]["content"]
    assert personalization.store.selections(request.id) == []
    assert (await personalization.extract(off.id))[0].status == "idle"

    on = conversations.create()
    request = conversations.add_message(on.id, "user", "Dinner?")
    scripted_llm.add_json({"decisions": [{"id": 1, "use": True, "rationale": "diet"}]})
    selection = await personalization.select_for(on, request)
    messages, template = personalization.build([request], selection)
    assert template == "assistant_personalized@1" and "- The user is vegetarian." in messages[0]["content"]
    assert [a.text for a in personalization.used_attributes(request.id)] == ["The user is vegetarian."]
    scripted_llm.add_json({"decisions": [{"id": 1, "use": False, "rationale": "not needed"}]})
    assert (await personalization.select_for(on, request)).selected == []


def test_validator_names_each_problem():
    schema = {"type": "object", "required": ["a", "b"], "additionalProperties": False, "properties": {
        "a": {"type": "array", "items": {"type": "integer", "minimum": 1}},
        "b": {"type": ["string", "null"], "enum": ["x", None]},
    }}
    assert validate({"a": [1, 2], "b": None}, schema) == []
    assert validate({"a": [0, True, 1.0], "b": "y", "c": 1}, schema) == [
        "$.a[0]: 0 is below the minimum 1",
        "$.a[1]: expected integer, got boolean",
        "$.b: 'y' is not one of ['x', None]",
        "$: unexpected key 'c'",
    ]
    assert validate([], schema) == ["$: expected object, got array"]
    assert validate({}, schema) == ["$: missing required key 'a'", "$: missing required key 'b'"]


def test_lenient_parse_finds_json_in_chatter():
    assert parse_lenient('Here you go:\n```json\n{"a": 1}\n```') == {"a": 1}
    assert parse_lenient('Sure! {"a": [1]} Hope it helps.') == {"a": [1]}


async def test_committed_changes_become_study_records(scripted_llm, model, db, conversations):
    from studyapp.privacy.collect import check_payload
    from studyapp.privacy.intake import build
    from studyapp.store.collect_queue import CollectQueue
    from studyapp.store.studies import StudyStore

    StudyStore(db).enroll("s1", {"study": {"id": "s1"}}, participant_id="p1")  # the database notes records
    changes: list[str] = []
    personalization = Personalization(db, extractor_model=model, on_change=lambda: changes.append("changed"))
    conv = conversations.create()
    conversations.add_message(conv.id, "user", "I keep bees.")
    scripted_llm.add_json({"attributes": [{"statement": "The user keeps bees.", "reason": "said so",
                                           "confidence": 0.9, "evidence": [1]}]})
    await personalization.extract(conv.id)
    assert changes == ["changed"]
    records = [r for row in CollectQueue(db).take(100) for r in build(db, row)]
    [(kind, added)] = [r for r in records if r[0] == "attribute"]
    assert added["text"] == "The user keeps bees." and added["status"] == "active"
    personalization.memory.label(added["attribute_id"], "maybe", source="memory_screen")
    personalization.memory.forget(added["attribute_id"])
    assert changes == ["changed"] * 3
    records = [r for row in CollectQueue(db).take(100) for r in build(db, row)]
    assert [k for k, _ in records] == ["message", "attribute", "attribute_label", "attribute"]
    assert records[2][1]["label"] == "maybe" and records[3][1]["status"] == "deleted"
    for kind, payload in records:
        check_payload(kind, payload)  # exactly the fields the study's events allow


async def test_a_failing_change_hook_never_undoes_a_memory_change(model, db):
    def broken() -> None:
        raise RuntimeError("outbox unavailable")

    personalization = Personalization(db, extractor_model=model, on_change=broken)
    attribute = personalization.memory.add("I keep bees.")
    personalization.memory.label(attribute.id, "makes_sense", source="label_prompt")
    assert personalization.store.get(attribute.id).label == "makes_sense"
