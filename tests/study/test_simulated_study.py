"""A simulated study, end to end: four participants over two weeks use the real app code (turns, comparisons,
labels, the judge, the record pump and sync) against the scripted model and a live collection server.

The test notes what each simulated participant did as they did it (the ledger), exports the study, and then
computes the paper's measures twice: from the ledger, and from the export alone with pandas, joining files by
id only (never by text). Per participant and per study week they must agree: stage 1 acceptance, stage 2
selection rate, relevance rate, Cohen's kappa, precision and weighted recall, stage 3 mean rating and the
share "no better", and the judge's agreement with participants (Spearman) in both orders.
"""

from __future__ import annotations

import json
import random
import re
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import time_machine
from scipy.stats import spearmanr
from statsmodels.stats.inter_rater import cohens_kappa

from studyapp.chat import ReplyFinished
from studyapp.llm.openai_compat import OpenAICompatModel
from studyapp.server.export import export
from studyapp.store.comparisons import ComparisonStore
from studyapp.store.db import open_database
from studyapp.store.memory import MemoryStore
from studyapp.store.studies import StudyStore
from studyapp.study.asking import Answer, Ask, Asking
from studyapp.study.comparison import RatingResult, RelevanceAnswer, relevance_sample, to_personalized_scale
from studyapp.study.current import current_study
from studyapp.study.judge import Judge
from studyapp.turns import ComparisonOffered, TurnController
from tests.privacy.test_intake import pump_and_sync
from tests.server.live import LiveServer, live, sqlite_server_db  # noqa: F401
from tests.support.fixtures import scripted_llm  # noqa: F401
from tests.support.keyring import MemoryKeyring, memory_keyring  # noqa: F401
from tests.support.scripted_llm import ScriptedLLM
from tests.support.timezone import machine_time_zone
from tests.sync.helpers import enroll_and_consent
from tests.turns.test_turn_controller import Context

PARTICIPANTS = 4
DAYS = 14
MEMORY = ("The user is vegetarian", "The user plays the cello", "The user lives in Lisbon")
JUDGE = "judge-model"
REQUEST = re.compile(r"request (\d+)-(\d+)")


@pytest.fixture
def utc_machine() -> Iterator[None]:
    """The machine's local time zone is UTC, so study days and weeks fall on known dates."""
    with machine_time_zone("UTC"):
        yield


def judge_base(p: int, d: int) -> int:
    """The judge's rating of participant p's day-d pair (personalized arm's view), before its position bias."""
    return (p * 7 + d * 3) % 5 + 1


def judge_rating(p: int, d: int, personalized_side: str) -> int:
    """The judge prefers Response 2 a little: the personalized arm gains a point when shown second."""
    base = judge_base(p, d)
    return min(5, base + 1) if personalized_side == "right" else base


def model_rule(body: dict[str, Any]) -> object:
    """The scripted model's three roles: selector, judge and assistant."""
    schema = json.dumps(body.get("response_format") or {})
    text = body["messages"][-1]["content"]
    if '"use"' in schema:  # the selector: the first attribute always, the second on every third day
        p, d = map(int, REQUEST.findall(text)[-1])
        return {"decisions": [{"id": 1, "use": True, "rationale": "food"},
                              {"id": 2, "use": d % 3 == 0, "rationale": "music"},
                              {"id": 3, "use": False, "rationale": "unrelated"}]}
    if '"rating"' in schema:  # the judge: which response is personalized, then its rating as shown
        request, _, responses = text.rpartition("Response 1:")
        p, d = map(int, REQUEST.findall(request)[-1])
        first = responses.split("Response 2:")[0]
        side = "left" if "personal answer" in first else "right"
        rating = judge_rating(p, d, side)
        return {"rating": 6 - rating if side == "left" else rating, "reason": "scripted"}
    system = body["messages"][0]["content"]
    return "personal answer" if "vegetarian" in system else "generic answer"


@dataclass
class Ledger:
    """What the simulated participants did, noted by the test as they did it."""

    labels: list[tuple[str, int, str]] = field(default_factory=list)  # participant, week, label
    # participant, week, comparison id, state, rating (personalized arm's view; None if skipped), selected, memory
    comparisons: list[tuple[str, int, str, str, int | None, int, int]] = field(default_factory=list)
    # participant, week, selected by the model, status, ask probability
    relevance: list[tuple[str, int, bool, str, float]] = field(default_factory=list)
    # comparison id -> (p, d): what the judge will be asked about
    judged: dict[str, tuple[int, int]] = field(default_factory=dict)
    # participant, question id, status, the answer (number, option or text; None when skipped)
    answers: list[tuple[str, str, str, object]] = field(default_factory=list)


def week_of(day: int) -> int:
    return day // 7 + 1


def answer_questions(asking: Asking, asks: list[Ask], rng: random.Random, participant: str, ledger: Ledger) -> None:
    """The study's own questions (tests/server/live.py's protocol): answered, or now and then skipped."""
    for ask in asks:
        question = ask.question
        if rng.random() < 0.2:
            answer = Answer(ask, "skipped")
        elif question.type == "likert":
            answer = Answer(ask, "answered", number=rng.randint(1, question.points or 1))
        elif question.type == "choice":
            answer = Answer(ask, "answered", option=rng.choice(question.options))
        else:
            answer = Answer(ask, "answered", text=rng.choice(("Nothing wrong.", "That I cook every day.")))
        asking.record(answer)
        value = answer.number if answer.number is not None else answer.option or answer.text
        ledger.answers.append((participant, question.id, answer.status, value))


async def take_part(p: int, live: LiveServer, llm: ScriptedLLM, path: Path, start: datetime,
                    ledger: Ledger, *, days: int = DAYS) -> str:
    """Participant p's study: a comparison most days, an ordinary turn every day, labels now and then, a
    look at memory and an attribute left for later every third day."""
    rng = random.Random(1000 + p)
    with time_machine.travel(start, tick=True):
        db = open_database(path)
        await enroll_and_consent(db, live)
        study = StudyStore(db).current()
        assert study is not None and study.participant_id is not None
        participant = study.participant_id
        memory = MemoryStore(db)
        attributes = [memory.add_participant_attribute(text) for text in MEMORY]
        # The study's own questions, asked through the app's Asking with draws of their own (the rest of the
        # simulation keeps its sequence).
        answer_rng = random.Random(2000 + p)
        asking = Asking(db, current_study(db), rng=answer_rng)
    conversation_id = None
    for d in range(days):
        with time_machine.travel(start + timedelta(days=d, hours=1), tick=True):
            week = week_of(d)
            if rng.random() < 0.8:
                compare = Context(db, llm, compare=True)
                events = [e async for e in TurnController(compare).run(conversation_id, f"request {p}-{d}")]
                offer = events[-1]
                assert isinstance(offer, ComparisonOffered)
                conversation_id = offer.saved.conversation.id
                outcome = await offer.runner.run(conversation_id, offer.saved.message, offer.choices)
                offer.runner.mark_shown(outcome.comparison_id)
                selected = {c.attribute_id for c in outcome.attributes if c.selected}
                questions = relevance_sample(outcome.attributes, unselected=1, rng=rng)
                skip = rng.random() < 0.15
                answers = []
                stop = len(questions) if rng.random() < 0.8 else rng.randrange(len(questions) + 1)  # Esc
                for i, q in enumerate(questions):
                    status = "not_asked" if skip or i >= stop else rng.choice(("yes", "yes", "no", "not_sure"))
                    answers.append(RelevanceAnswer(q.attribute_id, status, q.ask_probability,
                                                   None if status == "not_asked" else "after_rating"))
                    ledger.relevance.append((participant, week, q.attribute_id in selected, status,
                                             q.ask_probability))
                if skip:
                    result = RatingResult("skipped", outcome.comparison_id, outcome.personalized_side,
                                          relevance=tuple(answers))
                    rating = None
                else:
                    # Participants differ: the first two lean towards the personalized answer.
                    wanted = min(5, max(1, round(rng.gauss(3.6 if p < 2 else 2.8, 1.0))))
                    shown = wanted if outcome.personalized_side == "right" else 6 - wanted
                    rating = to_personalized_scale(shown, outcome.personalized_side)
                    result = RatingResult("rated", outcome.comparison_id, outcome.personalized_side,
                                          shown_choice=shown, chosen_side=rng.choice(("left", "right")),
                                          relevance=tuple(answers))
                assert offer.runner.record_result(result) == rating
                answer_questions(asking, asking.after_comparison(outcome.comparison_id), answer_rng, participant,
                                 ledger)
                ledger.comparisons.append((participant, week, outcome.comparison_id,
                                           "skipped" if skip else "rated", rating, len(selected), len(MEMORY)))
                ledger.judged[outcome.comparison_id] = (p, d)
            ordinary = Context(db, llm, compare=False)
            events = [e async for e in TurnController(ordinary).run(conversation_id, f"request {p}-{d} again")]
            conversation_id = events[0].message.conversation_id
            reply = events[-1]
            assert isinstance(reply, ReplyFinished)
            answer_questions(asking, asking.after_turn(reply.message.id), answer_rng, participant, ledger)
            if d % 3 == 1:
                for attribute in attributes:
                    label = rng.choice(("makes_sense", "makes_sense", "maybe", "doesnt_make_sense"))
                    memory.label(attribute.id, label, source="label_prompt")
                    ledger.labels.append((participant, week, label))
            if d % 3 == 2:
                memory.record_view(opened_at=(start + timedelta(days=d, hours=1)).isoformat(), screen="memory_screen")
                memory.dismiss(attributes[-1].id, source="label_prompt")
    with time_machine.travel(start + timedelta(days=days - 1, hours=20), tick=True):
        judge = OpenAICompatModel(llm.base_url, JUDGE)
        await Judge([judge], ComparisonStore(db)).judge_pending()
        await judge.aclose()
        await pump_and_sync(db, path)
    return participant


# -- the measures from the ledger (plain Python) ---------------------------------------------------------------


def kappa(pairs: list[tuple[bool, bool]]) -> float:
    n = len(pairs)
    observed = sum(a == b for a, b in pairs) / n
    a_yes = sum(a for a, _ in pairs) / n
    b_yes = sum(b for _, b in pairs) / n
    expected = a_yes * b_yes + (1 - a_yes) * (1 - b_yes)
    return (observed - expected) / (1 - expected)


def ledger_measures(ledger: Ledger) -> dict[str, Any]:
    out: dict[str, Any] = {}
    by_cell: dict[tuple[str, int], list[str]] = defaultdict(list)
    for participant, week, label in ledger.labels:
        by_cell[(participant, week)].append(label)
    out["acceptance"] = {k: v.count("makes_sense") / len(v) for k, v in by_cell.items()}
    selection: dict[tuple[str, int], list[float]] = defaultdict(list)
    ratings: dict[tuple[str, int], list[int]] = defaultdict(list)
    for participant, week, _, _, rating, selected, size in ledger.comparisons:
        selection[(participant, week)].append(selected / size)
        if rating is not None:
            ratings[(participant, week)].append(rating)
    out["selection_rate"] = {k: sum(v) / len(v) for k, v in selection.items()}
    out["mean_rating"] = {k: sum(v) / len(v) for k, v in ratings.items()}
    out["no_better"] = {k: sum(r <= 3 for r in v) / len(v) for k, v in ratings.items()}
    answered: dict[str, list[tuple[bool, bool, float]]] = defaultdict(list)
    for participant, week, selected, status, probability in ledger.relevance:
        if status in ("yes", "no"):
            for key in (participant, f"week {week}"):
                answered[key].append((selected, status == "yes", probability))
    out["relevance_rate"] = {k: sum(h for _, h, _ in v) / len(v) for k, v in answered.items()}
    out["kappa"] = {k: kappa([(s, h) for s, h, _ in v]) for k, v in answered.items()}
    out["precision"] = {k: sum(h for s, h, _ in v if s) / sum(s for s, _, _ in v) for k, v in answered.items()}
    out["recall"] = {k: sum(1 / p for s, h, p in v if s and h) / sum(1 / p for _, h, p in v if h)
                     for k, v in answered.items()}
    rated = {cid: rating for _, _, cid, _, rating, _, _ in ledger.comparisons if rating is not None}
    for side in ("left", "right"):
        pairs = [(rated[cid], judge_rating(p, d, side)) for cid, (p, d) in ledger.judged.items() if cid in rated]
        out[f"judge_{side}"] = spearmanr(*zip(*pairs, strict=True)).statistic
    return out


# -- the same measures from the export alone (pandas, joins by id) ------------------------------------------------


def read(out: Path, name: str) -> pd.DataFrame:
    return pd.read_json(out / f"{name}.jsonl", lines=True, dtype=False)


def export_measures(out: Path) -> dict[str, Any]:
    result: dict[str, Any] = {}
    participants = read(out, "participants")[["participant_id", "enrolled_at"]]
    labels = read(out, "attribute_labels").merge(participants, on="participant_id")
    days = (pd.to_datetime(labels["labeled_at"], format="ISO8601")
            - pd.to_datetime(labels["enrolled_at"], format="ISO8601")).dt.days
    labels["week"] = days // 7 + 1
    labels["accepted"] = labels["label"] == "makes_sense"
    result["acceptance"] = labels.groupby(["participant_id", "week"])["accepted"].mean().to_dict()

    comparisons = read(out, "comparisons")
    comparisons = comparisons[comparisons["state"].isin(["rated", "skipped"])].copy()
    comparisons["week"] = (comparisons["study_day"] - 1) // 7 + 1
    comparisons["selection_rate"] = comparisons["selected_count"] / comparisons["memory_size"]
    cell = ["participant_id", "week"]
    result["selection_rate"] = comparisons.groupby(cell)["selection_rate"].mean().to_dict()
    rated = comparisons[comparisons["state"] == "rated"]
    result["mean_rating"] = rated.groupby(cell)["rating"].mean().to_dict()
    result["no_better"] = (rated["rating"] <= 3).groupby([rated["participant_id"], rated["week"]]).mean().to_dict()

    relevance = read(out, "relevance_labels").merge(
        comparisons[["participant_id", "comparison_id", "week"]], on=["participant_id", "comparison_id"])
    answered = relevance[relevance["relevance_status"].isin(["yes", "no"])].copy()
    answered["human"] = answered["relevance_status"] == "yes"
    answered["weight"] = 1 / answered["ask_probability"]
    answered["week_key"] = "week " + answered["week"].astype(str)
    for name in ("relevance_rate", "kappa", "precision", "recall"):
        result[name] = {}
    for by in ("participant_id", "week_key"):
        for key, group in answered.groupby(by):
            table = pd.crosstab(group["selected_by_model"], group["human"]).reindex(
                index=[False, True], columns=[False, True], fill_value=0)
            result["relevance_rate"][key] = group["human"].mean()
            result["kappa"][key] = cohens_kappa(table.to_numpy()).kappa
            result["precision"][key] = group.loc[group["selected_by_model"], "human"].mean()
            hits = group["human"] & group["selected_by_model"]
            result["recall"][key] = (group["weight"] * hits).sum() / group.loc[group["human"], "weight"].sum()

    verdicts = read(out, "judge_verdicts").merge(
        rated[["participant_id", "comparison_id", "rating"]], on=["participant_id", "comparison_id"],
        suffixes=("_judge", ""))
    for side in ("left", "right"):
        order = verdicts[verdicts["personalized_side"] == side]
        result[f"judge_{side}"] = spearmanr(order["rating"], order["rating_judge"]).statistic
    return result


async def test_a_simulated_study_answers_the_papers_questions_from_the_export(
        live: LiveServer, scripted_llm: ScriptedLLM, memory_keyring: MemoryKeyring, tmp_path: Path,
        utc_machine: None) -> None:
    scripted_llm.set_default(model_rule)
    start = datetime.now(UTC).replace(hour=9, minute=0, second=0, microsecond=0)
    ledger = Ledger()
    for p in range(PARTICIPANTS):
        await take_part(p, live, scripted_llm, tmp_path / f"participant-{p}.db", start, ledger)

    out = tmp_path / "export"
    export(live.storage, out, "jsonl", researcher="test")
    expected, found = ledger_measures(ledger), export_measures(out)
    assert set(found) == set(expected)
    for measure, values in expected.items():
        if isinstance(values, dict):
            assert set(found[measure]) == set(values), measure
            for key, value in values.items():
                assert found[measure][key] == pytest.approx(value), (measure, key)
        else:
            assert found[measure] == pytest.approx(values), measure

    # Enough happened for the measures to mean something: both weeks, skips, unanswered questions, both orders.
    assert {week for _, week, *_ in ledger.comparisons} == {1, 2}
    states = read(out, "comparisons")["state"].value_counts().to_dict()
    assert states.get("skipped", 0) > 0 and states.get("rated", 0) > 20
    statuses = set(read(out, "relevance_labels")["relevance_status"])
    assert statuses == {"yes", "no", "not_sure", "not_asked"}
    assert 0 < expected["judge_left"] < 1 and 0 < expected["judge_right"] < 1
    # Every record came from an app on this contract, and every turn's schedule decision is there.
    decisions = read(out, "schedule_decisions")
    assert len(decisions) == sum(1 for _ in ledger.comparisons) + PARTICIPANTS * DAYS
    assert set(read(out, "comparisons")["contract_version"]) == {2}

    # The study's own questions: every one asked is a row, with what became of it (per participant and question).
    answers = read(out, "question_answers")
    exported = answers.groupby(["participant_id", "question_id", "status"]).size().to_dict()
    noted: dict[tuple[str, str, str], int] = defaultdict(int)
    for participant, question_id, status, _ in ledger.answers:
        noted[(participant, question_id, status)] += 1
    assert exported == noted
    likert = answers[answers["question_id"] == "written_for_you"].dropna(subset=["answer_number"])
    assert sorted(likert["answer_number"]) == sorted(
        v for _, q, s, v in ledger.answers if q == "written_for_you" and s == "answered")
    # Only after rated comparisons, and no reply brought more than one question.
    rated_ids = {cid for _, _, cid, state, *_ in ledger.comparisons if state == "rated"}
    assert set(answers["comparison_id"].dropna()) <= rated_ids
    assert answers["message_id"].dropna().is_unique
    assert {"answered", "skipped"} <= set(answers["status"])
