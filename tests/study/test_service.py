"""The study service decides comparison turns from what the database holds."""

from __future__ import annotations

import random

from sqlite_utils import Database

from studyapp.domain import AttributeChange, NewAttribute
from studyapp.store.memory import MemoryStore
from studyapp.study.comparison import AttributeChoice
from studyapp.study.current import CurrentStudy
from studyapp.study.protocol import builtin_protocol, parse_protocol
from studyapp.study.service import StudyService
from tests.study.test_protocol import MINIMAL


def test_turns_between_cap_and_memory(db: Database) -> None:
    # Always compare when allowed: 2 ordinary turns between comparisons, at most 2 a day, 1 attribute needed.
    text = MINIMAL.replace("min_turns_between = 3", "min_turns_between = 2").replace(
        "probability = 0.25", "probability = 1.0")
    service = StudyService(db, study=CurrentStudy(parse_protocol(text), None), rng=random.Random(0))
    conv = service.conversations.create()

    def turn() -> tuple[bool, str]:
        prompt = service.conversations.add_message(conv.id, "user", "hello")
        decision = service.decide(service.conversations.get(conv.id), prompt)  # type: ignore[arg-type]
        if decision.compare:
            service.comparisons.create(conversation_id=conv.id, prompt_message_id=prompt.id,
                                       personalized_side="left", coin={}, attributes=[], model="m",
                                       parameters={}, templates={})
        service.conversations.add_message(conv.id, "assistant", "hi")
        return decision.compare, decision.reason

    compare, reason = turn()
    assert not compare and "too few attributes" in reason
    MemoryStore(db).apply_changes(
        [AttributeChange("add", "x", new=NewAttribute("Is vegetarian", "said so", 0.9, []))], actor="model")
    assert [turn()[0] for _ in range(7)] == [True, False, False, True, False, False, False]
    assert "daily cap reached (2 of 2 today)" in turn()[1]

    service.conversations.set_memory_enabled(conv.id, False)
    assert "memory is off" in turn()[1]


def test_builtin_study_offers_a_comparison_within_a_few_turns(db: Database) -> None:
    MemoryStore(db).apply_changes(
        [AttributeChange("add", "x", new=NewAttribute("Is vegetarian", "said so", 0.9, []))], actor="model")
    first_turns = []
    for seed in range(50):
        service = StudyService(db, study=CurrentStudy(builtin_protocol(), None), rng=random.Random(seed))
        conv = service.conversations.create()
        for n in range(1, 6):
            prompt = service.conversations.add_message(conv.id, "user", "hello")
            if service.decide(service.conversations.get(conv.id), prompt).compare:  # type: ignore[arg-type]
                first_turns.append(n)
                break
    # Without any comparison yet, each turn is a coin flip at p = 0.5: nearly every newcomer sees one in 5 turns.
    assert len(first_turns) >= 45


def test_selection_and_status(db: Database) -> None:
    service = StudyService(db)
    assert not service.has_selection([AttributeChoice("x", "a", selected=False)])
    assert service.has_selection([AttributeChoice("x", "a"), AttributeChoice("y", "b", selected=False)])
    assert service.status_line().startswith("Local study (not enrolled) · day 1 of 14")
