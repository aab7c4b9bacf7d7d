"""Comparison turns against the scripted OpenAI-compatible server, over real HTTP, into a real database."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.stats import binomtest
from sqlite_utils import Database

from studyapp.domain import Message
from studyapp.events import CONTRACT_VERSION
from studyapp.llm.base import ChatParams
from studyapp.llm.openai_compat import OpenAICompatModel
from studyapp.privacy.records import comparison_records, verdict_record
from studyapp.store.comparisons import AlreadyRated, ComparisonStore
from studyapp.store.conversations import ConversationStore
from studyapp.study.comparison import (
    AttributeChoice,
    ComparisonFailed,
    ComparisonRunner,
    Progress,
    RelevanceAnswer,
    draw_side,
    relevance_sample,
    to_personalized_scale,
)
from tests.support.scripted_llm import ScriptedLLM, ScriptedReply

ATTRIBUTES = [
    AttributeChoice("Is vegetarian", "a-veg", True, "the request is about dinner"),
    AttributeChoice("Lives in a small flat", "a-flat", True, "cooking space"),
    AttributeChoice("Plays the cello", "a-cello", False, "unrelated"),
]
PARAMS = ChatParams(temperature=0.3, max_tokens=200, seed=11)


def arm_of(body: dict[str, Any]) -> str:
    return "personalized" if "Is vegetarian" in body["messages"][0]["content"] else "generic"


def reply_by_arm(llm: ScriptedLLM, **options: Any) -> dict[str, ScriptedReply]:
    """Answer each arm with its own text, whichever request arrives first."""
    replies = {
        "generic": ScriptedReply(content="A generic dinner idea: pasta with tomato sauce.", **options),
        "personalized": ScriptedReply(content="A vegetarian one-pan dinner for a small kitchen.", **options),
    }
    llm.set_default(lambda body: replies[arm_of(body)])
    return replies


def asked(attribute_id: str, status: str, ask_probability: float = 1.0) -> RelevanceAnswer:
    """A relevance question the participant answered (after the rating, as the screen asks)."""
    return RelevanceAnswer(attribute_id, status, ask_probability, asked_when="after_rating")


def in_thread(db: Database, message_id: str) -> bool:
    return bool(db.execute("SELECT in_thread FROM messages WHERE id = ?", [message_id]).fetchone()[0])


@pytest.fixture
def prompt(conversations: ConversationStore) -> Message:
    conv = conversations.create("Dinner")
    conversations.add_message(conv.id, "user", "Hi!")
    conversations.add_message(conv.id, "assistant", "Hello, how can I help?")
    return conversations.add_message(conv.id, "user", "What should I cook tonight?")


def runner_for(llm: ScriptedLLM, conversations: ConversationStore, comparisons: ComparisonStore,
               **kwargs: Any) -> ComparisonRunner:
    return ComparisonRunner(OpenAICompatModel(llm.base_url, llm.model), conversations, comparisons,
                            params=PARAMS, **kwargs)


async def test_both_arms_are_generated_and_recorded(
    scripted_llm: ScriptedLLM, conversations: ConversationStore, comparisons: ComparisonStore, db: Database,
    prompt: Message,
) -> None:
    reply_by_arm(scripted_llm)
    runner = runner_for(scripted_llm, conversations, comparisons, rng=random.Random(1))
    events: list[Progress] = []
    outcome = await runner.run(prompt.conversation_id, prompt, ATTRIBUTES, progress=events.append)

    record = comparisons.get(outcome.comparison_id)
    texts = {"generic": "A generic dinner idea: pasta with tomato sauce.",
             "personalized": "A vegetarian one-pan dinner for a small kitchen."}
    # Sides follow the recorded coin; what is returned is exactly what was stored.
    assert record.personalized_side == outcome.personalized_side == record.coin["personalized_side"]
    assert record.coin["bit"] in (0, 1) and record.coin["source"].startswith("random.Random")
    assert outcome.left_text == record.response_on("left")
    assert outcome.right_text == record.response_on("right")
    assert record.personalized_response == texts["personalized"]
    assert record.generic_response == texts["generic"]
    assert record.prompt == "What should I cook tonight?"
    assert record.status == "generating"  # until the screen shows it
    assert record.model == scripted_llm.model
    assert record.parameters == PARAMS.to_dict()
    assert record.templates == {"generic": "assistant@1", "personalized": "assistant_personalized@1"}
    assert record.attributes[2] == {"attribute_id": "a-cello", "text": "Plays the cello", "selected": False,
                                    "rationale": "unrelated"}

    # Same model, parameters and history; only the personalized request holds the selected attributes.
    bodies = {arm_of(b): b for b in scripted_llm.requests}
    assert set(bodies) == {"generic", "personalized"}
    for key in ("model", "temperature", "max_tokens", "seed"):
        assert bodies["generic"][key] == bodies["personalized"][key]
    assert bodies["generic"]["messages"][1:] == bodies["personalized"]["messages"][1:]
    assert bodies["generic"]["messages"][-1]["content"] == "What should I cook tonight?"
    system = bodies["personalized"]["messages"][0]["content"]
    assert "Lives in a small flat" in system and "Plays the cello" not in system

    # Both arms are stored as comparison messages outside the thread.
    for arm, message_id in (("generic", record.generic_message_id), ("personalized", record.personalized_message_id)):
        message = conversations.get_message(message_id)
        assert message is not None
        assert (message.arm, message.comparison_id, message.status) == (arm, record.id, "complete")
        assert message.content == texts[arm]
        assert message.duration_ms is not None and message.first_token_ms is not None
        assert not in_thread(db, message_id)
    assert [m.content for m in conversations.messages(prompt.conversation_id)][-1] == "What should I cook tonight?"

    # Progress is by side only; the last report has both complete.
    assert events[-1] == Progress(len(outcome.left_text), len(outcome.right_text), True, True)
    assert all(isinstance(e.left_chars, int) for e in events)


async def test_arms_run_concurrently_and_flush_partial_text(
    scripted_llm: ScriptedLLM, conversations: ConversationStore, comparisons: ComparisonStore, prompt: Message,
) -> None:
    replies = reply_by_arm(scripted_llm, hold_after=2)
    runner = runner_for(scripted_llm, conversations, comparisons, flush_interval_s=0)
    task = asyncio.create_task(runner.run(prompt.conversation_id, prompt, ATTRIBUTES))
    # Both streams are paused mid-way at the same time: the second request went out before the first ended.
    await replies["generic"].wait_held_async()
    await replies["personalized"].wait_held_async()
    assert not task.done()
    record = comparisons.list()[0]
    partial = conversations.get_message(record.generic_message_id)
    assert partial is not None and partial.status == "streaming"
    assert partial.content == "A generic"  # flushed while streaming
    for reply in replies.values():
        reply.release()
    outcome = await task
    assert {outcome.left_text, outcome.right_text} == {r.content for r in replies.values()}


async def test_record_rating_converts_and_continues_with_the_chosen_arm(
    scripted_llm: ScriptedLLM, conversations: ConversationStore, comparisons: ComparisonStore, db: Database,
    prompt: Message,
) -> None:
    reply_by_arm(scripted_llm)
    runner = runner_for(scripted_llm, conversations, comparisons)
    outcome = await runner.run(prompt.conversation_id, prompt, ATTRIBUTES)
    runner.mark_shown(outcome.comparison_id)
    assert comparisons.get(outcome.comparison_id).shown_at is not None
    side = outcome.personalized_side
    # The participant finds Response 1 somewhat better and continues with Response 1.
    rating = runner.record_rating(
        outcome.comparison_id, 2, side, "left", comment="  more practical  ",
        relevance=[asked("a-veg", "yes"), asked("a-cello", "no"), RelevanceAnswer("a-flat", "not_asked", 1.0)],
        time_to_rate_ms=4200.0,
    )
    assert rating == (4 if side == "left" else 2)
    record = comparisons.get(outcome.comparison_id)
    assert (record.rating, record.shown_choice, record.status) == (rating, 2, "rated")
    assert record.chosen == ("personalized" if side == "left" else "generic")
    assert record.comment == "more practical" and record.time_to_rate_ms == 4200.0
    assert in_thread(db, outcome.left_message_id) and not in_thread(db, outcome.right_message_id)
    assert conversations.messages(prompt.conversation_id)[-1].content == outcome.left_text

    labels = {label.attribute_id: label for label in comparisons.relevance_labels(outcome.comparison_id)}
    assert labels["a-veg"].selected_by_model and labels["a-veg"].human_relevant is True
    assert not labels["a-cello"].selected_by_model and labels["a-cello"].human_relevant is False
    assert labels["a-flat"].human_relevant is None and labels["a-flat"].labeled_at is None
    assert [(labels[a].status, labels[a].asked_when) for a in ("a-veg", "a-cello", "a-flat")] == [
        ("yes", "after_rating"), ("no", "after_rating"), ("not_asked", None)]

    [(_, event), *_labels] = comparison_records(comparisons.get(outcome.comparison_id),
                                                comparisons.relevance_labels(outcome.comparison_id))
    assert event["rating"] == rating and event["personalized_side"] == side and event["skipped"] is False

    with pytest.raises(AlreadyRated):
        runner.record_rating(outcome.comparison_id, 3, side, "right")
    with pytest.raises(ValueError, match="put the personalized arm on the"):
        runner.record_rating(outcome.comparison_id, 3, "right" if side == "left" else "left", "right")


async def test_skip_is_recorded_and_a_reply_continues(
    scripted_llm: ScriptedLLM, conversations: ConversationStore, comparisons: ComparisonStore, db: Database,
    prompt: Message,
) -> None:
    reply_by_arm(scripted_llm)
    runner = runner_for(scripted_llm, conversations, comparisons)
    outcome = await runner.run(prompt.conversation_id, prompt, ATTRIBUTES)
    runner.record_skip(outcome.comparison_id, outcome.personalized_side, time_to_rate_ms=800.0)
    record = comparisons.get(outcome.comparison_id)
    assert record.skipped and record.status == "skipped"
    assert record.rating is None and record.chosen is None
    assert in_thread(db, record.personalized_message_id) and not in_thread(db, record.generic_message_id)


async def test_a_failed_arm_is_recorded_and_the_other_answers(
    scripted_llm: ScriptedLLM, conversations: ConversationStore, comparisons: ComparisonStore, db: Database,
    prompt: Message,
) -> None:
    def rule(body: dict[str, Any]) -> ScriptedReply:
        if arm_of(body) == "generic":
            return ScriptedReply(status=500, error_body={"error": {"message": "boom"}})
        return ScriptedReply(content="Personal answer.")

    scripted_llm.set_default(rule)
    runner = runner_for(scripted_llm, conversations, comparisons)
    with pytest.raises(ComparisonFailed) as info:
        await runner.run(prompt.conversation_id, prompt, ATTRIBUTES)
    record = comparisons.get(info.value.comparison_id)
    assert record.status == "error"
    generic = conversations.get_message(record.generic_message_id)
    assert generic is not None and generic.status == "error" and generic.error
    assert info.value.reply_message_id == record.personalized_message_id
    assert conversations.messages(prompt.conversation_id)[-1].content == "Personal answer."
    assert str(info.value)  # a message the participant can read


async def test_comparison_needs_a_selected_attribute(
    scripted_llm: ScriptedLLM, conversations: ConversationStore, comparisons: ComparisonStore, prompt: Message,
) -> None:
    runner = runner_for(scripted_llm, conversations, comparisons)
    with pytest.raises(ValueError, match="at least one selected attribute"):
        await runner.run(prompt.conversation_id, prompt, [AttributeChoice("x", "a", selected=False)])
    assert comparisons.list() == [] and scripted_llm.requests == []


def test_relevance_sample_holds_selected_and_some_unselected() -> None:
    attrs = [AttributeChoice(f"t{i}", f"a{i}", selected=i < 2) for i in range(6)] + [AttributeChoice("no id")]
    sample = relevance_sample(attrs, unselected=2, rng=random.Random(0))
    ids = {a.attribute_id for a in sample}
    assert {"a0", "a1"} <= ids and len(ids) == 4 and "" not in ids
    assert {q.text for q in sample} == {f"t{i}" for i in range(6) if f"a{i}" in ids}


@pytest.mark.parametrize(("unselected", "expected"), [(2, 2 / 4), (3, 3 / 4), (4, 1.0), (9, 1.0), (0, None)])
def test_relevance_sample_says_the_chance_each_question_was_asked(unselected: int, expected: float | None) -> None:
    # Two selected attributes, four unselected ones with an id, one without (never asked about).
    attrs = [AttributeChoice(f"t{i}", f"a{i}", selected=i < 2) for i in range(6)] + [AttributeChoice("no id")]
    sample = relevance_sample(attrs, unselected=unselected, rng=random.Random(7))
    chances = {q.attribute_id: q.ask_probability for q in sample}
    assert chances["a0"] == chances["a1"] == 1.0
    unasked = {a: p for a, p in chances.items() if a not in ("a0", "a1")}
    assert len(unasked) == min(unselected, 4)
    assert set(unasked.values()) == ({expected} if expected is not None else set())


def test_relevance_sample_chances_match_how_often_each_is_asked() -> None:
    # The recorded chance is the one the draw has: each of 5 unselected attributes is asked about 2 times in 5.
    attrs = [AttributeChoice("picked", "s", selected=True)] + [
        AttributeChoice(f"t{i}", f"u{i}", selected=False) for i in range(5)]
    rng = random.Random(2026)
    draws = 5_000
    asked = dict.fromkeys((f"u{i}" for i in range(5)), 0)
    for _ in range(draws):
        for question in relevance_sample(attrs, unselected=2, rng=rng):
            if question.attribute_id != "s":
                assert question.ask_probability == 2 / 5
                asked[question.attribute_id] += 1
    for count in asked.values():
        assert binomtest(count, draws, 2 / 5).pvalue > 1e-6


def test_a_relevance_answer_has_one_status_and_a_time_only_when_asked() -> None:
    assert RelevanceAnswer("a", "not_asked", 0.5).asked_when is None
    for status, asked_when in (("maybe", "after_rating"), ("yes", None), ("not_asked", "after_rating"),
                               ("no", "during_rating")):
        with pytest.raises(ValueError):
            RelevanceAnswer("a", status, 1.0, asked_when)


def test_the_store_refuses_an_unknown_relevance_status_and_keeps_nothing_of_the_rating(
    conversations: ConversationStore, comparisons: ComparisonStore,
) -> None:
    conv = conversations.create()
    prompt = conversations.add_message(conv.id, "user", "q")
    cid = comparisons.create(conversation_id=conv.id, prompt_message_id=prompt.id, personalized_side="left",
                             coin={}, attributes=[{"attribute_id": "a1", "text": "t", "selected": True}],
                             model="m", parameters={}, templates={})
    row = {"attribute_id": "a1", "selected_by_model": True, "model_relevant": True, "status": "maybe",
           "asked_when": "after_rating", "ask_probability": 1.0}
    with pytest.raises(ValueError, match="relevance status"):
        comparisons.record_rating(cid, rating=3, shown_choice=3, chosen_arm=None, chosen_message_id=None,
                                  skipped=False, comment=None, time_to_rate_ms=None, relevance=[row])
    assert comparisons.get(cid).rated_at is None and comparisons.relevance_labels(cid) == []


# The coin and the rating's point of view ----------------------------------------------------------------


def test_seeded_coin_is_balanced_over_10000_draws() -> None:
    rng = random.Random(2026)
    lefts = sum(draw_side(rng)[0] == "left" for _ in range(10_000))
    assert binomtest(lefts, 10_000, 0.5).pvalue > 0.01


def test_real_coin_is_balanced_over_10000_draws() -> None:
    draws = [draw_side() for _ in range(10_000)]
    assert all(coin["source"] == "secrets.randbits(1)" for _, coin in draws[:5])
    lefts = sum(side == "left" for side, _ in draws)
    # A fair coin fails this about once in a million runs; a biased one (e.g. 53%) fails every time.
    assert binomtest(lefts, 10_000, 0.5).pvalue > 1e-6


def test_rating_conversion_table() -> None:
    assert [to_personalized_scale(c, "left") for c in range(1, 6)] == [5, 4, 3, 2, 1]
    assert [to_personalized_scale(c, "right") for c in range(1, 6)] == [1, 2, 3, 4, 5]
    for bad in (0, 6, True, 2.0):
        with pytest.raises(ValueError):
            to_personalized_scale(bad, "left")  # type: ignore[arg-type]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(side=st.sampled_from(["left", "right"]), shown=st.integers(1, 5), chosen=st.sampled_from(["left", "right"]))
def test_stored_rating_is_from_the_personalized_point_of_view(
    conversations: ConversationStore, comparisons: ComparisonStore, side: str, shown: int, chosen: str,
) -> None:
    conv = conversations.create()
    prompt = conversations.add_message(conv.id, "user", "q")
    cid = comparisons.create(conversation_id=conv.id, prompt_message_id=prompt.id, personalized_side=side,
                             coin={"bit": int(side == "left")}, attributes=[], model="m", parameters={},
                             templates={})
    generic = conversations.add_message(conv.id, "assistant", "g", arm="generic", comparison_id=cid,
                                        in_thread=False)
    personal = conversations.add_message(conv.id, "assistant", "p", arm="personalized", comparison_id=cid,
                                         in_thread=False)
    comparisons.set_arm_messages(cid, generic_message_id=generic.id, personalized_message_id=personal.id)
    runner = ComparisonRunner(None, conversations, comparisons)  # type: ignore[arg-type]
    runner.record_rating(cid, shown, side, chosen)
    stored = comparisons.get(cid)
    # What the participant preferred, read off the shown scale: the left answer for 1-2, the right for 4-5.
    preferred = "left" if shown < 3 else "right" if shown > 3 else None
    strength = abs(shown - 3)
    assert stored.rating is not None and abs(stored.rating - 3) == strength
    if preferred is None:
        assert stored.rating == 3
    elif preferred == side:
        assert stored.rating > 3  # the personalized answer was preferred
    else:
        assert stored.rating < 3
    assert stored.shown_choice == shown and stored.personalized_side == side
    assert stored.chosen == ("personalized" if chosen == side else "generic")


async def test_records_for_the_outbox_have_exactly_the_event_fields(
    scripted_llm: ScriptedLLM, conversations: ConversationStore, comparisons: ComparisonStore, prompt: Message,
) -> None:
    from studyapp.privacy.collect import check_payload

    reply_by_arm(scripted_llm)
    runner = runner_for(scripted_llm, conversations, comparisons)
    outcome = await runner.run(prompt.conversation_id, prompt, ATTRIBUTES)
    runner.record_rating(outcome.comparison_id, 4, outcome.personalized_side, "right",
                         relevance=[asked("a-veg", "yes"), asked("a-cello", "not_sure")])
    comparisons.add_verdict(outcome.comparison_id, judge_model="j", personalized_side="left", rating=2, raw="{}",
                            template="judge@1")
    comparisons.add_verdict(outcome.comparison_id, judge_model="j", personalized_side="right", rating=None,
                            raw="??", template="judge@1")
    records = comparison_records(comparisons.get(outcome.comparison_id),
                                 comparisons.relevance_labels(outcome.comparison_id))
    assert [kind for kind, _ in records] == ["comparison", "relevance_label", "relevance_label"]
    verdicts = [verdict_record(v)[1] for v in comparisons.verdicts(outcome.comparison_id)]
    readable, unreadable = comparisons.verdicts(outcome.comparison_id, judge_model="j")
    # An answer the app could not read is a record too: the judge's failures count in its agreement.
    assert [(v["verdict_id"], v["personalized_side"], v["rating"], v["verdict_status"]) for v in verdicts] == [
        (readable.id, "left", 2, "ok"), (unreadable.id, "right", None, "unreadable")]
    assert verdicts[0]["judge_template"] == "judge@1" and verdicts[0]["contract_version"] == CONTRACT_VERSION
    for kind, payload in [*records, *(("judge_verdict", v) for v in verdicts)]:
        check_payload(kind, payload)  # raises on a missing or unknown field
    comparison = records[0][1]
    assert comparison["rating"] == to_personalized_scale(4, outcome.personalized_side)
    assert comparison["chosen"] == ("personalized" if outcome.personalized_side == "right" else "generic")
