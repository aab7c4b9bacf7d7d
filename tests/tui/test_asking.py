"""The study's own questions in the chat app, enrolled in a study that asks them: a question that becomes due
never takes the participant's keystrokes; answers and skips given by keyboard are recorded; a survey put off
comes back; a free-text answer is anonymized on its way to the outbox."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from textual.pilot import Pilot

from studyapp.context import AppContext
from studyapp.privacy.consent import ConsentService
from studyapp.store.outbox import OutboxStore
from studyapp.store.questions import QuestionAsk, QuestionStore
from studyapp.study.current import save_enrollment
from studyapp.study.protocol import parse_protocol
from studyapp.tui.app import StudyApp
from studyapp.tui.screens.chat import ChatScreen
from studyapp.tui.screens.comparison import ComparisonScreen
from studyapp.tui.screens.survey import SurveyScreen
from studyapp.tui.widgets.composer import Composer
from studyapp.tui.widgets.question import QuestionPrompt
from tests.support.keyring import MemoryKeyring
from tests.support.protocols import ratings_study
from tests.support.scripted_llm import ScriptedLLM
from tests.tui.helpers import MakeApp, text_in, wait_for, wait_for_toast
from tests.tui.test_chat_app import SIZE, always_compare, never_compare, views

CATEGORY = '''
[categories.question_answers]
required = false
'''
AFTER_TURN = '''
[[questions]]
id = "written_for_you"
text = "Did that reply feel like it was written for you?"
type = "likert"
points = 5
labels = ["Not at all", "Completely"]
when = "after_turn"
probability = 1.0
daily_cap = 50
'''
AFTER_COMPARISON = '''
[[questions]]
id = "felt_understood"
text = "Which answer made you feel more understood?"
type = "choice"
options = ["Response 1", "Response 2", "Neither", "Both equally"]
when = "after_comparison"

[[questions]]
id = "wrong_assumption"
text = "Did either answer assume something wrong about you?"
type = "yes_no"
when = "after_comparison"
'''
# Due from midnight to midnight: due whenever the test runs.
SURVEY = '''
[[questions]]
id = "mood"
text = "How well did the assistant understand you today?"
type = "likert"
points = 5
labels = ["Not at all", "Completely"]
when = "daily"
at = "00:00"

[[questions]]
id = "anything_else"
text = "Anything else about how the assistant understood you?"
type = "text"
max_length = 300
when = "daily"
at = "00:00"
'''


def enrolled(make_app: MakeApp, data_dir: Path, questions: str) -> StudyApp:
    """An app enrolled in a study asking ``questions``, its answers consented (no server: nothing is uploaded)."""
    app_ctx = AppContext.create(data_dir)
    protocol = parse_protocol(ratings_study("asking", "Feeling understood", CATEGORY + questions))
    save_enrollment(app_ctx.db, protocol, participant_id="p1")
    # Enrolled yesterday: today's daily questions are due (none is asked for a time before the enrollment).
    yesterday = datetime.now(UTC) - timedelta(days=1)
    app_ctx.db.execute("UPDATE studies SET enrolled_at = ?", [yesterday.isoformat()])
    app_ctx.db.conn.commit()
    ConsentService(app_ctx.db).grant(protocol, ["ratings", "question_answers"])
    app_ctx.close()
    return make_app()


def asks(app: StudyApp) -> list[QuestionAsk]:
    return QuestionStore(app.services.app_ctx.db).list()


def composer(app: StudyApp) -> Composer:
    return app.screen.query_one(Composer)


def prompt(app: StudyApp) -> QuestionPrompt:
    return app.screen.query_one(QuestionPrompt)


async def type_slowly(pilot: Pilot[None], text: str) -> None:
    """Type as a person does: one key, then whatever the app does meanwhile."""
    for character in text:
        await pilot.press("space" if character == " " else character)
        await pilot.pause()


async def test_typing_while_a_question_becomes_due_goes_to_the_message_box(
    make_app: MakeApp, scripted_llm: ScriptedLLM, tmp_path: Path, memory_keyring: MemoryKeyring
) -> None:
    app = enrolled(make_app, tmp_path / "data", AFTER_TURN)
    never_compare(app)
    reply = scripted_llm.add_text("Try overnight oats with berries.", hold_after=2)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press(*"breakfast?", "enter")
        await reply.wait_held_async()
        # The reply is arriving: the participant starts their next message; no question is over the reply.
        typed = "and 12 yes"
        await type_slowly(pilot, typed)
        assert not prompt(app).display and asks(app) == []
        reply.release()
        # They keep typing (digits, y, n, Enter for a new line, Esc) while the reply finishes and the question
        # about it appears.
        more = " 3 n 5y"
        while not prompt(app).display:
            await type_slowly(pilot, more)
            typed += more
        await type_slowly(pilot, more)
        typed += more
        await pilot.press("shift+enter", "escape", "4")
        typed += "\n4"
        assert composer(app).text == typed, "every key went to the message box"
        assert app.focused is composer(app)
        [ask] = asks(app)
        assert (ask.question_id, ask.status, ask.message_id) == ("written_for_you", "asked", views(app)[1].message.id)
        assert "Did that reply feel like it was written for you?" in text_in(app, "#question-prompt")
        assert "F5: answer" in text_in(app, "#question-prompt")

        # F5, then 4: answered, recorded; the message box has the keyboard (and the draft) again.
        await pilot.press("f5", "4")
        await wait_for(pilot, lambda: asks(app)[0].status == "answered", what="the answer recorded")
        [ask] = asks(app)
        assert (ask.answer_number, ask.answer_option, ask.answer_text) == (4, None, None)
        assert not prompt(app).display
        assert app.focused is composer(app) and composer(app).text == typed


async def test_no_question_follows_a_reply_that_was_stopped(
    make_app: MakeApp, scripted_llm: ScriptedLLM, tmp_path: Path, memory_keyring: MemoryKeyring
) -> None:
    app = enrolled(make_app, tmp_path / "data", AFTER_TURN)
    never_compare(app)
    reply = scripted_llm.add_text("Try overnight oats with berries.", hold_after=2)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press(*"breakfast?", "enter")
        await reply.wait_held_async()
        await pilot.press("escape")
        await wait_for(pilot, lambda: [v.message.status for v in views(app)] == ["complete", "interrupted"],
                       what="the reply stopped")
        reply.release()
        await wait_for(pilot, lambda: not app.screen._replying(), what="the turn over")
        await pilot.pause()
        assert asks(app) == [] and not prompt(app).display


async def test_a_question_is_skipped_with_esc_or_by_carrying_on(
    make_app: MakeApp, scripted_llm: ScriptedLLM, tmp_path: Path, memory_keyring: MemoryKeyring
) -> None:
    app = enrolled(make_app, tmp_path / "data", AFTER_TURN)
    never_compare(app)
    scripted_llm.set_default("Here you are.")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press(*"first", "enter")
        await wait_for(pilot, lambda: bool(prompt(app).display), what="the first question")
        # Esc in the message box does not touch it (it stops replies); Esc at the question skips it.
        await pilot.press("escape")
        assert [a.status for a in asks(app)] == ["asked"]
        await pilot.press("f5", "escape")
        await wait_for(pilot, lambda: [a.status for a in asks(app)] == ["skipped"], what="the skip recorded")
        assert app.focused is composer(app)

        await pilot.press(*"second", "enter")
        await wait_for(pilot, lambda: len(asks(app)) == 2 and bool(prompt(app).display), what="the second question")
        # Not answered: the participant sends the next message, and the question about the last reply is skipped.
        await pilot.press(*"third", "enter")
        await wait_for(pilot, lambda: len(asks(app)) == 3 and bool(prompt(app).display), what="the third question")
        assert [a.status for a in asks(app)] == ["skipped", "skipped", "asked"]
        assert [a.answered_at is not None for a in asks(app)] == [True, True, False]


async def test_questions_after_a_rating_are_answered_one_after_another(
    make_app: MakeApp, scripted_llm: ScriptedLLM, tmp_path: Path, memory_keyring: MemoryKeyring
) -> None:
    app = enrolled(make_app, tmp_path / "data", AFTER_COMPARISON)
    app.services.memory.add("The user is vegetarian")
    always_compare(app)

    def answer(body: dict) -> object:
        if body.get("response_format"):
            return {"decisions": [{"id": 1, "use": True, "rationale": "food"}], "attributes": []}
        return "Lentil curry."

    scripted_llm.set_default(answer)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press(*"dinner?", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ComparisonScreen) and app.screen.step == "rate",
                       what="both answers shown")
        screen = app.screen
        await pilot.press("4")
        while screen.step == "relevance":
            await pilot.press("y")
        if screen.step == "comment":
            await pilot.press("enter")
        await pilot.press("1")
        await wait_for(pilot, lambda: isinstance(app.screen, ChatScreen) and bool(prompt(app).display),
                       what="the questions after the rating")
        assert app.focused is composer(app)
        assert "(1 of 2)" in text_in(app, "#question-prompt")
        await pilot.press("f5", "right", "enter")
        await wait_for(pilot, lambda: "(2 of 2)" in text_in(app, "#question-prompt"), what="the second question")
        await pilot.press("y")
        await wait_for(pilot, lambda: all(a.status == "answered" for a in asks(app)), what="both answers recorded")
        by_id = {a.question_id: a for a in asks(app)}
        assert (by_id["felt_understood"].answer_option, by_id["wrong_assumption"].answer_number) == ("Response 2", 1)
        assert {a.comparison_id for a in asks(app)} == {screen.outcome.comparison_id}
        assert app.focused is composer(app) and not prompt(app).display


async def test_a_survey_waits_while_the_participant_types_and_comes_back_when_put_off(
    make_app: MakeApp, tmp_path: Path, memory_keyring: MemoryKeyring
) -> None:
    app = enrolled(make_app, tmp_path / "data", SURVEY)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        chat = app.screen
        assert isinstance(chat, ChatScreen)
        # At start the survey came due with nothing typed, but it opens only once the box was left alone a while.
        await wait_for_toast(pilot, lambda t: "2 questions for you" in t, what="the notice")
        assert chat.survey_asks and not isinstance(app.screen, SurveyScreen)
        # Typing while the survey is due (the check runs again, as its timer does): it stays closed.
        chat.survey_quiet_s = 0
        typed = ""
        for word in ("lunch ", "3y ", "n5"):
            await type_slowly(pilot, word)
            typed += word
            chat.check_surveys()
            await pilot.pause()
        assert isinstance(app.screen, ChatScreen) and composer(app).text == typed
        assert [a.status for a in asks(app)] == ["asked", "asked"]

        # The participant opens it (F5): the first question has the keyboard. 4, then Esc: later.
        app.services.asking.postpone_delay = timedelta(0)  # due again at once, rather than in an hour
        await pilot.press("f5")
        await wait_for(pilot, lambda: isinstance(app.screen, SurveyScreen), what="the survey")
        await pilot.press("4", "escape")
        await wait_for(pilot, lambda: isinstance(app.screen, ChatScreen), what="back to the chat")
        assert {a.question_id: (a.status, a.answer_number) for a in asks(app)} == {
            "mood": ("answered", 4), "anything_else": ("postponed", None)}
        assert composer(app).text == typed and not chat.survey_asks

        # Due again: while a draft waits it stays closed; with the box cleared it opens by itself, the
        # question put off alone, and nothing has the keyboard in it.
        chat.check_surveys()
        await pilot.pause()
        assert isinstance(app.screen, ChatScreen) and [a.question.id for a in chat.survey_asks] == ["anything_else"]
        await pilot.press("ctrl+a", "ctrl+k")
        assert composer(app).text == ""
        chat.check_surveys()
        await wait_for(pilot, lambda: isinstance(app.screen, SurveyScreen), what="the survey back")
        assert [a.question.id for a in app.screen.asks] == ["anything_else"]
        assert app.focused is None
        survey = app.screen
        # Done and Later wait out the grace period of a survey the app opened.
        await wait_for(pilot, lambda: survey.accepts_answers, what="the grace period over")
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, ChatScreen), what="the survey done")
        assert {a.question_id: a.status for a in asks(app)} == {"mood": "answered", "anything_else": "skipped"}


async def test_a_free_text_answer_is_anonymized_before_the_outbox(
    make_app: MakeApp, tmp_path: Path, memory_keyring: MemoryKeyring
) -> None:
    app = enrolled(make_app, tmp_path / "data", SURVEY)
    async with app.run_test(size=SIZE) as pilot:
        chat = app.screen
        assert isinstance(chat, ChatScreen)
        await wait_for(pilot, lambda: bool(chat.survey_asks), what="the survey due")
        await pilot.press("f5")
        await wait_for(pilot, lambda: isinstance(app.screen, SurveyScreen), what="the survey")
        await pilot.press("down", *"Maria Lopez from Dublin called me at +44 20 7946 0958.", "ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, ChatScreen), what="the survey done")
        stored = {a.question_id: a for a in asks(app)}["anything_else"]
        assert stored.answer_text == "Maria Lopez from Dublin called me at +44 20 7946 0958."
        # The gate anonymizes it in its own thread (spaCy loads on first use: slow on a busy machine).
        await app.services.participation.flush()
        outbox = OutboxStore(app.services.app_ctx.db)
        await wait_for(pilot, lambda: any(e.payload.get("question_id") == "anything_else"
                                          for e in outbox.list(kind="question_answer")),
                       what="the answer in the outbox", timeout=60)
        [sent] = [e.payload for e in outbox.list(kind="question_answer") if e.payload["question_id"] == "anything_else"]
        assert sent["status"] == "answered"
        for found in ("Maria", "Lopez", "7946"):
            assert found not in sent["answer_text"], sent["answer_text"]
        assert "called me at" in sent["answer_text"]
