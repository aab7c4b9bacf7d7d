""""Shaped by your memory" under a reply: only under answers built with the participant's attributes, as the
reply streams and when the conversation is reopened (also in a new session), and never when the study hides it."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path

from textual.pilot import Pilot
from textual.widgets import Static

from studyapp.context import AppContext
from studyapp.privacy.consent import ConsentService
from studyapp.study.current import save_enrollment
from studyapp.study.protocol import parse_protocol
from studyapp.tui.app import StudyApp
from studyapp.tui.screens.chat import ChatScreen
from studyapp.tui.screens.comparison import ComparisonScreen
from studyapp.tui.widgets.message_view import MessageView
from tests.support.keyring import MemoryKeyring
from tests.support.protocols import ratings_study
from tests.support.scripted_llm import ScriptedLLM
from tests.tui.helpers import MakeApp, wait_for
from tests.tui.test_chat_app import SIZE, always_compare, never_compare, views

VEGETARIAN = "The user is vegetarian"
PERSONAL, GENERIC = "Lentil curry tonight.", "Roast chicken tonight."

HIDDEN = ratings_study("hidden-memory", "Memory use hidden", "\n[display]\nshow_memory_use = false\n")


def scripted(*, use: bool = True) -> Callable[[dict], object]:
    """The model: selection answers ``use`` for the one attribute; a reply says whether its prompt held it."""

    def answer(body: dict) -> object:
        schema = json.dumps(body.get("response_format") or {})
        if '"use"' in schema:
            return {"decisions": [{"id": 1, "use": use, "rationale": "a food request"}]}
        if body.get("response_format"):
            return {"attributes": []}
        return PERSONAL if "vegetarian" in body["messages"][0]["content"] else GENERIC

    return answer


def memory_line(view: MessageView) -> str | None:
    """The "Shaped by your memory" line as the participant sees it (None: no line)."""
    lines = view.query(".used")
    if not lines or not lines.first().display:
        return None
    return str(lines.first(Static).render())


def reply_views(app: StudyApp) -> list[MessageView]:
    return [v for v in views(app) if v.message.role == "assistant"]


async def reopened(make_app: MakeApp, check: Callable[[Pilot[None], StudyApp], Awaitable[None]]) -> None:
    """A new session opens the latest conversation from the database: ``check`` what it shows."""
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ChatScreen) and bool(reply_views(app)),
                       what="the conversation reopened")
        await pilot.pause()
        await check(pilot, app)


async def compare_and_continue_with(pilot: Pilot[None], app: StudyApp, arm: str) -> None:
    """Send a request that becomes a comparison, rate it, and continue the conversation with ``arm``."""
    await pilot.press(*"what should I cook?", "enter")
    await wait_for(pilot, lambda: isinstance(app.screen, ComparisonScreen) and app.screen.step == "rate",
                   what="both answers shown")
    screen = app.screen
    assert isinstance(screen, ComparisonScreen) and screen.outcome is not None
    personal_left = screen.outcome.personalized_side == "left"
    await pilot.press("3")  # About the same
    while screen.step == "relevance":
        await pilot.press("y")
    if screen.step == "comment":
        await pilot.press("enter")
    await wait_for(pilot, lambda: screen.step == "continue", what="the continue question")
    await pilot.press("1" if personal_left == (arm == "personalized") else "2")
    await wait_for(pilot, lambda: isinstance(app.screen, ChatScreen) and len(views(app)) == 2,
                   what="back to the chat")
    await pilot.pause()


async def test_a_chosen_generic_arm_never_says_it_was_shaped_by_memory(
    make_app: MakeApp, scripted_llm: ScriptedLLM
) -> None:
    app = make_app()
    app.services.memory.add(VEGETARIAN)
    scripted_llm.set_default(scripted())
    always_compare(app)
    async with app.run_test(size=SIZE) as pilot:
        await compare_and_continue_with(pilot, app, "generic")
        [reply] = reply_views(app)
        assert (reply.message.content, reply.message.arm) == (GENERIC, "generic")
        # The attribute was selected for the request, but the answer kept was made without it.
        assert app.services.used_attributes(views(app)[0].message.id) == [VEGETARIAN]
        assert memory_line(reply) is None

    async def check(pilot: Pilot[None], app: StudyApp) -> None:
        [reply] = reply_views(app)
        assert reply.message.content == GENERIC
        assert memory_line(reply) is None

    await reopened(make_app, check)


async def test_a_chosen_personalized_arm_says_which_memory_shaped_it(
    make_app: MakeApp, scripted_llm: ScriptedLLM
) -> None:
    app = make_app()
    app.services.memory.add(VEGETARIAN)
    scripted_llm.set_default(scripted())
    always_compare(app)
    async with app.run_test(size=SIZE) as pilot:
        await compare_and_continue_with(pilot, app, "personalized")
        [reply] = reply_views(app)
        assert (reply.message.content, reply.message.arm) == (PERSONAL, "personalized")
        await wait_for(pilot, lambda: memory_line(reply) is not None, what="the memory line")
        assert memory_line(reply) == f"Shaped by your memory: {VEGETARIAN}"

    async def check(pilot: Pilot[None], app: StudyApp) -> None:
        [reply] = reply_views(app)
        assert memory_line(reply) == f"Shaped by your memory: {VEGETARIAN}"

    await reopened(make_app, check)


async def test_an_ordinary_reply_says_so_only_when_memory_went_into_it(
    make_app: MakeApp, scripted_llm: ScriptedLLM
) -> None:
    app = make_app()
    app.services.memory.add(VEGETARIAN)
    never_compare(app)
    async with app.run_test(size=SIZE) as pilot:
        # The selector finds the attribute relevant: the reply is personalized and says so as it streams ...
        scripted_llm.set_default(scripted(use=True))
        await pilot.press(*"dinner ideas?", "enter")
        await wait_for(pilot, lambda: [v.message.status for v in views(app)] == ["complete"] * 2, what="the reply")
        personal = reply_views(app)[0]
        assert personal.message.content == PERSONAL
        await wait_for(pilot, lambda: memory_line(personal) is not None, what="the memory line")
        assert memory_line(personal) == f"Shaped by your memory: {VEGETARIAN}"
        # ... and when it does not, the reply is generic and says nothing.
        scripted_llm.set_default(scripted(use=False))
        await pilot.press(*"what time is it in Tokyo?", "enter")
        await wait_for(pilot, lambda: [v.message.status for v in views(app)] == ["complete"] * 4,
                       what="the second reply")
        generic = reply_views(app)[1]
        assert generic.message.content == GENERIC
        await pilot.pause()
        assert memory_line(generic) is None

    async def check(pilot: Pilot[None], app: StudyApp) -> None:
        personal, generic = reply_views(app)
        assert memory_line(personal) == f"Shaped by your memory: {VEGETARIAN}"
        assert memory_line(generic) is None

    await reopened(make_app, check)


async def test_a_study_that_hides_memory_use_shows_it_under_no_reply(
    make_app: MakeApp, scripted_llm: ScriptedLLM, tmp_path: Path, memory_keyring: MemoryKeyring
) -> None:
    # Enrolled (consent given, no server: nothing to sync) in a study with [display] show_memory_use = false.
    app_ctx = AppContext.create(tmp_path / "data")
    protocol = parse_protocol(HIDDEN)
    save_enrollment(app_ctx.db, protocol, participant_id="p1")
    ConsentService(app_ctx.db).grant(protocol, ["ratings"])
    app_ctx.close()

    app = make_app()
    assert app.services.enrolled and not app.services.study.protocol.display.show_memory_use
    app.services.memory.add(VEGETARIAN)
    scripted_llm.set_default(scripted())
    never_compare(app)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press(*"dinner ideas?", "enter")
        await wait_for(pilot, lambda: [v.message.status for v in views(app)] == ["complete"] * 2, what="the reply")
        [ordinary] = reply_views(app)
        assert ordinary.message.content == PERSONAL, "the reply was personalized ..."
        await pilot.pause()
        assert memory_line(ordinary) is None, "... and the study does not say so"
        # A comparison whose personalized arm continues the conversation says nothing either.
        assert isinstance(app.screen, ChatScreen) and app.screen.conversation_id is not None
        first_conversation = app.screen.conversation_id
        await app.screen.action_new_conversation()
        always_compare(app)
        await compare_and_continue_with(pilot, app, "personalized")
        [chosen] = reply_views(app)
        assert chosen.message.arm == "personalized"
        assert memory_line(chosen) is None

    async def check(pilot: Pilot[None], app: StudyApp) -> None:
        assert app.services.enrolled
        [chosen] = reply_views(app)
        assert chosen.message.arm == "personalized" and memory_line(chosen) is None
        assert isinstance(app.screen, ChatScreen)
        await app.screen.open_conversation(first_conversation)
        await pilot.pause()
        [ordinary] = reply_views(app)
        assert ordinary.message.content == PERSONAL and memory_line(ordinary) is None

    await reopened(make_app, check)
