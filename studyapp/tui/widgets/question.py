"""The study's own questions (protocol ``[[questions]]``), answered by keyboard.

``AnswerField`` is one question's answer: ``OptionsField`` for likert, choice and yes/no (←/→ and Enter, or the
option's number, y/n for yes/no), ``TextField`` for free text (its length limit enforced, with a counter).

``QuestionPrompt`` is docked in the chat screen, above the message box, for the questions asked in the moment
(after a reply, after a comparison). It never takes the keyboard by itself: the participant moves to it with
F5 (the chat screen's binding) and back with F5; Esc there skips the question, and so does sending the next
message. It shows one question at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from rich.cells import cell_len
from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.reactive import reactive
from textual.widget import Widget
from textual.widgets import Input, Label, Static

from studyapp.study.questions import Question

YES, NO = 1, 0


class HasQuestion(Protocol):
    """What the widgets need of an ask (studyapp.study.asking.Ask): the question put to the participant."""

    @property
    def ask_id(self) -> str: ...

    @property
    def question(self) -> Question: ...


@dataclass(frozen=True)
class QuestionResponse:
    """A given answer, in the record's terms: ``number`` for likert (1..N) and yes/no (1 yes, 0 no), ``option``
    for choice (the option's text as the protocol gives it), ``text`` for free text."""

    number: int | None = None
    option: str | None = None
    text: str | None = None


@dataclass(frozen=True)
class Choice:
    """One option as shown: its key (the number typed for it, or y/n), its label, and the response it gives."""

    key: str
    label: str
    response: QuestionResponse


def choices_of(question: Question) -> list[Choice]:
    """The options a likert, choice or yes/no question offers, in order."""
    if question.type == "yes_no":
        return [Choice("y", "Yes", QuestionResponse(number=YES)), Choice("n", "No", QuestionResponse(number=NO))]
    if question.type == "choice":
        return [Choice(str(n), option, QuestionResponse(option=option))
                for n, option in enumerate(question.options, start=1)]
    if question.type == "likert":
        points = question.points or 0
        labels = list(question.labels)
        if len(labels) != points:
            # Only the end labels: the points between are numbers.
            labels = [labels[0], *[""] * (points - 2), labels[-1]] if labels else [""] * points
        return [Choice(str(n), label, QuestionResponse(number=n)) for n, label in enumerate(labels, start=1)]
    return []


def keys_hint(question: Question) -> str:
    """How to answer, in a few words (the prompt's and the survey's help lines)."""
    if question.type == "text":
        return "type, then Enter"
    if question.type == "yes_no":
        return "y or n"
    count = len(choices_of(question))
    return f"1-{count} or ←/→ and Enter" if count <= 9 else "←/→ and Enter (1-9 too)"


class AnswerField(Widget):
    """One question's answer, however it is given. Posts ``AnswerField.Chosen`` when the participant commits
    one (a choice picked, Enter in a text); ``response`` is what it holds now (None: nothing yet)."""

    @dataclass
    class Chosen(Message):
        field: AnswerField
        response: QuestionResponse

    def __init__(self, question: Question, *, id: str | None = None, classes: str = "") -> None:
        super().__init__(id=id, classes=f"answer-field {classes}".strip())
        self.question = question

    @property
    def response(self) -> QuestionResponse | None:
        raise NotImplementedError

    def take_focus(self) -> None:
        self.focus()


def make_field(question: Question, *, id: str | None = None) -> AnswerField:
    return TextField(question, id=id) if question.type == "text" else OptionsField(question, id=id)


class OptionsField(AnswerField, can_focus=True):
    """Likert points, choice options or yes/no on one line (wrapping when narrow); the highlighted one is shown
    reversed while the field has focus, the chosen one marked."""

    BINDINGS = [
        Binding("left", "move(-1)", "Previous", show=False),
        Binding("right", "move(1)", "Next", show=False),
        Binding("enter,space", "choose_highlighted", "Choose", show=False),
        Binding("backspace,delete", "clear", "Clear", show=False),
    ]
    DEFAULT_CSS = """
    OptionsField {
        height: auto;
        width: 100%;
    }
    """

    highlighted: reactive[int] = reactive(0)
    chosen: reactive[int | None] = reactive(None)

    def __init__(self, question: Question, *, id: str | None = None) -> None:
        super().__init__(question, id=id, classes="options-field")
        self.choices = choices_of(question)

    @property
    def response(self) -> QuestionResponse | None:
        return None if self.chosen is None else self.choices[self.chosen].response

    def render(self) -> Text:
        # Options are laid out whole, line by line: an option's key never ends a line without its label.
        width = max(self.content_size.width, 1)
        text = Text(no_wrap=False, overflow="fold")
        column = 0
        for index, choice in enumerate(self.choices):
            mark = "●" if index == self.chosen else " "
            label = f"{mark}{choice.key} {choice.label}".rstrip()
            style = "reverse" if self.has_focus and index == self.highlighted else ""
            if index == self.chosen:
                style += " bold"
            if index and column + 2 + cell_len(label) > width:
                text.append("\n")
                column = 0
            elif index:
                text.append("  ")
                column += 2
            text.append(label, style=style.strip())
            column += cell_len(label)
        return text

    def on_focus(self) -> None:
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()

    def on_key(self, event: events.Key) -> None:
        # Digits (and y/n for yes/no) choose directly; other keys go on to the bindings and the screen.
        key = (event.character or "").lower()
        for index, choice in enumerate(self.choices):
            if key and key == choice.key:
                event.stop()
                event.prevent_default()
                self.choose(index)
                return

    def action_move(self, step: int) -> None:
        self.highlighted = (self.highlighted + step) % len(self.choices)

    def action_choose_highlighted(self) -> None:
        self.choose(self.highlighted)

    def action_clear(self) -> None:
        self.chosen = None

    def choose(self, index: int) -> None:
        self.highlighted = index
        self.chosen = index
        self.post_message(self.Chosen(self, self.choices[index].response))


class TextField(AnswerField):
    """A line of free text, at most the question's ``max_length`` characters, with a counter."""

    DEFAULT_CSS = """
    TextField {
        height: auto;
        width: 100%;
    }
    TextField > .counter {
        color: $text-muted;
        width: 100%;
        text-align: right;
    }
    """

    def __init__(self, question: Question, *, id: str | None = None) -> None:
        super().__init__(question, id=id, classes="text-field")
        self.max_length = question.max_length or 0

    def compose(self) -> ComposeResult:
        yield Input(placeholder="Your answer (optional)", max_length=self.max_length, compact=True,
                    classes="answer-input")
        yield Label(self._count(0), classes="counter", markup=False)

    def _count(self, length: int) -> str:
        return f"{length} / {self.max_length} characters"

    @property
    def input(self) -> Input:
        return self.query_one(Input)

    @property
    def response(self) -> QuestionResponse | None:
        text = self.input.value.strip()
        return QuestionResponse(text=text) if text else None

    def take_focus(self) -> None:
        self.input.focus()

    @on(Input.Changed)
    def _changed(self, event: Input.Changed) -> None:
        event.stop()
        self.query_one(".counter", Label).update(self._count(len(event.value)))

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        response = self.response
        if response is not None:
            self.post_message(self.Chosen(self, response))


class QuestionPrompt(Vertical):
    """The in-the-moment question, docked above the message box; one question at a time.

    Posts ``Answered`` (a choice picked or a text sent) and ``Skipped`` (Esc while it has the keyboard). What the
    keys are is the chat screen's business: this widget only shows the question and how to answer it.
    """

    BINDINGS = [Binding("escape", "skip", "Skip question", show=False)]

    @dataclass
    class Answered(Message):
        ask: HasQuestion
        response: QuestionResponse

    @dataclass
    class Skipped(Message):
        ask: HasQuestion

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, classes="question-prompt")
        self.ask: HasQuestion | None = None
        self.position = (1, 1)

    def compose(self) -> ComposeResult:
        yield Static("", classes="question-text", markup=False)
        yield Static("", classes="question-help", markup=False)

    @property
    def field(self) -> AnswerField | None:
        fields = self.query(AnswerField)
        return fields.first() if fields else None

    @property
    def holds_focus(self) -> bool:
        focused = self.screen.focused if self.is_attached else None
        return focused is not None and (focused is self or self in focused.ancestors)

    async def show(self, ask: HasQuestion | None, *, position: tuple[int, int] = (1, 1)) -> None:
        """Show ``ask`` (None: hide the prompt). ``position``: this question's number and how many wait."""
        self.ask = ask
        self.position = position
        old = self.field
        if old is not None:
            await old.remove()
        self.display = ask is not None
        if ask is None:
            return
        number, count = position
        counted = f" ({number} of {count})" if count > 1 else ""
        text = Text(f"A question from the study{counted}: ", style="bold")
        text.append(ask.question.text, style="")
        self.query_one(".question-text", Static).update(text)
        await self.mount(make_field(ask.question, id="question-field"), before=self.query_one(".question-help"))
        self.update_help()

    def update_help(self) -> None:
        if self.ask is None:
            return
        if self.holds_focus:
            hint = f"{keys_hint(self.ask.question)} · Esc: skip · F5: back"
        else:
            hint = "F5: answer · sending your next message skips it"
        self.query_one(".question-help", Static).update(hint)

    def take_focus(self) -> None:
        if self.field is not None:
            self.field.take_focus()

    def on_descendant_focus(self) -> None:
        self.update_help()

    def on_descendant_blur(self) -> None:
        self.call_after_refresh(self.update_help)

    @on(AnswerField.Chosen)
    def _chosen(self, event: AnswerField.Chosen) -> None:
        event.stop()
        if self.ask is not None:
            self.post_message(self.Answered(self.ask, event.response))

    def action_skip(self) -> None:
        if self.ask is not None:
            self.post_message(self.Skipped(self.ask))
