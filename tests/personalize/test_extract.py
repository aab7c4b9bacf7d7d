"""Stage 1 against the scripted OpenAI-compatible server: mapping, threshold, repair, failures, concurrency."""

from __future__ import annotations

import asyncio
import json

from studyapp.llm.openai_compat import OpenAICompatModel
from studyapp.personalize.extract import Extractor
from tests.support.net import free_port


def _attr(statement: str, confidence: float = 0.9, evidence=(1,), reason: str = "they said so") -> dict:
    return {"statement": statement, "reason": reason, "confidence": confidence, "evidence": list(evidence)}


def _setup(conversations, *texts, memory_enabled=True):
    conv = conversations.create(memory_enabled=memory_enabled)
    ids = []
    for text in texts:
        ids.append(conversations.add_message(conv.id, "user", text).id)
        conversations.add_message(conv.id, "assistant", "ASSISTANT-TEXT")
    return conv, ids


def _prompt_text(request: dict) -> str:
    return "\n".join(m["content"] for m in request["messages"])


async def test_extracts_maps_evidence_and_applies_threshold(scripted_llm, model, conversations, memory):
    conv, ids = _setup(conversations, "I just finished a night shift at the hospital.", "Tea helps me sleep.")
    scripted_llm.add_json({"attributes": [
        _attr("The user works night shifts as a nurse.", 0.8, evidence=[1, 99, 1]),
        _attr("The user drinks tea to sleep.", 0.7, evidence=[2]),
        _attr("The user is tired.", 0.2, evidence=[1]),
        _attr("The user owns a cat.", 0.9, evidence=[0, 42]),
    ]})
    result = await Extractor(model, memory).run(conv.id)

    assert result.status == "ok"
    assert result.message_ids == ids
    prompt = _prompt_text(scripted_llm.requests[0])
    assert "[1] I just finished a night shift" in prompt and "[2] Tea helps me sleep." in prompt
    assert "ASSISTANT-TEXT" not in prompt  # only the participant's own turns are read
    assert ids[0] not in prompt  # the model never sees real ids
    attributes = {a.text: a for a in memory.list_attributes()}
    assert set(attributes) == {"The user works night shifts as a nurse.", "The user drinks tea to sleep."}
    assert attributes["The user works night shifts as a nurse."].evidence == [ids[0]]
    assert attributes["The user drinks tea to sleep."].evidence == [ids[1]]
    assert {d.statement: d.why for d in result.dropped} == {
        "The user is tired.": "confidence 0.20 below 0.4",
        "The user owns a cat.": "no evidence among the messages shown",
    }
    [run] = memory.runs()
    assert (run.status, run.message_ids, run.template) == ("ok", ids, "extract@1")
    assert all(e.run_id == run.id and e.actor == "model" and e.action == "add" for e in memory.events())
    assert memory.pending_user_messages() == []


async def test_run_again_processes_nothing_twice(scripted_llm, model, conversations, memory):
    conv, _ = _setup(conversations, "I live in Lisbon.")
    scripted_llm.add_json({"attributes": [_attr("The user lives in Lisbon.")]})
    extractor = Extractor(model, memory)
    assert (await extractor.run(conv.id)).status == "ok"
    assert (await extractor.run(conv.id)).status == "idle"
    assert (await extractor.run()).status == "idle"
    assert len(scripted_llm.requests) == 1
    conversations.add_message(conv.id, "user", "I have two kids.")
    scripted_llm.add_json({"attributes": []})
    result = await extractor.run(conv.id)
    assert result.status == "ok" and len(result.message_ids) == 1
    assert "I live in Lisbon" not in _prompt_text(scripted_llm.requests[1])


async def test_concurrent_extractors_never_share_a_message(scripted_llm, model, conversations, memory):
    conv, _ids = _setup(conversations, "I play the cello.")
    held = scripted_llm.add_json({"attributes": [_attr("The user plays the cello.")]}, hold_after=0)
    first = asyncio.create_task(Extractor(model, memory).run(conv.id))
    await held.wait_held_async()
    # While the first run waits for the model, a second extractor (another worker) finds nothing to do.
    assert (await Extractor(model, memory).run(conv.id)).status == "idle"
    held.release()
    assert (await first).status == "ok"
    assert len(scripted_llm.requests) == 1
    assert [a.text for a in memory.list_attributes()] == ["The user plays the cello."]


async def test_memory_off_conversation_is_never_read(scripted_llm, model, conversations, memory):
    conv, _ = _setup(conversations, "Secret plans.", memory_enabled=False)
    result = await Extractor(model, memory).run(conv.id)
    assert result.status == "idle"
    assert scripted_llm.requests == []


async def test_malformed_json_is_repaired_once(scripted_llm, model, conversations, memory):
    conv, _ = _setup(conversations, "I am learning Japanese.")
    scripted_llm.add_raw_content('{"attributes": [{"statement": "The user is learning Japanese"')
    scripted_llm.add_json({"attributes": [_attr("The user is learning Japanese.")]})
    result = await Extractor(model, memory).run(conv.id)
    assert result.status == "ok"
    assert len(scripted_llm.requests) == 2
    repair = scripted_llm.requests[1]["messages"]
    assert repair[-2]["role"] == "assistant" and repair[-2]["content"].startswith('{"attributes"')
    assert "did not match the required JSON format" in repair[-1]["content"]
    assert [a.text for a in memory.list_attributes()] == ["The user is learning Japanese."]


async def test_wrong_types_are_repaired_with_the_error_named(scripted_llm, model, conversations, memory):
    conv, _ = _setup(conversations, "I run marathons.")
    scripted_llm.add_json({"attributes": [{"statement": "The user runs marathons.", "reason": "said",
                                           "confidence": "high", "evidence": ["1"]}]})
    scripted_llm.add_json({"attributes": [_attr("The user runs marathons.", 0.9)]})
    result = await Extractor(model, memory).run(conv.id)
    assert result.status == "ok"
    repair_text = scripted_llm.requests[1]["messages"][-1]["content"]
    assert "$.attributes[0].confidence: expected number, got string" in repair_text
    assert "$.attributes[0].evidence[0]: expected integer, got string" in repair_text


async def test_unrepairable_output_is_a_failed_run_with_raw_text(scripted_llm, model, conversations, memory):
    conv, ids = _setup(conversations, "I like jazz.")
    scripted_llm.add_raw_content("Sure! The user likes jazz.")
    scripted_llm.add_json(["not", "an", "object"])
    result = await Extractor(model, memory).run(conv.id)
    assert result.status == "failed"
    assert "invalid output after one repair" in result.error
    [run] = memory.runs()
    assert run.status == "failed" and run.message_ids == ids
    assert "Sure! The user likes jazz." in run.raw and '["not", "an", "object"]' in run.raw
    assert memory.list_attributes() == [] and memory.events() == []
    # The messages count as read: a poisoned message does not make every later run fail again.
    assert memory.pending_user_messages() == []


async def test_empty_list_is_a_successful_run_with_no_attributes(scripted_llm, model, conversations, memory):
    conv, _ids = _setup(conversations, "Hello!")
    scripted_llm.add_json({"attributes": []})
    result = await Extractor(model, memory).run(conv.id)
    assert result.status == "ok" and result.proposals == []
    assert memory.runs()[0].status == "ok"
    assert memory.pending_user_messages() == []


async def test_unreachable_model_leaves_messages_pending(conversations, memory):
    conv, ids = _setup(conversations, "I live in Oslo.")
    model = OpenAICompatModel(f"http://127.0.0.1:{free_port()}/v1", "nobody", timeout_s=5)
    try:
        result = await Extractor(model, memory).run(conv.id)
    finally:
        await model.aclose()
    assert result.status == "unavailable"
    assert result.error and "model error" in result.error
    assert memory.runs() == []
    assert [m.id for m in memory.pending_user_messages()] == ids


async def test_run_pending_drains_a_backlog_in_batches(scripted_llm, model, conversations, memory):
    conv = conversations.create()
    for i in range(25):
        conversations.add_message(conv.id, "user", f"Fact number {i} about me.")
    scripted_llm.set_default(lambda body: json.dumps({"attributes": []}))
    results = await Extractor(model, memory).run_pending(conv.id)
    assert [r.status for r in results] == ["ok", "ok", "idle"]
    assert sum(len(r.message_ids) for r in results) == 25
    assert memory.pending_user_messages() == []


async def test_server_error_keeps_messages_for_later(scripted_llm, model, conversations, memory):
    conv, ids = _setup(conversations, "I live in Oslo.")
    scripted_llm.add_error(503)
    result = await Extractor(model, memory).run(conv.id)
    assert result.status == "unavailable"
    assert [m.id for m in memory.pending_user_messages()] == ids
    scripted_llm.add_json({"attributes": [_attr("The user lives in Oslo.")]})
    assert (await Extractor(model, memory).run(conv.id)).status == "ok"


async def test_request_the_model_refuses_is_a_failed_run_not_an_endless_retry(scripted_llm, model, conversations,
                                                                              memory):
    conv, ids = _setup(conversations, "A very long message.")
    scripted_llm.add_error(400, {"error": {"message": "This model's maximum context length is 2048 tokens.",
                                           "type": "invalid_request_error"}})
    result = await Extractor(model, memory).run(conv.id)
    assert result.status == "failed" and "maximum context length" in result.error
    [run] = memory.runs()
    assert run.status == "failed" and run.message_ids == ids
    assert memory.pending_user_messages() == []


async def test_run_on_given_messages_reads_only_those_still_pending(scripted_llm, model, conversations, memory):
    _conv, ids = _setup(conversations, "I like hiking.", "I have a bike.", "I speak Greek.")
    scripted_llm.add_json({"attributes": []})
    extractor = Extractor(model, memory)
    given = [conversations.get_message(ids[1]), conversations.get_message(ids[2])]
    result = await extractor.run(given)
    assert result.message_ids == ids[1:]
    assert "I like hiking." not in _prompt_text(scripted_llm.requests[0])
    assert (await extractor.run(given)).status == "idle"
    assert [m.id for m in memory.pending_user_messages()] == ids[:1]


async def test_long_messages_are_clipped_and_batched(scripted_llm, model, conversations, memory):
    conv = conversations.create()
    for i in range(4):
        conversations.add_message(conv.id, "user", f"{i} " + "word " * 400)
    scripted_llm.set_default(lambda body: json.dumps({"attributes": []}))
    results = await Extractor(model, memory).run_pending(conv.id)
    assert [len(r.message_ids) for r in results if r.status == "ok"] == [2, 2]
    assert all(len(r["messages"][-1]["content"]) < 2200 for r in scripted_llm.requests)


async def test_endpoint_without_json_schema_falls_back_to_json_mode_and_validation(conversations, memory):
    from tests.support.scripted_llm import run_scripted_llm

    conv, _ = _setup(conversations, "I grow tomatoes.")
    with run_scripted_llm(supported_response_formats={"text", "json_object"}) as llm:
        llm.add_json({"attributes": [{"statement": "The user grows tomatoes.", "reason": "said", "confidence": 2,
                                      "evidence": [1]}]})
        llm.add_json({"attributes": [_attr("The user grows tomatoes.")]})
        model = OpenAICompatModel(llm.base_url, llm.model)
        try:
            result = await Extractor(model, memory).run(conv.id)
        finally:
            await model.aclose()
    assert result.status == "ok"
    formats = [r.get("response_format", {}).get("type") for r in llm.requests]
    assert formats[-2:] == ["json_object", "json_object"]
    assert "$.attributes[0].confidence: 2 is above the maximum 1" in llm.requests[-1]["messages"][-1]["content"]
    assert [a.text for a in memory.list_attributes()] == ["The user grows tomatoes."]


async def test_a_copy_of_the_prompt_example_is_kept_only_when_the_messages_say_it(scripted_llm, model, conversations,
                                                                                   memory):
    example = "The user works night shifts as a nurse."
    assert example in Extractor(model, memory).template.text
    conv, _ = _setup(conversations, "I bake sourdough on weekends.", "Night shifts at the ward again, as a nurse.")
    scripted_llm.add_json({"attributes": [_attr(example, evidence=[1]), _attr(example, evidence=[2])]})
    result = await Extractor(model, memory).run(conv.id)
    assert [d.why for d in result.dropped] == ["copied from the prompt's example, not the messages"]
    [kept] = memory.list_attributes()
    assert kept.text == example and len(kept.evidence) == 1
