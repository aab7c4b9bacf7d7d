"""Reconciliation over a sequence of sessions (add, update, contradict, forget) against the scripted server."""

from __future__ import annotations

from studyapp.personalize.extract import Extractor
from studyapp.personalize.memory import near_duplicate, normalize


def _attr(statement: str, confidence: float = 0.9, evidence=(1,)) -> dict:
    return {"statement": statement, "reason": "they said so", "confidence": confidence, "evidence": list(evidence)}


def _session(conversations, *texts):
    conv = conversations.create()
    ids = [conversations.add_message(conv.id, "user", t).id for t in texts]
    return conv, ids


def _texts(memory) -> list[str]:
    return sorted(a.text for a in memory.list_attributes())


def test_normalize_and_near_duplicates():
    assert normalize("The user's dog is called Rex!") == "dog is called rex"
    assert near_duplicate("The user lives in Berlin.", "the user lives in berlin")
    assert near_duplicate("The user likes green tea.", "User likes green tea")
    assert not near_duplicate("The user lives in Berlin.", "The user lives in Paris.")


async def test_sessions_add_update_contradict_forget(scripted_llm, model, conversations, memory):
    extractor = Extractor(model, memory)

    # Session 1: empty memory, two new attributes; no reconciliation call is needed.
    conv, s1 = _session(conversations, "I'm a nurse in Paris.")
    scripted_llm.add_json({"attributes": [_attr("The user lives in Paris."), _attr("The user works as a nurse.")]})
    assert (await extractor.run(conv.id)).status == "ok"
    assert len(scripted_llm.requests) == 1
    assert _texts(memory) == ["The user lives in Paris.", "The user works as a nurse."]
    paris = next(a for a in memory.list_attributes() if "Paris" in a.text)

    # Session 2: a move updates the existing attribute (short ids E1/E2 in the prompt, no real ids).
    conv, s2 = _session(conversations, "We moved to Berlin last month.")
    scripted_llm.add_json({"attributes": [_attr("The user lives in Berlin.", 0.8)]})
    scripted_llm.add_rule(lambda body: {"decisions": [
        {"new": 1, "action": "update", "target": _e_number(body, "Paris"), "text": "The user lives in Berlin.",
         "reason": "They moved from Paris to Berlin."}]})
    result = await extractor.run(conv.id)
    assert result.status == "ok"
    reconcile_prompt = scripted_llm.requests[2]["messages"][-1]["content"]
    assert "N1: The user lives in Berlin." in reconcile_prompt and "E1:" in reconcile_prompt
    assert paris.id not in reconcile_prompt
    assert _texts(memory) == ["The user lives in Berlin.", "The user works as a nurse."]
    berlin = memory.get(paris.id)
    assert berlin.text == "The user lives in Berlin." and berlin.evidence == [*s1, *s2]
    [update] = [e for e in memory.events(paris.id) if e.action == "update"]
    assert update.before["text"] == "The user lives in Paris." and update.after["text"] == "The user lives in Berlin."
    assert update.reason == "They moved from Paris to Berlin." and update.actor == "model"
    assert update.run_id == result.run_id
    assert memory.runs()[-1].template == "extract@1,reconcile@1"
    assert memory.runs()[0].template == "extract@1"  # session 1 needed no reconciliation call

    # Session 3: a contradiction deletes the nurse attribute.
    conv, _ = _session(conversations, "I quit nursing, I'm not a nurse anymore.")
    scripted_llm.add_json({"attributes": [_attr("The user no longer works as a nurse.")]})
    scripted_llm.add_rule(lambda body: {"decisions": [
        {"new": 1, "action": "delete", "target": _e_number(body, "nurse"), "text": None, "reason": "Quit."}]})
    assert (await extractor.run(conv.id)).status == "ok"
    assert _texts(memory) == ["The user lives in Berlin."]
    deleted = [a for a in memory.list_attributes(include_deleted=True) if a.status == "deleted"]
    assert [a.text for a in deleted] == ["The user works as a nurse."]
    assert [e.action for e in memory.events(deleted[0].id)] == ["add", "delete"]

    # Session 4: a near-duplicate is merged locally (evidence added), no reconciliation call.
    conv, s4 = _session(conversations, "Berlin is home now.")
    scripted_llm.add_json({"attributes": [_attr("the user lives in berlin")]})
    before = len(scripted_llm.requests)
    assert (await extractor.run(conv.id)).status == "ok"
    assert len(scripted_llm.requests) == before + 1
    assert _texts(memory) == ["The user lives in Berlin."]
    assert memory.get(paris.id).evidence == [*s1, *s2, *s4]
    assert memory.events(paris.id)[-1].action == "keep"

    # Session 5: the participant forgets it; the extractor may not bring it back.
    memory.forget(paris.id)
    conv, _ = _session(conversations, "Still in Berlin.")
    scripted_llm.add_json({"attributes": [_attr("The user lives in Berlin.")]})
    assert (await extractor.run(conv.id)).status == "ok"
    assert _texts(memory) == []
    assert scripted_llm.pending == 0


def _e_number(body: dict, word: str) -> int:
    """The short id the model was shown for the memory entry containing ``word``."""
    for line in body["messages"][-1]["content"].splitlines():
        if line.startswith("E") and word in line:
            return int(line.split(":")[0][1:])
    raise AssertionError(f"no memory entry with {word!r} in the prompt")


async def test_invalid_ids_from_the_model_never_touch_memory(scripted_llm, model, conversations, memory):
    existing = memory.add_participant_attribute("The user has a dog.")
    conv, _ = _session(conversations, "I bake bread. I speak Dutch. I own a boat.")
    scripted_llm.add_json({"attributes": [_attr("The user bakes bread."), _attr("The user speaks Dutch."),
                                          _attr("The user owns a boat.")]})
    scripted_llm.add_json({"decisions": [
        {"new": 1, "action": "update", "target": 99, "text": "The user bakes sourdough.", "reason": "x"},
        {"new": 2, "action": "delete", "target": 0, "reason": "y"},
        {"new": 7, "action": "delete", "target": 1, "reason": "no such proposal"},
        # proposal 3 has no decision at all
    ]})
    result = await Extractor(model, memory).run(conv.id)
    assert result.status == "ok"
    # Update with an unknown target falls back to add (of the proposal, not the model's rewrite);
    # delete with an unknown target is ignored; the undecided proposal is added.
    assert _texts(memory) == ["The user bakes bread.", "The user has a dog.", "The user owns a boat."]
    assert memory.get(existing.id).status == "active"


async def test_failed_reconciliation_writes_nothing(scripted_llm, model, conversations, memory):
    memory.add_participant_attribute("The user has a dog.")
    conv, ids = _session(conversations, "My dog is a poodle.")
    scripted_llm.add_json({"attributes": [_attr("The user's dog is a poodle.")]})
    scripted_llm.add_raw_content("{decisions: oops")
    scripted_llm.add_json({"decisions": [{"new": "one", "action": "merge"}]})
    result = await Extractor(model, memory).run(conv.id)
    assert result.status == "failed"
    assert result.error.startswith("reconciliation: invalid output after one repair")
    assert _texts(memory) == ["The user has a dog."]
    [run] = memory.runs()
    assert run.status == "failed" and run.message_ids == ids
    assert "{decisions: oops" in run.raw and "The user's dog is a poodle." in run.raw
    assert [e.actor for e in memory.events()] == ["participant"]


async def test_only_the_most_similar_memory_is_shown(scripted_llm, model, conversations, memory):
    for i in range(30):
        memory.add_participant_attribute(f"The user collects item type {i}.")
    memory.add_participant_attribute("The user plays chess on weekends.")
    conv, _ = _session(conversations, "Chess tournament tomorrow!")
    scripted_llm.add_json({"attributes": [_attr("The user plays chess in tournaments.")]})
    scripted_llm.add_json({"decisions": [{"new": 1, "action": "add", "target": None, "reason": "new"}]})
    assert (await Extractor(model, memory).run(conv.id)).status == "ok"
    shown = [line for line in scripted_llm.requests[1]["messages"][-1]["content"].splitlines()
             if line.startswith("E")]
    assert len(shown) == 20
    assert any("chess on weekends" in line for line in shown)


async def test_forgetting_while_the_model_decides_wins(scripted_llm, model, conversations, memory):
    import asyncio

    pet = memory.add_participant_attribute("The user has a dog.")
    conv, _ = _session(conversations, "My dog is a poodle.")
    scripted_llm.add_json({"attributes": [_attr("The user has a poodle.")]})
    held = scripted_llm.add_json({"decisions": [{"new": 1, "action": "update", "target": 1,
                                                 "text": "The user has a poodle.", "reason": "breed"}]},
                                 hold_after=0)
    run = asyncio.create_task(Extractor(model, memory).run(conv.id))
    await held.wait_held_async()
    memory.forget(pet.id)  # the participant, on the memory screen, meanwhile
    held.release()
    result = await run
    assert result.status == "ok"
    assert memory.get(pet.id).status == "deleted" and memory.get(pet.id).text == "The user has a dog."
    assert [(e.action, e.actor) for e in memory.events(pet.id)] == [("add", "participant"), ("delete", "participant")]


async def test_a_copy_of_the_prompt_example_never_overwrites_an_attribute(scripted_llm, model, conversations, memory):
    job = memory.add_participant_attribute("The user works as a teacher.")
    conv, _ = _session(conversations, "I teach maths now.")
    scripted_llm.add_json({"attributes": [_attr("The user teaches maths.")]})
    scripted_llm.add_json({"decisions": [{"new": 1, "action": "update", "target": 1,
                                          "text": "The user lives in Berlin.", "reason": "They moved."}]})
    assert (await Extractor(model, memory).run(conv.id)).status == "ok"
    assert memory.get(job.id).text == "The user teaches maths."
