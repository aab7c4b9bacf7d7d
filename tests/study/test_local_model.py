"""End to end with the embedded model (SmolLM2 via llama-cpp-python): arms one after the other, then the judge."""

from __future__ import annotations

import pytest

from studyapp.llm.base import ChatParams
from studyapp.llm.local import LocalModel, unavailable_reason
from studyapp.store.comparisons import ComparisonStore
from studyapp.store.conversations import ConversationStore
from studyapp.study.comparison import AttributeChoice, ComparisonRunner
from studyapp.study.judge import Judge

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local_model() -> LocalModel:

    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    return LocalModel()


async def test_comparison_and_judge_with_the_embedded_model(
    local_model: LocalModel, conversations: ConversationStore, comparisons: ComparisonStore,
) -> None:
    conv = conversations.create()
    prompt = conversations.add_message(conv.id, "user", "Suggest a dinner.")
    runner = ComparisonRunner(local_model, conversations, comparisons,
                              params=ChatParams(temperature=0.0, max_tokens=24, seed=1))
    outcome = await runner.run(conv.id, prompt, [AttributeChoice("Is vegetarian", "a1")])
    record = comparisons.get(outcome.comparison_id)
    assert record.generic_response.strip() and record.personalized_response.strip()
    assert record.model == local_model.name
    runner.record_rating(outcome.comparison_id, 3, outcome.personalized_side, "left")

    judge = Judge([local_model], comparisons, params=ChatParams(temperature=0.0, max_tokens=32, seed=1))
    verdicts = await judge.judge(outcome.comparison_id)
    # A 135M model may or may not give a readable verdict; either way both orders are recorded, nothing raises.
    assert sorted(v.personalized_side for v in verdicts) == ["left", "right"]
    assert all(v.raw is not None for v in comparisons.verdicts(outcome.comparison_id))
    await local_model.aclose()
