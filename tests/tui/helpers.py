"""Waiting for the app to reach a state (bounded and condition-based, never a fixed sleep), and reading
what the participant sees."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from textual.app import App
from textual.pilot import Pilot

if TYPE_CHECKING:
    from studyapp.tui.app import StudyApp


class MakeApp(Protocol):
    """The ``make_app`` fixture: a StudyApp on the test's data dir and scripted model. Background extraction
    after a reply is off unless the test asks for it (0: at once)."""

    def __call__(self, *, extract_debounce_s: float | None = None) -> StudyApp: ...


async def wait_for(pilot: Pilot[Any], condition: Callable[[], bool], *, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what} (screen: {pilot.app.screen!r})")
        await pilot.pause(0.02)


def toasts(app: App[Any]) -> list[str]:
    """The notifications on screen, as the participant reads them: each toast's text, its title (if any) on
    the first line. Needs ``app.run_test(notifications=True)`` (Textual's tests show none by default);
    queried by type name because Textual does not export the Toast class."""
    return [str(toast.render()) for toast in app.screen.query("Toast")]


async def wait_for_toast(pilot: Pilot[Any], condition: Callable[[str], bool], *, what: str) -> str:
    """The first toast on screen whose text meets ``condition``, once one is shown."""
    await wait_for(pilot, lambda: any(condition(t) for t in toasts(pilot.app)), what=what)
    return next(t for t in toasts(pilot.app) if condition(t))


def screen_lines(app: App[Any]) -> list[str]:
    """The screen as the participant sees it, one string per terminal row (what export_screenshot draws)."""
    import io

    from rich.console import Console

    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), force_terminal=True, color_system="truecolor",
                      record=True, legacy_windows=False, safe_box=False)
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens))
    return console.export_text().splitlines()[:height]


def text_in(app: App[Any], selector: str) -> str:
    """The text drawn inside the widget ``selector`` (its content area, without border or padding), its rows
    joined with spaces: a sentence wrapped over several rows reads as one."""
    region = app.screen.query_one(selector).content_region
    rows = screen_lines(app)[region.y:region.bottom]
    return " ".join(" ".join(row[region.x:region.right].split()) for row in rows).strip()


async def press_button(pilot: Pilot[Any], selector: str) -> None:
    """Focus a button of a scrolling dialog and press Enter on it, as a keyboard user would."""
    button = pilot.app.screen.query_one(selector)
    # A button ignores presses while it still shows the previous one (a person is never that fast).
    await wait_for(pilot, lambda: not button.has_class("-active"), what=f"{selector} to be ready")
    button.focus()
    await pilot.pause()
    await pilot.press("enter")
    await pilot.pause()

