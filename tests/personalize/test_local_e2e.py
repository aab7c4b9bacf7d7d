"""End to end with the embedded model (SmolLM2-135M): slow, so marked; asserts structure, not quality.

Run just this: .venv/bin/pytest -m slow tests/personalize/test_local_e2e.py
"""

from __future__ import annotations

import pytest

from studyapp.llm.base import ChatParams
from studyapp.llm.local import LocalModel, unavailable_reason
from studyapp.personalize.generate import generate
from studyapp.personalize.pipeline import Personalization

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason())),
]


async def test_three_stages_run_end_to_end_with_the_embedded_model(db, conversations):
    model = LocalModel()
    try:
        personalization = Personalization(db, extractor_model=model)
        conv = conversations.create()
        for text in ("I work night shifts as a nurse in Leeds.", "I bake sourdough bread every weekend."):
            conversations.add_message(conv.id, "user", text)
            conversations.add_message(conv.id, "assistant", "That sounds nice.")

        results = await personalization.extract(conv.id)
        assert results[0].status in ("ok", "failed")  # whatever the tiny model says, nothing crashes
        assert results[-1].status == "idle"
        [run] = personalization.store.runs()
        assert run.model == model.name and run.template == "extract@1" and run.raw
        assert personalization.store.pending_user_messages() == []
        for attribute in personalization.attributes():
            assert 0.4 <= attribute.confidence <= 1 and attribute.evidence

        personalization.memory.add("I am vegetarian.")
        request = conversations.add_message(conv.id, "user", "What should I cook tonight?")
        selection = await personalization.select_for(conv, request)
        rows = personalization.store.selections(request.id)
        assert {r.attribute_id for r in rows} == {a.id for a in personalization.attributes()}
        assert all(r.template == "select@1" and r.model == model.name for r in rows)

        history = conversations.messages(conv.id)
        answer = await generate(model, history, selection.selected or ["The user is vegetarian."],
                                ChatParams(temperature=0.0, max_tokens=24))
        assert answer.template == "assistant_personalized@1" and answer.text.strip()
    finally:
        await model.aclose()
