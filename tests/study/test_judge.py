"""The LLM judge against the scripted server: both orders, the personalized point of view, bad output kept."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from studyapp.cli import cli
from studyapp.domain import Message
from studyapp.llm.openai_compat import OpenAICompatModel
from studyapp.store.comparisons import ComparisonStore
from studyapp.store.conversations import ConversationStore
from studyapp.store.db import open_database
from studyapp.study.judge import Judge, read_rating
from tests.study.test_comparison import ATTRIBUTES, prompt, reply_by_arm, runner_for  # noqa: F401
from tests.support.scripted_llm import ScriptedLLM

GENERIC = "Pasta with tomato sauce."
PERSONAL = "A vegetarian one-pan dinner."


def rated_comparison(conversations: ConversationStore, comparisons: ComparisonStore, *, side: str = "left",
                     rating: int | None = 4) -> str:
    """A comparison made as before migration m008 (no context recorded); ``rating`` None: skipped."""
    cid, personalized_message_id = unrated_comparison(conversations, comparisons, side=side)
    comparisons.record_rating(cid, rating=rating, shown_choice=rating, chosen_arm="personalized",
                              chosen_message_id=personalized_message_id, skipped=rating is None, comment=None,
                              time_to_rate_ms=None)
    return cid


def unrated_comparison(conversations: ConversationStore, comparisons: ComparisonStore, *,
                       side: str = "left") -> tuple[str, str]:
    """Both answers stored, nothing rated yet: (comparison id, the personalized answer's message id)."""
    conv = conversations.create()
    prompt = conversations.add_message(conv.id, "user", "What should I cook tonight?")
    cid = comparisons.create(
        conversation_id=conv.id, prompt_message_id=prompt.id, personalized_side=side, coin={"bit": 1},
        attributes=[{"attribute_id": "a1", "text": "Is vegetarian", "selected": True, "rationale": ""}],
        model="m", parameters={}, templates={})
    g = conversations.add_message(conv.id, "assistant", GENERIC, arm="generic", comparison_id=cid, in_thread=False)
    p = conversations.add_message(conv.id, "assistant", PERSONAL, arm="personalized", comparison_id=cid,
                                  in_thread=False)
    comparisons.set_arm_messages(cid, generic_message_id=g.id, personalized_message_id=p.id)
    return cid, p.id


def personal_position(body: dict[str, Any]) -> int:
    """1 if the judge was shown the personalized answer as Response 1, else 2."""
    text = body["messages"][-1]["content"]
    first = re.search(r"Response 1:\n<<<\n(.*?)\n>>>", text, re.S)
    assert first is not None
    return 1 if first.group(1) == PERSONAL else 2


def model(llm: ScriptedLLM) -> OpenAICompatModel:
    return OpenAICompatModel(llm.base_url, llm.model)


async def test_both_orders_agree_for_a_consistent_judge(
    scripted_llm: ScriptedLLM, conversations: ConversationStore, comparisons: ComparisonStore,
) -> None:
    cid = rated_comparison(conversations, comparisons)
    # This judge always finds the personalized answer much better, wherever it is shown.
    scripted_llm.set_default(lambda body: {"rating": 1 if personal_position(body) == 1 else 5, "reason": "fits"})
    verdicts = await Judge([model(scripted_llm)], comparisons).judge(cid)
    assert sorted((v.personalized_side, v.shown_rating, v.rating) for v in verdicts) == [
        ("left", 1, 5), ("right", 5, 5)]
    assert len(scripted_llm.requests) == 2
    stored = comparisons.verdicts(cid)
    assert sorted((v.personalized_side, v.rating) for v in stored) == [("left", 5), ("right", 5)]
    assert all(v.template == "judge@2" and v.judge_model == scripted_llm.model for v in stored)
    assert json.loads(stored[0].raw or "")["reason"] == "fits"
    # The judge saw the request and what is known about the user.
    prompt = scripted_llm.requests[0]["messages"][-1]["content"]
    assert "What should I cook tonight?" in prompt and "- Is vegetarian" in prompt


async def test_position_bias_shows_in_the_two_orders(
    scripted_llm: ScriptedLLM, conversations: ConversationStore, comparisons: ComparisonStore,
) -> None:
    cid = rated_comparison(conversations, comparisons)
    scripted_llm.set_default(lambda body: {"rating": 1})  # always "Response 1 much better"
    verdicts = await Judge([model(scripted_llm)], comparisons).judge(cid)
    assert sorted(v.rating for v in verdicts if v.rating) == [1, 5]  # cancels out on average


async def test_malformed_judge_output_is_kept_with_no_rating(
    scripted_llm: ScriptedLLM, conversations: ConversationStore, comparisons: ComparisonStore,
) -> None:
    cid = rated_comparison(conversations, comparisons)
    scripted_llm.add_raw_content("I think the first one, definitely!")
    scripted_llm.add_json({"rating": 7})
    verdicts = await Judge([model(scripted_llm)], comparisons).judge(cid)
    assert [v.rating for v in verdicts] == [None, None]
    raws = {v.raw for v in comparisons.verdicts(cid)}
    assert raws == {"I think the first one, definitely!", '{"rating": 7}'}


async def test_unreachable_judge_records_nothing_and_says_why(
    scripted_llm: ScriptedLLM, conversations: ConversationStore, comparisons: ComparisonStore,
) -> None:
    cid = rated_comparison(conversations, comparisons)
    for _ in range(2):
        scripted_llm.add_error(401)
    judge = Judge([model(scripted_llm)], comparisons)
    assert await judge.judge(cid) == []
    assert comparisons.verdicts(cid) == []
    assert len(judge.failures) == 2 and all(f.startswith(scripted_llm.model) for f in judge.failures)
    assert comparisons.unjudged(scripted_llm.model)[0].id == cid  # picked up again next time


async def test_judge_pending_skips_judged_unless_rerun(
    scripted_llm: ScriptedLLM, conversations: ConversationStore, comparisons: ComparisonStore,
) -> None:
    first = rated_comparison(conversations, comparisons)
    scripted_llm.set_default(lambda body: {"rating": 3})
    judge = Judge([model(scripted_llm)], comparisons)
    assert await judge.judge_pending() == 2
    second = rated_comparison(conversations, comparisons, side="right")
    assert await judge.judge_pending() == 2  # only the new one
    assert len(comparisons.verdicts(first)) == 2 and len(comparisons.verdicts(second)) == 2
    assert await judge.judge_pending(rerun=True) == 4
    assert len(comparisons.verdicts(first)) == 4


def judge_prompts(llm: ScriptedLLM) -> list[str]:
    """What the judge was asked (the arms stream; the judge asks for JSON)."""
    return [b["messages"][-1]["content"] for b in llm.requests if not b.get("stream")]


def context_of(prompt_text: str) -> str:
    found = re.search(r"The conversation before the request:\n<<<\n(.*?)\n>>>", prompt_text, re.S)
    assert found is not None
    return found.group(1)


async def judged_after_rating(llm: ScriptedLLM, conversations: ConversationStore, comparisons: ComparisonStore,
                              prompt: Message, *, edit: tuple[int, str] | None = None) -> str:
    """A comparison generated, rated and then judged; ``edit`` changes one earlier message before judging."""
    replies = reply_by_arm(llm)
    runner = runner_for(llm, conversations, comparisons)
    outcome = await runner.run(prompt.conversation_id, prompt, ATTRIBUTES)
    runner.record_rating(outcome.comparison_id, 2, outcome.personalized_side, "left")
    if edit is not None:
        index, text = edit
        earlier = conversations.messages(prompt.conversation_id, before_n=prompt.n)
        conversations.update_message(earlier[index].id, content=text)
    llm.set_default(lambda body: {"rating": 3} if not body.get("stream") else replies["generic"])
    await Judge([model(llm)], comparisons).judge(outcome.comparison_id)
    return outcome.comparison_id


async def test_the_judge_sees_the_conversation_the_answers_were_written_with(
    scripted_llm: ScriptedLLM, conversations: ConversationStore, comparisons: ComparisonStore, prompt: Message,
) -> None:
    cid = await judged_after_rating(scripted_llm, conversations, comparisons, prompt)
    record = comparisons.get(cid)
    earlier = conversations.messages(prompt.conversation_id, before_n=prompt.n)
    # The messages before the request that both arms were given, exactly as they went into the arms' requests.
    assert record.context_message_ids == [m.id for m in earlier]
    arm_request = next(b for b in scripted_llm.requests if b.get("stream"))
    assert [m["content"] for m in arm_request["messages"][1:-1]] == [m.content for m in earlier]
    transcript = "User: Hi!\n\nAssistant: Hello, how can I help?"
    assert record.context_sha256 == hashlib.sha256(transcript.encode()).hexdigest()

    prompts = judge_prompts(scripted_llm)
    assert len(prompts) == 2 and all(context_of(p) == transcript for p in prompts)
    verdicts = comparisons.verdicts(cid)
    assert len(verdicts) == 2
    assert all(v.context_sha256 == record.context_sha256 and v.context_chars == len(transcript) for v in verdicts)


async def test_a_message_edited_since_shows_in_the_verdicts_hash(
    scripted_llm: ScriptedLLM, conversations: ConversationStore, comparisons: ComparisonStore, prompt: Message,
) -> None:
    cid = await judged_after_rating(scripted_llm, conversations, comparisons, prompt, edit=(0, "Hi there!"))
    record = comparisons.get(cid)
    transcript = "User: Hi there!\n\nAssistant: Hello, how can I help?"
    assert all(context_of(p) == transcript for p in judge_prompts(scripted_llm))
    hashes = {v.context_sha256 for v in comparisons.verdicts(cid)}
    assert hashes == {hashlib.sha256(transcript.encode()).hexdigest()} and record.context_sha256 not in hashes


async def test_a_comparison_from_before_m008_is_judged_with_an_empty_context(
    scripted_llm: ScriptedLLM, conversations: ConversationStore, comparisons: ComparisonStore,
) -> None:
    cid = rated_comparison(conversations, comparisons)
    assert comparisons.get(cid).context_message_ids is None
    scripted_llm.set_default(lambda body: {"rating": 3})
    await Judge([model(scripted_llm)], comparisons).judge(cid)
    assert all(context_of(p) == "(none)" for p in judge_prompts(scripted_llm))
    verdicts = comparisons.verdicts(cid)
    assert len(verdicts) == 2
    assert {(v.context_sha256, v.context_chars) for v in verdicts} == {(hashlib.sha256(b"").hexdigest(), 0)}


async def test_skipped_comparisons_are_judged_and_unfinished_ones_never(
    scripted_llm: ScriptedLLM, conversations: ConversationStore, comparisons: ComparisonStore,
) -> None:
    skipped = rated_comparison(conversations, comparisons, rating=None)
    assert comparisons.get(skipped).state == "skipped"
    abandoned, _ = unrated_comparison(conversations, comparisons)
    assert comparisons.mark_abandoned() == 1
    scripted_llm.set_default(lambda body: {"rating": 2})
    judge = Judge([model(scripted_llm)], comparisons)
    assert [c.id for c in comparisons.unjudged(scripted_llm.model)] == [skipped]
    assert await judge.judge_pending() == 2
    assert sorted(v.personalized_side for v in comparisons.verdicts(skipped)) == ["left", "right"]
    assert comparisons.verdicts(abandoned) == []
    assert await judge.judge_pending(rerun=True) == 2  # a re-run takes the skipped pair again, still not the other
    assert len(comparisons.verdicts(skipped)) == 4 and comparisons.verdicts(abandoned) == []


def test_read_rating() -> None:
    assert read_rating({"rating": 4}) == 4
    assert read_rating({"rating": "2"}) == 2
    assert read_rating({"rating": 3.0}) == 3
    for bad in (None, {}, {"rating": 0}, {"rating": 6}, {"rating": True}, {"rating": 2.5}, "x", [1]):
        assert read_rating(bad) is None


def test_judge_command_reruns_with_a_named_model(scripted_llm: ScriptedLLM, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STUDYAPP_API_KEY", "")
    db = open_database(tmp_path / "studyapp.db")
    cid = rated_comparison(ConversationStore(db), ComparisonStore(db))
    db.close()
    scripted_llm.set_default(lambda body: {"rating": 1 if personal_position(body) == 1 else 4})
    args = ["judge", "--data-dir", str(tmp_path), "--model", scripted_llm.model, "--base-url", scripted_llm.base_url]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "2 verdicts stored." in result.output and cid in result.output
    assert "0 verdicts stored." in CliRunner().invoke(cli, args).output  # already judged
    result = CliRunner().invoke(cli, [*args, "--rerun"])
    assert "2 verdicts stored." in result.output
    db = open_database(tmp_path / "studyapp.db")
    assert sorted(v.rating for v in ComparisonStore(db).verdicts(cid)) == [4, 4, 5, 5]
    db.close()


def test_judge_command_reports_failures(tmp_path: Path) -> None:
    db = open_database(tmp_path / "studyapp.db")
    rated_comparison(ConversationStore(db), ComparisonStore(db))
    db.close()
    result = CliRunner().invoke(cli, ["judge", "--data-dir", str(tmp_path), "--model", "m",
                                      "--base-url", "http://127.0.0.1:9/v1"])
    assert result.exit_code == 1
    assert "judge calls failed" in result.output and "Traceback" not in result.output


def test_study_status_and_comparisons_commands(tmp_path: Path) -> None:
    db = open_database(tmp_path / "studyapp.db")
    conversations, comparisons = ConversationStore(db), ComparisonStore(db)
    cid = rated_comparison(conversations, comparisons, side="right", rating=2)
    comparisons.add_verdict(cid, judge_model="j", personalized_side="left", rating=4, raw="{}", template="judge@1")
    db.close()
    result = CliRunner().invoke(cli, ["study", "status", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Local study (not enrolled) · day 1 of 14")
    result = CliRunner().invoke(cli, ["study", "comparisons", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "rating 2" in result.output and "judge 4.0 (1)" in result.output and "1 comparisons." in result.output
    result = CliRunner().invoke(cli, ["study", "comparisons", "--json", "--data-dir", str(tmp_path)])
    row = json.loads(result.output)
    assert (row["comparison_id"], row["rating"], row["personalized_side"]) == (cid, 2, "right")
    assert row["judge_ratings"] == [4]
    # The context the study receives too: the participant's local UTC offset is always known on the device.
    assert isinstance(row["utc_offset_min"], int) and "prompt_message_id" in row
