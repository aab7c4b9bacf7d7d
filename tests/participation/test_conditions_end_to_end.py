"""Two participants in two randomized conditions, end to end: each app enrolls with the live collection server, is
allocated a condition it is never told, chats through the study's model gateway, rates a comparison and answers the
study's questions; the researchers export (the condition on every row, the answers in question_answers) and the
report compares the two conditions.

Real parts throughout: the collection server under uvicorn (SQLite and PostgreSQL), a scripted OpenAI-compatible
upstream behind the gateway, `studyapp enroll` and `studyapp sync` on the command line, the app's own Services (the
object the screens call) with its TurnController and Asking, and `studyapp-server export` and `report`.
"""

from __future__ import annotations

import asyncio
import csv
import json
from collections.abc import Iterator
from contextlib import aclosing
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from studyapp.chat import ReplyFinished, ReplyStarted
from studyapp.cli import cli
from studyapp.context import AppContext
from studyapp.server.cli import cli as server_cli
from studyapp.store.studies import StudyStore
from studyapp.study.asking import Answer
from studyapp.study.comparison import RatingResult
from studyapp.tui.services import Services
from studyapp.turns import ComparisonOffered
from tests.participation.test_study_models_end_to_end import KEY_ENV, UPSTREAM_KEY, enroll, researchers_configure
from tests.server import live as f
from tests.server.live import LiveServer, serve
from tests.server.test_conditions import start
from tests.support.keyring import MemoryKeyring
from tests.support.protocols import STUDY_ROUTES
from tests.support.scripted_llm import ScriptedLLM, run_scripted_llm

pytest.importorskip("matplotlib")  # the report's charts

SEED = 20261130
# Every eligible turn becomes a comparison (the second turn of each participant), and the after-turn question comes
# after every reply, so the sequence below is the same on every run; blocks of two put one participant in each.
PROTOCOL = (f.PROTOCOL.replace("probability = 0.5\nmin_attributes", "probability = 1.0\nmin_attributes")
            .replace("probability = 0.5\ndaily_cap = 2", "probability = 1.0\ndaily_cap = 2")
            + STUDY_ROUTES + '''
[conditions]
block_size = 2

[conditions.memory_on]
description = "Ordinary replies use what the assistant learned."

[conditions.memory_off]
description = "Ordinary replies are written without it."
personalization.memory = "off"
''')
PERSONAL, GENERIC = "A tofu scramble suits you.", "Eggs and toast are classic."


def upstream_rule(body: dict[str, Any]) -> object:
    """The upstream's answer by what is asked: the selector, the extractor, the judge, or a reply (personal when
    the participant's attribute is in the system prompt)."""
    schema = json.dumps(body.get("response_format") or {})
    if '"use"' in schema:
        return {"decisions": [{"id": 1, "use": True, "rationale": "diet matters for food"}]}
    if '"attributes"' in schema:
        return {"attributes": [{"statement": "The user is vegetarian.", "reason": "they said so",
                                "confidence": 0.9, "evidence": [1]}]}
    if '"rating"' in schema:
        return {"rating": 4}
    system = body["messages"][0]["content"]
    return PERSONAL if "vegetarian" in system else GENERIC


@pytest.fixture
def upstream(monkeypatch: pytest.MonkeyPatch) -> Iterator[ScriptedLLM]:
    monkeypatch.setenv(KEY_ENV, UPSTREAM_KEY)
    with run_scripted_llm(api_key=UPSTREAM_KEY) as llm:
        llm.set_default(upstream_rule)
        yield llm


@pytest.fixture
def conditions_live(server_db: Path | str) -> Iterator[LiveServer]:
    storage, token = start(server_db, PROTOCOL, seed=SEED)
    try:
        with serve(storage) as base_url:
            yield LiveServer(base_url, storage, token)
    finally:
        storage.close()  # type: ignore[attr-defined]


async def turn(services: Services, conversation_id: str | None, text: str) -> list[Any]:
    async with aclosing(services.turns.run(conversation_id, text)) as events:
        return [event async for event in events]


async def take_part(data_dir: Path) -> dict[str, Any]:
    """Three turns as the chat screen runs them (the questions asked where it asks them), then what was seen."""
    services = Services(AppContext.create(data_dir))
    seen: dict[str, Any] = {}
    try:
        # 1. An ordinary turn (nothing learned yet), then the after-turn question about its reply.
        events = await turn(services, None, "I am vegetarian. What should I cook tonight?")
        finished = events[-1]
        assert isinstance(finished, ReplyFinished) and finished.message.status == "complete", finished
        conversation_id = finished.message.conversation_id
        [ask] = services.asking.after_turn(finished.message.id)
        assert ask.question.id == "written_for_you"
        services.asking.record(Answer(ask, "answered", number=5))
        results = await services.extract(conversation_id)
        assert "ok" in [r.status for r in results], results

        # 2. The draw is won: a comparison, rated, then the after-comparison questions (one answered, one skipped).
        events = await turn(services, conversation_id, "And breakfast?")
        offer = events[-1]
        assert isinstance(offer, ComparisonOffered), events
        outcome = await offer.runner.run(conversation_id, offer.saved.message, offer.choices)
        personalized_left = outcome.personalized_side == "left"
        result = RatingResult(status="rated", comparison_id=outcome.comparison_id,
                              personalized_side=outcome.personalized_side, shown_choice=2 if personalized_left else 4,
                              chosen_side=outcome.personalized_side)
        services.turns.finish_comparison(offer, result)
        asks = services.asking.after_comparison(outcome.comparison_id)
        assert [a.question.id for a in asks] == ["felt_understood", "what_was_assumed"]
        services.asking.record(Answer(asks[0], "answered", option="Response 1" if personalized_left else "Response 2"))
        services.asking.record(Answer(asks[1], "skipped"))
        seen["comparison_id"] = outcome.comparison_id
        assert await services.judge_pending() == 2

        # 3. An ordinary turn again: shaped by the memory in one condition, not in the other.
        events = await turn(services, conversation_id, "Something quick for lunch?")
        started = next(e for e in events if isinstance(e, ReplyStarted))
        seen["attributes_used"] = list(started.attributes)
        seen["lunch"] = events[-1].message.content
        seen["status_line"] = services.participation.study.status_line()
        stored = StudyStore(services.app_ctx.db).current()
        assert stored is not None
        seen["protocol"] = json.dumps(stored.protocol)
        await services.participation.flush()
    finally:
        await services.aclose()
        services.app_ctx.close()
    return seen


def read_csv(folder: Path, name: str) -> list[dict[str, str]]:
    with (folder / f"{name}.csv").open(encoding="utf-8", newline="") as file:
        return list(csv.DictReader(file))


def test_two_participants_in_two_conditions_from_enrollment_to_the_report(
        conditions_live: LiveServer, upstream: ScriptedLLM, memory_keyring: MemoryKeyring, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    live = conditions_live
    monkeypatch.delenv("STUDYAPP_API_KEY", raising=False)
    researchers_configure(live, upstream)

    # Two apps enroll; on one machine they share its keyring, so each keeps its own token as on its own computer.
    installs: dict[str, tuple[Path, dict[Any, str]]] = {}
    for name in ("first", "second"):
        data_dir = tmp_path / name
        enroll(live, data_dir)
        app_ctx = AppContext.create(data_dir)
        participant_id = StudyStore(app_ctx.db).current().participant_id  # type: ignore[union-attr]
        app_ctx.close()
        installs[participant_id] = (data_dir, dict(memory_keyring.passwords))
    allocated = {str(p): str(c) for p, c in live.sql("SELECT id, condition FROM participants")}
    assert sorted(allocated.values()) == ["memory_off", "memory_on"]  # one block of two: one in each

    seen = {}
    for participant_id, (data_dir, passwords) in installs.items():
        memory_keyring.passwords = dict(passwords)
        seen[participant_id] = asyncio.run(take_part(data_dir))
        result = CliRunner().invoke(cli, ["sync", "--data-dir", str(data_dir)])
        assert result.exit_code == 0, result.output

    for participant_id, what in seen.items():
        condition = allocated[participant_id]
        # Never told: neither condition's name is in the protocol the app holds, nor on its status line.
        assert "memory_on" not in what["protocol"] and "memory_off" not in what["protocol"]
        assert "memory_o" not in what["status_line"]
        # The condition changed the ordinary reply, and only that: both had their comparison.
        if condition == "memory_on":
            assert what["attributes_used"] == ["The user is vegetarian."] and what["lunch"] == PERSONAL
        else:
            assert what["attributes_used"] == [] and what["lunch"] == GENERIC

    # The researchers' export: the condition on every row of every file, the answers with what they refer to.
    out = tmp_path / "export"
    result = CliRunner().invoke(server_cli, ["export", "--db", live.db_arg, "--out", str(out), "--format", "csv"])
    assert result.exit_code == 0, result.output
    for path in sorted(out.glob("*.csv")):
        rows = read_csv(out, path.stem)
        assert all(r["condition"] == allocated[r["participant_id"]] for r in rows), path.name
    messages = read_csv(out, "messages")
    assert {allocated[r["participant_id"]] for r in messages if r["content"] == PERSONAL} >= {"memory_on"}
    lunch = {allocated[r["participant_id"]]: r["content"] for r in messages
             if r["role"] == "assistant" and r["content"] in (PERSONAL, GENERIC) and not r["comparison_id"]}
    assert lunch["memory_off"] == GENERIC
    answers = read_csv(out, "question_answers")
    assert len(answers) == 6  # three asks each: answered, answered, skipped
    for participant_id, what in seen.items():
        own = {r["question_id"]: r for r in answers if r["participant_id"] == participant_id}
        assert own["written_for_you"]["status"] == "answered" and own["written_for_you"]["answer_number"] == "5"
        assert own["written_for_you"]["message_id"] and own["written_for_you"]["ask_probability"] == "1.0"
        assert own["felt_understood"]["comparison_id"] == what["comparison_id"]
        assert own["felt_understood"]["answer_option"] in ("Response 1", "Response 2")
        assert own["what_was_assumed"]["status"] == "skipped" and own["what_was_assumed"]["answer_text"] == ""
        assert own["written_for_you"]["study_day"] == "1"
    comparisons = read_csv(out, "comparisons")
    assert sorted(allocated[r["participant_id"]] for r in comparisons if r["state"] == "rated") == [
        "memory_off", "memory_on"]

    # The report compares the conditions, and says how few participants each comparison rests on.
    report = tmp_path / "report.html"
    result = CliRunner().invoke(server_cli, ["report", str(out), "--out", str(report), "--seed", "0"])
    assert result.exit_code == 0, result.output
    text = report.read_text(encoding="utf-8")
    assert "Conditions compared" in text
    assert "Question written_for_you (version 1): mean point: memory_on minus memory_off" in text
    assert "Question felt_understood (version 1)" in text
    # One participant in each: no model can be fitted, and the report says so rather than claim a difference.
    assert "Too few participants for a mixed model" in text
    assert "memory_off: 1 participant, 1 participant-week" in text and "memory_on: 1 participant" in text
