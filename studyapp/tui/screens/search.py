"""Search every past message (SQLite FTS5) and jump to a hit."""

from __future__ import annotations

from collections.abc import Callable

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, OptionList
from textual.widgets.option_list import Option

from studyapp.domain import HIT_END, HIT_START, SearchHit

SEARCH_DELAY_S = 0.15


def hit_label(hit: SearchHit) -> Text:
    """One line per hit: where it is, then the passage with the matched words highlighted (never markup)."""
    label = Text(f"{hit.conversation_title} · {hit.message.role}: ", style="dim")
    passage = " ".join(hit.snippet.split())
    for i, part in enumerate(passage.replace(HIT_END, HIT_START).split(HIT_START)):
        label.append(part, style="bold reverse" if i % 2 else "")
    return label


class SearchScreen(ModalScreen[SearchHit | None]):
    BINDINGS = [Binding("escape", "cancel", "Close"), Binding("down", "focus_results", show=False)]

    def __init__(self, search: Callable[[str], list[SearchHit]]) -> None:
        super().__init__(classes="dialog-screen")
        self._search = search
        self._hits: list[SearchHit] = []
        self._timer = None

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog search"):
            yield Label("Search all messages", classes="question")
            yield Input(placeholder="words to find…", id="query")
            yield OptionList(id="results")
            yield Label("", id="search-status", markup=False)

    @on(Input.Changed, "#query")
    def _changed(self, event: Input.Changed) -> None:
        # Wait for a pause in typing rather than querying on every key.
        if self._timer is not None:
            self._timer.stop()
        self._timer = self.set_timer(SEARCH_DELAY_S, lambda: self.run_search(event.value))

    @on(Input.Submitted, "#query")
    def _submitted(self, event: Input.Submitted) -> None:
        if self._timer is not None:
            self._timer.stop()
        self.run_search(event.value)
        if self._hits:
            self.dismiss(self._hits[0])

    def run_search(self, query: str) -> None:
        self._hits = self._search(query) if query.strip() else []
        results = self.query_one(OptionList)
        results.clear_options()
        results.add_options(Option(hit_label(hit), id=str(i)) for i, hit in enumerate(self._hits))
        status = self.query_one("#search-status", Label)
        if query.strip() and not self._hits:
            status.update("No messages match.")
        elif self._hits:
            status.update(f"{len(self._hits)} matches: Enter opens the first, ↓ to choose.")
        else:
            status.update("")

    @on(OptionList.OptionSelected, "#results")
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self._hits[int(event.option.id or 0)])

    def action_focus_results(self) -> None:
        """↓ from the query goes to the first hit, highlighted, so Enter opens it (the hint says "↓ to choose")."""
        if self._hits:
            results = self.query_one(OptionList)
            if results.highlighted is None:
                results.highlighted = 0
            results.focus()

    def action_cancel(self) -> None:
        self.dismiss(None)
