"""The blinded side-by-side comparison: progress while both answers are written, then rate, judge, continue.

The screen knows sides only ("Response 1" is the left answer, "Response 2" the right one), never which is
personalized; both answers appear together once both are complete. Steps:

1. waiting: progress (characters so far, answers ready) with no hint which answer is which; Esc stops;
2. rate: keys 1-5 on the study's scale (or click), ``s`` skips the rating;
3. relevance (optional): for each selected attribute and a sample of unselected ones, shuffled,
   "should this have shaped the answer?" y / n / space (not sure); Esc leaves the questions, and the one on
   screen and the rest count as not asked (as do all of them when the rating is skipped);
4. comment (optional): Enter continues;
5. continue: which answer goes on in the conversation, 1 or 2 (after a skip, Esc leaves it to the app).

It takes its services as arguments (a coroutine function that runs the comparison, a callback for "both
are shown") and dismisses with a ``RatingResult`` that ``ComparisonRunner.record_result`` stores.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable, Sequence

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, ContentSwitcher, Footer, Input, Markdown, ProgressBar, Static

from studyapp.llm.base import LLMError
from studyapp.study.comparison import (
    ComparisonFailed,
    ComparisonOutcome,
    Progress,
    RatingResult,
    RelevanceAnswer,
    RelevanceQuestion,
    relevance_sample,
)
from studyapp.study.protocol import DEFAULT_LABELS
from studyapp.tui.widgets.rating import RatingBar

REMINDER = "Remember: an answer that mentions your attributes is not automatically better."
SIDE_OF_KEY = {1: "left", 2: "right"}
STATUS_OF_BUTTON = {"relevant-yes": "yes", "relevant-no": "no", "relevant-unsure": "not_sure"}

Generate = Callable[[Callable[[Progress], None]], Awaitable[ComparisonOutcome]]


class ComparisonScreen(Screen[RatingResult]):
    CSS_PATH = ["../styles/comparison.tcss", "../styles/rating.tcss"]
    BINDINGS = [
        *(Binding(str(n), f"digit({n})", str(n), show=False) for n in range(1, 6)),
        Binding("s", "skip", "Skip rating"),
        Binding("y", "relevant('yes')", "Yes"),
        Binding("n", "relevant('no')", "No"),
        Binding("space", "relevant('not_sure')", "Not sure"),
        Binding("escape", "escape", "Stop / skip"),
    ]

    def __init__(
        self,
        generate: Generate,
        *,
        labels: Sequence[str] = DEFAULT_LABELS,
        on_shown: Callable[[str], None] | None = None,
        ask_relevance: bool = True,
        relevance_unselected: int = 2,
        ask_comment: bool = True,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(classes="comparison-screen")
        self._generate = generate
        self.labels = list(labels)
        self._on_shown = on_shown
        self.ask_relevance = ask_relevance
        self.relevance_unselected = relevance_unselected
        self.ask_comment = ask_comment
        self._rng = rng
        self.step = "waiting"
        self.outcome: ComparisonOutcome | None = None
        self.questions: list[RelevanceQuestion] = []
        self._question_index = 0
        self._shown_at: float | None = None
        self._shown_choice: int | None = None
        self._skipped = False
        self._time_to_rate_ms: float | None = None
        # attribute_id -> yes / no / not_sure, for the questions answered so far.
        self._answers: dict[str, str] = {}
        self._comment: str | None = None

    # Layout -------------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        with Vertical(id="waiting"):
            yield Static("Two answers to your request are being written.", classes="question")
            yield Static("They appear together once both are ready.", classes="hint")
            yield ProgressBar(total=2, show_eta=False, show_percentage=False, id="ready-bar")
            yield Static("Starting…", id="waiting-status")
        with Horizontal(id="responses"):
            for number in (1, 2):
                with VerticalScroll(id=f"response-{number}", classes="response"):
                    yield Static(f"Response {number}", classes="response-title")
                    yield Markdown("", id=f"markdown-{number}")
        with ContentSwitcher(id="steps", initial="step-none"):
            yield Static("", id="step-none")
            with Vertical(id="step-rate", classes="step"):
                yield Static("Which response is better for you? Press 1-5 (or s to skip).", classes="question")
                yield RatingBar(self.labels, id="rating-bar")
                yield Static(REMINDER, id="reminder", classes="hint")
            with Vertical(id="step-relevance", classes="step"):
                yield Static("", id="relevance-count", classes="hint")
                yield Static("Should this have shaped the answer?", classes="question")
                yield Static("", id="relevance-text", markup=False)
                with Horizontal(classes="buttons"):
                    yield Button("Yes (y)", id="relevant-yes", compact=True)
                    yield Button("No (n)", id="relevant-no", compact=True)
                    yield Button("Not sure (space)", id="relevant-unsure", compact=True)
            with Vertical(id="step-comment", classes="step"):
                yield Static("Anything to add? Optional: press Enter to continue.", classes="question")
                yield Input(placeholder="Your comment", id="comment")
            with Vertical(id="step-continue", classes="step"):
                yield Static("Which answer should continue the conversation? Press 1 or 2.", id="continue-question",
                             classes="question")
                with Horizontal(classes="buttons"):
                    yield Button("Response 1 (1)", id="continue-1", compact=True)
                    yield Button("Response 2 (2)", id="continue-2", compact=True)
        yield Footer()

    def on_mount(self) -> None:
        for button in self.query(Button):
            # Keys belong to the screen; a focused button on one side would also be a hint.
            button.can_focus = False
        self.run_comparison()

    # Generation ---------------------------------------------------------------------------------

    @work(exclusive=True, group="comparison")
    async def run_comparison(self) -> None:
        try:
            outcome = await self._generate(self._on_progress)
        except ComparisonFailed as exc:
            self.dismiss(RatingResult("failed", comparison_id=exc.comparison_id, error=str(exc),
                                      reply_message_id=exc.reply_message_id))
            return
        except LLMError as exc:
            self.dismiss(RatingResult("failed", error=str(exc)))
            return
        except Exception as exc:  # never a traceback in front of the participant
            self.dismiss(RatingResult("failed", error=f"The comparison could not be prepared: {exc}"))
            return
        await self._show(outcome)

    def _on_progress(self, progress: Progress) -> None:
        # Totals only: per-answer progress would let timing point at one side.
        chars = progress.left_chars + progress.right_chars
        self.query_one("#ready-bar", ProgressBar).update(progress=progress.done)
        self.query_one("#waiting-status", Static).update(f"{chars:,} characters so far · {progress.done} of 2 ready")

    async def _show(self, outcome: ComparisonOutcome) -> None:
        self.outcome = outcome
        await self.query_one("#markdown-1", Markdown).update(outcome.left_text)
        await self.query_one("#markdown-2", Markdown).update(outcome.right_text)
        if self.ask_relevance:
            self.questions = relevance_sample(outcome.attributes, unselected=self.relevance_unselected, rng=self._rng)
        self.query_one("#waiting").display = False
        self.query_one("#responses").display = True
        self._shown_at = time.monotonic()
        if self._on_shown is not None:
            self._on_shown(outcome.comparison_id)
        self._go("rate")

    # Steps --------------------------------------------------------------------------------------

    def _go(self, step: str) -> None:
        self.step = step
        self.query_one("#steps", ContentSwitcher).current = f"step-{step}"
        if step == "comment":
            self.query_one("#comment", Input).focus()
        else:
            self.set_focus(None)
        if step == "relevance":
            self._show_question()
        if step == "continue" and self._skipped:
            self.query_one("#continue-question", Static).update(
                "Rating skipped. Which answer should continue the conversation? Press 1 or 2 (Esc: either).")
        self.refresh_bindings()

    def _after_rating(self) -> None:
        if self.questions:
            self._go("relevance")
        elif self.ask_comment:
            self._go("comment")
        else:
            self._go("continue")

    def _show_question(self) -> None:
        question = self.questions[self._question_index]
        self.query_one("#relevance-count", Static).update(
            f"About what the assistant knows about you ({self._question_index + 1} of {len(self.questions)})")
        self.query_one("#relevance-text", Static).update(question.text)

    def _answer(self, status: str) -> None:
        self._answers[self.questions[self._question_index].attribute_id] = status
        self._question_index += 1
        if self._question_index < len(self.questions):
            self._show_question()
        else:
            self._go("comment" if self.ask_comment else "continue")

    def _rate(self, value: int) -> None:
        self._shown_choice = value
        self._time_to_rate_ms = self._elapsed_ms()
        self.query_one(RatingBar).select(value)
        self._after_rating()

    def _elapsed_ms(self) -> float | None:
        return (time.monotonic() - self._shown_at) * 1000 if self._shown_at is not None else None

    def _finish(self, chosen_side: str | None) -> None:
        assert self.outcome is not None
        self.step = "done"
        self.dismiss(RatingResult(
            "skipped" if self._skipped else "rated",
            comparison_id=self.outcome.comparison_id,
            personalized_side=self.outcome.personalized_side,
            shown_choice=None if self._skipped else self._shown_choice,
            chosen_side=chosen_side,
            comment=self._comment,
            relevance=self._relevance(),
            time_to_rate_ms=self._time_to_rate_ms,
        ))

    def _relevance(self) -> tuple[RelevanceAnswer, ...]:
        """Every sampled question with what became of it. The questions come after the rating, so one not
        answered (left with Esc, or never shown because the rating was skipped) was not asked."""
        answers = []
        for question in self.questions:
            status = self._answers.get(question.attribute_id)
            if status is None:
                answers.append(RelevanceAnswer(question.attribute_id, "not_asked", question.ask_probability))
            else:
                answers.append(RelevanceAnswer(question.attribute_id, status, question.ask_probability,
                                               asked_when="after_rating"))
        return tuple(answers)

    # Actions ------------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "digit":
            return self.step == "rate" or (self.step == "continue" and parameters[0] in SIDE_OF_KEY)
        if action == "skip":
            return self.step == "rate"
        if action == "relevant":
            return self.step == "relevance"
        return True

    def action_digit(self, value: int) -> None:
        if self.step == "rate":
            self._rate(value)
        elif self.step == "continue" and value in SIDE_OF_KEY:
            self._finish(SIDE_OF_KEY[value])

    def action_skip(self) -> None:
        if self.step != "rate":
            return
        self._skipped = True
        self._time_to_rate_ms = self._elapsed_ms()
        self._go("continue")

    def action_relevant(self, status: str) -> None:
        if self.step == "relevance":
            self._answer(status)

    def action_escape(self) -> None:
        if self.step == "waiting":
            self.workers.cancel_group(self, "comparison")
            self.step = "done"
            self.dismiss(RatingResult("cancelled"))
        elif self.step == "relevance":
            self._go("comment" if self.ask_comment else "continue")
        elif self.step == "comment":
            self._go("continue")
        elif self.step == "continue" and self._skipped:
            self._finish(None)
        elif self.step == "continue":
            self.notify("Pick the answer that continues the conversation: 1 or 2.")
        elif self.step == "rate":
            self.notify("Rate with 1-5, or press s to skip the rating.")

    def on_rating_bar_chosen(self, message: RatingBar.Chosen) -> None:
        if self.step == "rate":
            self._rate(message.value)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        button = event.button.id or ""
        if button.startswith("continue-") and self.step == "continue":
            self._finish(SIDE_OF_KEY[int(button.removeprefix("continue-"))])
        elif button.startswith("relevant-") and self.step == "relevance":
            self._answer(STATUS_OF_BUTTON[button])

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if self.step == "comment":
            self._comment = event.value.strip() or None
            self._go("continue")
