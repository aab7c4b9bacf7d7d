"""Whatever JSON the model sends, extraction and reconciliation never crash and never write unknown ids.

Hypothesis draws model answers (well-formed, wrong types, out-of-range numbers, ids that were never shown);
each is served by the scripted OpenAI-compatible server to the real pipeline over a real database.
"""

from __future__ import annotations

import asyncio

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from studyapp.llm.openai_compat import OpenAICompatModel
from studyapp.personalize.extract import Extractor

numbers = st.one_of(st.integers(-3, 12), st.floats(-1, 2, allow_nan=False), st.text(max_size=3), st.none())
ids = st.one_of(st.integers(-2, 30), st.floats(0, 5, allow_nan=False), st.text(max_size=2), st.none(), st.booleans())
statements = st.one_of(st.sampled_from(["The user lives in Oslo.", "the user lives in oslo", "The user has a cat.",
                                        "The user no longer has a cat.", "", "   "]), st.text(max_size=20))

proposal = st.fixed_dictionaries(
    {"statement": statements, "reason": st.one_of(st.text(max_size=10), st.integers()),
     "confidence": numbers, "evidence": st.one_of(st.lists(ids, max_size=4), ids)},
)
extraction_answer = st.one_of(
    st.fixed_dictionaries({"attributes": st.lists(proposal, max_size=4)}),
    st.lists(proposal, max_size=2),
    st.text(max_size=30),
)
decision = st.fixed_dictionaries(
    {"new": ids, "action": st.one_of(st.sampled_from(["add", "update", "delete", "keep"]), st.text(max_size=4)),
     "target": ids, "text": st.one_of(st.none(), statements), "reason": st.text(max_size=10)},
)
reconcile_answer = st.one_of(st.fixed_dictionaries({"decisions": st.lists(decision, max_size=5)}),
                             st.text(max_size=30))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(first=extraction_answer, second=extraction_answer, reconcile=st.lists(reconcile_answer, min_size=2,
                                                                              max_size=2))
def test_any_answer_leaves_memory_consistent(scripted_llm, conversations, memory, first, second, reconcile):
    if not memory.list_attributes():
        memory.add_participant_attribute("The user lives in Bergen.")
        memory.add_participant_attribute("The user has a cat.")
    conv = conversations.create()
    message = conversations.add_message(conv.id, "user", "I moved to Oslo and my cat died.")
    for answer in (first, second, *reconcile):
        if isinstance(answer, str):
            scripted_llm.add_raw_content(answer)
        else:
            scripted_llm.add_json(answer)

    async def run():
        model = OpenAICompatModel(scripted_llm.base_url, scripted_llm.model)
        try:
            return await Extractor(model, memory).run(conv.id)
        finally:
            await model.aclose()

    result = asyncio.run(run())
    scripted_llm.clear()  # answers not asked for stay out of the next example

    assert result.status in ("ok", "failed")
    assert memory.pending_user_messages() == []
    known_messages = memory.existing_message_ids([message.id])
    for attribute in memory.list_attributes(include_deleted=True):
        assert 0 <= attribute.confidence <= 1
        assert attribute.text.strip()
    for proposal in result.proposals:
        assert set(proposal.evidence) <= known_messages and proposal.confidence >= 0.4
    attribute_ids = {a.id for a in memory.list_attributes(include_deleted=True)}
    assert {e.attribute_id for e in memory.events()} <= attribute_ids
    if result.status == "failed":
        assert memory.runs()[-1].status == "failed" and memory.runs()[-1].raw is not None
