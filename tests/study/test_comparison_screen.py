"""Pilot tests of the whole comparison flow: a small host app, the real runner, the scripted model server."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest
from sqlite_utils import Database
from textual.app import App, ComposeResult
from textual.pilot import Pilot
from textual.widgets import Markdown, Static

from studyapp.domain import Message
from studyapp.llm.openai_compat import OpenAICompatModel
from studyapp.privacy.collect import check_payload
from studyapp.privacy.records import comparison_records
from studyapp.store.comparisons import ComparisonStore
from studyapp.store.conversations import ConversationStore
from studyapp.study.comparison import AttributeChoice, ComparisonRunner, Progress, RatingResult
from studyapp.tui.screens.comparison import REMINDER, ComparisonScreen
from tests.support.scripted_llm import ScriptedLLM, ScriptedReply

GENERIC = "**Generic**: pasta with tomato sauce."
PERSONAL = "**Personal**: a vegetarian one-pan dinner."
ATTRIBUTES = [
    AttributeChoice("Is vegetarian", "a-veg", True, "dinner"),
    AttributeChoice("Plays the cello", "a-cello", False, "unrelated"),
]


class Host(App[None]):
    """Pushes one comparison screen and keeps what it returns."""

    def __init__(self, make_screen: Callable[[], ComparisonScreen]) -> None:
        super().__init__()
        self.make_screen = make_screen
        self.results: list[RatingResult] = []

    def compose(self) -> ComposeResult:
        yield Static("chat")

    def on_mount(self) -> None:
        self.push_screen(self.make_screen(), callback=self.results.append)


def arm_of(body: dict[str, Any]) -> str:
    return "personalized" if "Is vegetarian" in body["messages"][0]["content"] else "generic"


@pytest.fixture
def prompt(conversations: ConversationStore) -> Message:
    conv = conversations.create("Dinner")
    return conversations.add_message(conv.id, "user", "What should I cook tonight?")


@pytest.fixture
def runner(scripted_llm: ScriptedLLM, conversations: ConversationStore,
           comparisons: ComparisonStore) -> ComparisonRunner:
    return ComparisonRunner(OpenAICompatModel(scripted_llm.base_url, scripted_llm.model), conversations,
                            comparisons, rng=random.Random(5))


def screen_for(runner: ComparisonRunner, prompt: Message, *, attributes: list[AttributeChoice] = ATTRIBUTES,
               **kwargs: Any) -> Callable[[], ComparisonScreen]:
    def generate(progress: Callable[[Progress], None]) -> Any:
        return runner.run(prompt.conversation_id, prompt, attributes, progress=progress)

    return lambda: ComparisonScreen(generate, on_shown=runner.mark_shown, rng=random.Random(0), **kwargs)


async def until_step(pilot: Pilot[None], step: str) -> ComparisonScreen:
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
    screen = pilot.app.screen
    assert isinstance(screen, ComparisonScreen)
    assert screen.step == step
    return screen


def markdown_source(screen: ComparisonScreen, number: int) -> str:
    return screen.query_one(f"#markdown-{number}", Markdown).source


async def test_rate_answer_questions_and_continue(
    scripted_llm: ScriptedLLM, runner: ComparisonRunner, comparisons: ComparisonStore,
    conversations: ConversationStore, db: Database, prompt: Message,
) -> None:
    replies = {"generic": ScriptedReply(content=GENERIC, hold_after=1),
               "personalized": ScriptedReply(content=PERSONAL, hold_after=1)}
    scripted_llm.set_default(lambda body: replies[arm_of(body)])
    app = Host(screen_for(runner, prompt))
    async with app.run_test(size=(120, 40)) as pilot:
        await replies["generic"].wait_held_async()
        await replies["personalized"].wait_held_async()
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, ComparisonScreen) and screen.step == "waiting"
        # While generating: no response text anywhere on screen, and keys do nothing.
        assert not screen.query_one("#responses").display
        assert markdown_source(screen, 1) == "" and markdown_source(screen, 2) == ""
        await pilot.press("3")
        assert screen.step == "waiting"
        for reply in replies.values():
            reply.release()

        screen = await until_step(pilot, "rate")
        record = comparisons.list()[0]
        left = record.response_on("left")
        assert {markdown_source(screen, 1), markdown_source(screen, 2)} == {GENERIC, PERSONAL}
        assert markdown_source(screen, 1) == left
        assert record.status == "shown" and record.shown_at is not None
        assert str(screen.query_one("#reminder", Static).render()) == REMINDER

        await pilot.press("1")  # Response 1 much better
        assert screen.step == "relevance"
        assert [q.attribute_id for q in screen.questions] and len(screen.questions) == 2
        first = screen.questions[0].attribute_id
        await pilot.press("y", "n")
        assert screen.step == "comment"
        await pilot.press(*"clear 2 steps", "enter")  # digits typed go into the comment, not the rating
        assert screen.step == "continue"
        await pilot.press("2")
        await pilot.pause()

    result = app.results[0]
    assert result.status == "rated" and result.shown_choice == 1 and result.chosen_side == "right"
    assert result.comment == "clear 2 steps"
    assert [(a.attribute_id, a.status) for a in result.relevance] == [
        (first, "yes"), (screen.questions[1].attribute_id, "no")]
    assert result.time_to_rate_ms is not None and result.time_to_rate_ms >= 0

    rating = runner.record_result(result)
    stored = comparisons.get(record.id)
    assert stored.rating == rating == (5 if record.personalized_side == "left" else 1)
    assert stored.chosen == ("personalized" if record.personalized_side == "right" else "generic")
    # The chosen answer (Response 2) continues the conversation.
    assert conversations.messages(prompt.conversation_id)[-1].content == record.response_on("right")


async def test_skip_then_continue_with_either(
    scripted_llm: ScriptedLLM, runner: ComparisonRunner, comparisons: ComparisonStore,
    conversations: ConversationStore, prompt: Message,
) -> None:
    scripted_llm.set_default(lambda body: GENERIC if arm_of(body) == "generic" else PERSONAL)
    app = Host(screen_for(runner, prompt))
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await until_step(pilot, "rate")
        await pilot.press("s")
        assert screen.step == "continue"
        assert "Rating skipped" in str(screen.query_one("#continue-question", Static).render())
        await pilot.press("escape")
        await pilot.pause()
    result = app.results[0]
    assert result.status == "skipped" and result.shown_choice is None and result.chosen_side is None
    runner.record_result(result)
    stored = comparisons.list()[0]
    assert stored.skipped and stored.rating is None and stored.status == "skipped"
    assert conversations.messages(prompt.conversation_id)[-1].content == PERSONAL


async def test_click_rating_and_continue_buttons(
    scripted_llm: ScriptedLLM, runner: ComparisonRunner, comparisons: ComparisonStore, prompt: Message,
) -> None:
    scripted_llm.set_default(lambda body: GENERIC if arm_of(body) == "generic" else PERSONAL)
    app = Host(screen_for(runner, prompt, ask_relevance=False, ask_comment=False))
    async with app.run_test(size=(160, 40)) as pilot:
        screen = await until_step(pilot, "rate")
        await pilot.click("#rate-4")
        assert screen.step == "continue"
        await pilot.click("#continue-1")
        await pilot.pause()
    result = app.results[0]
    assert (result.status, result.shown_choice, result.chosen_side, result.relevance) == ("rated", 4, "left", ())
    runner.record_result(result)
    # A study that does not ask about relevance has no relevance rows (nor records) at all.
    assert comparisons.relevance_labels(result.comparison_id or "") == []


async def test_a_failed_arm_dismisses_with_the_error(
    scripted_llm: ScriptedLLM, runner: ComparisonRunner, comparisons: ComparisonStore,
    conversations: ConversationStore, prompt: Message,
) -> None:
    scripted_llm.set_default(lambda body: ScriptedReply(status=401, error_body={"error": {"message": "bad key"}})
                             if arm_of(body) == "generic" else PERSONAL)
    app = Host(screen_for(runner, prompt))
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        assert not isinstance(app.screen, ComparisonScreen)
    result = app.results[0]
    assert result.status == "failed" and result.error
    assert result.reply_message_id == comparisons.list()[0].personalized_message_id
    assert conversations.messages(prompt.conversation_id)[-1].content == PERSONAL


async def test_escape_stops_generation(
    scripted_llm: ScriptedLLM, runner: ComparisonRunner, comparisons: ComparisonStore,
    conversations: ConversationStore, prompt: Message,
) -> None:
    replies = {"generic": ScriptedReply(content=GENERIC, hold_after=2),
               "personalized": ScriptedReply(content=PERSONAL, hold_after=2)}
    scripted_llm.set_default(lambda body: replies[arm_of(body)])
    app = Host(screen_for(runner, prompt))
    async with app.run_test(size=(120, 40)) as pilot:
        await replies["generic"].wait_held_async()
        await replies["personalized"].wait_held_async()
        await pilot.press("escape")
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
    assert app.results[0].status == "cancelled"
    record = comparisons.list()[0]
    assert record.status == "error"
    for message_id in (record.generic_message_id, record.personalized_message_id):
        message = conversations.get_message(message_id)
        assert message is not None and message.status == "interrupted"
    for reply in replies.values():
        reply.release()


# Relevance questions: every sampled question ends with one status ------------------------------------------

# One selected attribute and three unselected ones: with two unselected asked about, each had a 2 in 3 chance.
MANY = [
    AttributeChoice("Is vegetarian", "a-veg", True, "dinner"),
    AttributeChoice("Plays the cello", "a-cello", False, "unrelated"),
    AttributeChoice("Collects stamps", "a-stamps", False, "unrelated"),
    AttributeChoice("Runs marathons", "a-run", False, "unrelated"),
]
UNSELECTED = {"a-cello", "a-stamps", "a-run"}

# Per attribute: status, asked_when, ask_probability, human_relevant, whether labeled_at is set.
Question = tuple[str, str | None, float | None, bool | None, bool]


def chance(attribute_id: str) -> float:
    return 2 / 3 if attribute_id in UNSELECTED else 1.0


def stored_and_sent(comparisons: ComparisonStore, comparison_id: str) -> tuple[dict[str, Question],
                                                                            dict[str, Question]]:
    """The relevance rows as stored, and as the study receives them (every record within the contract)."""
    labels = comparisons.relevance_labels(comparison_id)
    stored = {label.attribute_id: (label.status, label.asked_when, label.ask_probability, label.human_relevant,
                                   label.labeled_at is not None) for label in labels}
    records = comparison_records(comparisons.get(comparison_id), labels)
    for kind, payload in records:
        check_payload(kind, payload)
    sent = {p["attribute_id"]: (p["relevance_status"], p["asked_when"], p["ask_probability"], p["human_relevant"],
                                p["labeled_at"] is not None) for kind, p in records if kind == "relevance_label"}
    return stored, sent


def relevance_host(scripted_llm: ScriptedLLM, runner: ComparisonRunner, prompt: Message, **kwargs: Any) -> Host:
    scripted_llm.set_default(lambda body: GENERIC if arm_of(body) == "generic" else PERSONAL)
    return Host(screen_for(runner, prompt, attributes=MANY, relevance_unselected=2, **kwargs))


async def test_answers_yes_no_and_not_sure_are_recorded_with_the_chance_each_was_asked(
    scripted_llm: ScriptedLLM, runner: ComparisonRunner, comparisons: ComparisonStore, prompt: Message,
) -> None:
    app = relevance_host(scripted_llm, runner, prompt, ask_comment=False)
    async with app.run_test(size=(160, 40)) as pilot:
        screen = await until_step(pilot, "rate")
        await pilot.press("3")
        asked = [q.attribute_id for q in screen.questions]
        assert "a-veg" in asked and len(asked) == 3 and set(asked) - {"a-veg"} <= UNSELECTED
        await pilot.press("y", "n", "space")
        assert screen.step == "continue"
        await pilot.press("1")
        await pilot.pause()

    result = app.results[0]
    answers = dict(zip(asked, ("yes", "no", "not_sure"), strict=True))
    assert [(a.attribute_id, a.status, a.asked_when, a.ask_probability) for a in result.relevance] == [
        (q, answers[q], "after_rating", chance(q)) for q in asked]
    runner.record_result(result)
    human = {"yes": True, "no": False, "not_sure": None}
    expected = {q: (answers[q], "after_rating", chance(q), human[answers[q]], True) for q in asked}
    assert stored_and_sent(comparisons, result.comparison_id or "") == (expected, expected)


async def test_escape_leaves_the_question_on_screen_and_the_rest_not_asked(
    scripted_llm: ScriptedLLM, runner: ComparisonRunner, comparisons: ComparisonStore, prompt: Message,
) -> None:
    app = relevance_host(scripted_llm, runner, prompt)
    async with app.run_test(size=(160, 40)) as pilot:
        screen = await until_step(pilot, "rate")
        await pilot.press("5")
        asked = [q.attribute_id for q in screen.questions]
        await pilot.click("#relevant-unsure")  # the button answers "not sure" like space
        assert screen.step == "relevance"
        assert "(2 of 3)" in str(screen.query_one("#relevance-count", Static).render())
        await pilot.press("escape")  # with the second question on screen
        assert screen.step == "comment"
        await pilot.press("enter", "2")
        await pilot.pause()

    result = app.results[0]
    assert [(a.attribute_id, a.status, a.asked_when) for a in result.relevance] == [
        (asked[0], "not_sure", "after_rating"), (asked[1], "not_asked", None), (asked[2], "not_asked", None)]
    runner.record_result(result)
    expected: dict[str, Question] = {asked[0]: ("not_sure", "after_rating", chance(asked[0]), None, True)}
    expected |= {q: ("not_asked", None, chance(q), None, False) for q in asked[1:]}
    assert stored_and_sent(comparisons, result.comparison_id or "") == (expected, expected)


async def test_a_skipped_rating_leaves_every_question_not_asked(
    scripted_llm: ScriptedLLM, runner: ComparisonRunner, comparisons: ComparisonStore, prompt: Message,
) -> None:
    app = relevance_host(scripted_llm, runner, prompt)
    async with app.run_test(size=(160, 40)) as pilot:
        screen = await until_step(pilot, "rate")
        asked = [q.attribute_id for q in screen.questions]
        assert len(asked) == 3, "the questions were sampled when the answers were shown"
        await pilot.press("s")
        assert screen.step == "continue"
        await pilot.press("1")
        await pilot.pause()

    result = app.results[0]
    assert result.status == "skipped"
    assert [(a.attribute_id, a.status, a.asked_when, a.ask_probability) for a in result.relevance] == [
        (q, "not_asked", None, chance(q)) for q in asked]
    runner.record_result(result)
    expected = {q: ("not_asked", None, chance(q), None, False) for q in asked}
    assert stored_and_sent(comparisons, result.comparison_id or "") == (expected, expected)
