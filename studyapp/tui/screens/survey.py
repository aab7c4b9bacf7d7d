"""The study's daily, weekly and end-of-study questions, together on their own screen.

The chat screen opens it only when no reply is arriving and the message box is empty (otherwise it says that
questions wait, and F5 opens them). Every question may be left empty: Done (Ctrl+S) records the empty ones as
skipped; Later (Esc) keeps the answers given and puts the rest off (they come back later). Tab or ↑/↓ move
between questions.

An answer is research data: opened by the app rather than by the participant, nothing has the keyboard at first
and Done and Later wait out a short grace period (as the label prompt does), so a keystroke meant for what was
on screen before it answers nothing. Dismisses with a ``SurveyResult``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static

from studyapp.tui.widgets.question import AnswerField, HasQuestion, QuestionResponse, keys_hint, make_field

# As the label prompt's: long enough for typing under way to stop, short enough not to be noticed.
GRACE_S = 0.6
HELP = "↑/↓: next question · left empty: skipped · Ctrl+S: done · Esc: later"


@dataclass(frozen=True)
class SurveyResult:
    """``later``: put off (the questions without an answer come back later); else done, and every question
    without an answer was skipped. ``responses``: the answers given, by ask id."""

    later: bool
    responses: dict[str, QuestionResponse] = field(default_factory=dict)


class SurveyScreen(ModalScreen[SurveyResult]):
    AUTO_FOCUS = ""
    BINDINGS = [
        Binding("ctrl+s", "done", "Done", priority=True),
        Binding("escape", "later", "Later"),
        Binding("down", "app.focus_next", "Next question", show=False),
        Binding("up", "app.focus_previous", "Previous question", show=False),
    ]

    def __init__(self, asks: Sequence[HasQuestion], *, title: str = "", focus_first: bool = False,
                 grace_s: float = GRACE_S) -> None:
        """``focus_first``: the participant opened it (F5): the first question has the keyboard at once and
        there is no grace period."""
        super().__init__(classes="dialog-screen")
        self.asks = list(asks)
        self.title_text = title
        self.focus_first = focus_first
        self.grace_s = 0.0 if focus_first else grace_s
        self.shown_at: float | None = None

    def compose(self) -> ComposeResult:
        count = len(self.asks)
        heading = f"{count} question{'s' if count != 1 else ''} from the study"
        if self.title_text:
            heading += f" ({self.title_text})"
        with Vertical(classes="dialog survey"):
            yield Label(heading, classes="question", markup=False)
            with VerticalScroll(id="survey-questions"):
                for number, ask in enumerate(self.asks, start=1):
                    with Vertical(classes="survey-item"):
                        question = Text(f"{number}. {ask.question.text}", style="bold")
                        question.append(f"  ({keys_hint(ask.question)})", style="dim")
                        yield Static(question, classes="survey-question")
                        yield make_field(ask.question, id=f"answer-{number}")
            yield Label(HELP, id="survey-help", classes="labeling-help", markup=False)
            with Horizontal(classes="buttons"):
                yield Button("Done (Ctrl+S)", id="survey-done", variant="primary", compact=True)
                yield Button("Later (Esc)", id="survey-later", compact=True)

    def on_mount(self) -> None:
        # Only the answers are in the keyboard's way through the questions; the list scrolls to the focused one.
        self.query_one("#survey-questions").can_focus = False
        if self.focus_first and self.asks:
            self.fields[0].take_focus()

    def on_screen_resume(self) -> None:
        self.shown_at = time.monotonic()

    @property
    def fields(self) -> list[AnswerField]:
        return list(self.query(AnswerField))

    @property
    def accepts_answers(self) -> bool:
        return self.shown_at is not None and time.monotonic() - self.shown_at >= self.grace_s

    def responses(self) -> dict[str, QuestionResponse]:
        given: dict[str, QuestionResponse] = {}
        for ask, answer in zip(self.asks, self.fields, strict=True):
            if (response := answer.response) is not None:
                given[ask.ask_id] = response
        return given

    @on(AnswerField.Chosen)
    def _chosen(self, event: AnswerField.Chosen) -> None:
        # A choice made or Enter in a text: on to the next question (the last one: to Done).
        event.stop()
        self.focus_next()

    def action_done(self) -> None:
        if self.accepts_answers:
            self.dismiss(SurveyResult(later=False, responses=self.responses()))

    def action_later(self) -> None:
        if self.accepts_answers:
            self.dismiss(SurveyResult(later=True, responses=self.responses()))

    @on(Button.Pressed, "#survey-done")
    def _done_pressed(self) -> None:
        self.action_done()

    @on(Button.Pressed, "#survey-later")
    def _later_pressed(self) -> None:
        self.action_later()
