"""The study's own questions on screen: the answer fields, the prompt docked above the message box, and the
survey screen. Each is driven by keyboard, as the participant would."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual.app import App, ComposeResult
from textual.widgets import Input, TextArea

from studyapp.study.questions import Question
from studyapp.tui.screens.survey import SurveyResult, SurveyScreen
from studyapp.tui.widgets.question import (
    OptionsField,
    QuestionPrompt,
    QuestionResponse,
    TextField,
    choices_of,
)
from tests.privacy.test_screens import Host
from tests.tui.helpers import text_in, wait_for

LIKERT = Question(id="written_for_you", version="1", text="Did that reply feel like it was written for you?",
                  type="likert", when="after_turn", points=5, labels=("Not at all", "Completely"),
                  probability=0.5, daily_cap=2)
CHOICE = Question(id="felt_understood", version="1", text="Which answer made you feel more understood?",
                  type="choice", when="after_comparison",
                  options=("Response 1", "Response 2", "Neither", "Both equally"))
YES_NO = Question(id="wrong_assumption", version="1", text="Did either answer assume something wrong about you?",
                  type="yes_no", when="after_comparison")
TEXT = Question(id="anything_else", version="1", text="Anything else about how the assistant understood you?",
                type="text", when="at_end", max_length=12)
WEEKLY = Question(id="kept_up_this_week", version="1",
                  text="This week, how well did the assistant keep up with what you like?", type="likert",
                  when="weekly", points=7, labels=("Not at all", "Perfectly"), at="19:00", weekday="sunday")


@dataclass(frozen=True)
class Asked:
    """An ask as the widgets see it: its id and its question."""

    ask_id: str
    question: Question


class PromptHost(App[None]):
    """A message box and the docked prompt, as the chat screen has them; keeps what the prompt posted."""

    CSS_PATH = ["../../studyapp/tui/styles/app.tcss", "../../studyapp/tui/styles/questions.tcss"]

    def __init__(self) -> None:
        super().__init__()
        self.posted: list[tuple[str, str, QuestionResponse | None]] = []

    def compose(self) -> ComposeResult:
        yield QuestionPrompt(id="question-prompt")
        yield TextArea(id="composer")

    def on_mount(self) -> None:
        self.query_one("#composer").focus()

    def on_question_prompt_answered(self, event: QuestionPrompt.Answered) -> None:
        self.posted.append(("answered", event.ask.ask_id, event.response))

    def on_question_prompt_skipped(self, event: QuestionPrompt.Skipped) -> None:
        self.posted.append(("skipped", event.ask.ask_id, None))


def test_likert_with_end_labels_numbers_every_point() -> None:
    assert [(c.key, c.label, c.response) for c in choices_of(LIKERT)] == [
        ("1", "Not at all", QuestionResponse(number=1)), ("2", "", QuestionResponse(number=2)),
        ("3", "", QuestionResponse(number=3)), ("4", "", QuestionResponse(number=4)),
        ("5", "Completely", QuestionResponse(number=5))]
    assert [c.response for c in choices_of(YES_NO)] == [QuestionResponse(number=1), QuestionResponse(number=0)]
    assert [c.response.option for c in choices_of(CHOICE)] == list(CHOICE.options)


async def test_the_prompt_takes_no_keys_until_the_participant_moves_to_it() -> None:
    app = PromptHost()
    async with app.run_test(size=(80, 24)) as pilot:
        prompt = app.query_one(QuestionPrompt)
        await prompt.show(Asked("a1", LIKERT))
        await pilot.pause()
        composer = app.query_one("#composer", TextArea)
        assert app.focused is composer
        await pilot.press(*"3 yes", "enter", "n", "escape")
        assert composer.text == "3 yes\nn"
        assert app.posted == [], "typing answered or skipped the question"
        assert "F5: answer" in text_in(app, ".question-help")

        prompt.take_focus()
        await pilot.pause()
        assert isinstance(app.focused, OptionsField)
        assert "Esc: skip" in text_in(app, ".question-help")
        await pilot.press("right", "right", "enter")
        assert app.posted == [("answered", "a1", QuestionResponse(number=3))]


async def test_each_kind_of_question_is_answered_and_skipped_by_keyboard() -> None:
    app = PromptHost()
    async with app.run_test(size=(80, 24)) as pilot:
        prompt = app.query_one(QuestionPrompt)
        for ask, keys in ((Asked("c", CHOICE), ["3"]), (Asked("y", YES_NO), ["n"]), (Asked("l", LIKERT), ["5"]),
                          (Asked("t", TEXT), [*"too long for it", "enter"]), (Asked("s", YES_NO), ["escape"])):
            await prompt.show(ask)
            prompt.take_focus()
            await pilot.pause()
            await pilot.press(*keys)
            await pilot.pause()
        assert app.posted == [
            ("answered", "c", QuestionResponse(option="Neither")),
            ("answered", "y", QuestionResponse(number=0)),
            ("answered", "l", QuestionResponse(number=5)),
            # max_length = 12: the rest of what was typed did not go in.
            ("answered", "t", QuestionResponse(text="too long for")),
            ("skipped", "s", None),
        ]


async def test_a_text_answer_counts_its_characters_against_the_limit() -> None:
    app = PromptHost()
    async with app.run_test(size=(80, 24)) as pilot:
        prompt = app.query_one(QuestionPrompt)
        await prompt.show(Asked("t", TEXT))
        prompt.take_focus()
        await pilot.press(*"hello")
        await pilot.pause()
        assert text_in(app, ".counter") == "5 / 12 characters"
        await pilot.press(*" there, and more")
        await pilot.pause()
        assert app.query_one(TextField).query_one(Input).value == "hello there,"
        assert text_in(app, ".counter") == "12 / 12 characters"
        # Enter on nothing answers nothing.
        app.query_one(TextField).query_one(Input).value = "   "
        await pilot.press("enter")
        assert app.posted == []


def survey(**kwargs: Any) -> SurveyScreen:
    return SurveyScreen([Asked("w", WEEKLY), Asked("t", TEXT), Asked("y", YES_NO)], title="Feeling understood",
                        grace_s=0.0, **kwargs)


class SurveyHost(Host):
    CSS_PATH = ["../../studyapp/tui/styles/app.tcss", "../../studyapp/tui/styles/questions.tcss"]


async def test_a_survey_is_answered_by_keyboard_and_an_empty_answer_is_skipped() -> None:
    app = SurveyHost(survey(focus_first=True))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, SurveyScreen), what="the survey")
        await pilot.pause()
        assert isinstance(app.focused, OptionsField)
        # 6 on the weekly scale moves on to the text; Enter on it moves on to yes/no, left empty.
        await pilot.press("6", *"fine", "enter", "ctrl+s")
        await wait_for(pilot, lambda: app.result is not None and not isinstance(app.screen, SurveyScreen),
                       what="the survey to close")
    assert app.result == SurveyResult(later=False, responses={"w": QuestionResponse(number=6),
                                                              "t": QuestionResponse(text="fine")})


async def test_later_keeps_the_answers_given_and_puts_off_the_rest() -> None:
    app = SurveyHost(survey(focus_first=True))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, SurveyScreen), what="the survey")
        await pilot.pause()
        await pilot.press("down", "down", "y", "escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, SurveyScreen), what="the survey to close")
    assert app.result == SurveyResult(later=True, responses={"y": QuestionResponse(number=1)})


async def test_a_survey_the_app_opened_takes_no_keystroke_as_an_answer() -> None:
    # Opened by the app: nothing has the keyboard, so a participant's stray typing answers nothing.
    app = SurveyHost(survey())
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, SurveyScreen), what="the survey")
        await pilot.pause()
        assert app.focused is None
        await pilot.press(*"6y fine", "enter")
        assert app.screen.responses() == {}
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, SurveyScreen), what="the survey to close")
    assert app.result == SurveyResult(later=True)
