"""Snapshots of the comparison screen. Update with --snapshot-update after a deliberate change."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from studyapp.llm.openai_compat import OpenAICompatModel
from studyapp.store.comparisons import ComparisonStore
from studyapp.store.conversations import ConversationStore
from studyapp.store.db import open_database
from studyapp.study.comparison import AttributeChoice, ComparisonRunner, Progress
from studyapp.tui.screens.comparison import ComparisonScreen
from tests.study.test_comparison_screen import Host
from tests.support.scripted_llm import ScriptedLLM, run_scripted_llm

SIZE = (110, 32)
GENERIC = ("Here are three quick dinner ideas:\n\n1. **Pasta** with tomato sauce and parmesan\n"
           "2. **Chicken stir-fry** with vegetables\n3. **Omelette** with a green salad")
PERSONAL = ("Since you cook in a small kitchen, try a **one-pan vegetarian dinner**:\n\n"
            "- chickpeas, peppers and feta, roasted together\n- serve with flatbread\n\n"
            "Ready in 30 minutes, one pan to wash.")


@pytest.fixture
def llm() -> Iterator[ScriptedLLM]:
    with run_scripted_llm() as server:
        server.set_default(lambda body: PERSONAL if "vegetarian" in body["messages"][0]["content"] else GENERIC)
        yield server


def make_app(llm: ScriptedLLM, tmp_path: Path) -> Host:
    db = open_database(tmp_path / "studyapp.db")
    conversations = ConversationStore(db)
    conv = conversations.create("Dinner")
    prompt = conversations.add_message(conv.id, "user", "What should I cook tonight?")
    runner = ComparisonRunner(OpenAICompatModel(llm.base_url, llm.model), conversations, ComparisonStore(db),
                              rng=random.Random(3))
    choices = [AttributeChoice("Is vegetarian", "a1"), AttributeChoice("Has a small kitchen", "a2"),
               AttributeChoice("Plays the cello", "a3", selected=False)]

    def generate(progress: Callable[[Progress], None]) -> Any:
        return runner.run(conv.id, prompt, choices, progress=progress)

    return Host(lambda: ComparisonScreen(generate, on_shown=runner.mark_shown, rng=random.Random(0)))


async def _ready(pilot: Any) -> None:
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


def test_rating_step(snap_compare: Any, llm: ScriptedLLM, tmp_path: Path) -> None:
    assert snap_compare(make_app(llm, tmp_path), terminal_size=SIZE, run_before=_ready)


def test_relevance_step(snap_compare: Any, llm: ScriptedLLM, tmp_path: Path) -> None:
    async def run_before(pilot: Any) -> None:
        await _ready(pilot)
        await pilot.press("4")
        await pilot.pause()

    assert snap_compare(make_app(llm, tmp_path), terminal_size=SIZE, run_before=run_before)
