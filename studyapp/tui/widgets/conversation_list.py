"""The sidebar: conversations, most recent first.

An OptionList draws every row as one widget, so hundreds of conversations cost one layout rather than
hundreds of widgets; and the list is only redrawn when titles or order actually changed.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.message import Message
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from studyapp.domain import Conversation


class ConversationList(OptionList):
    @dataclass
    class Chosen(Message):
        conversation_id: str

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._shown: list[tuple[str, str]] = []
        self._memory_off: set[str] = set()

    @property
    def titles(self) -> list[str]:
        return [title for _, title in self._shown]

    def set_conversations(self, conversations: list[Conversation], current_id: str | None) -> None:
        shown = [(c.id, c.title) for c in conversations]
        memory_off = {c.id for c in conversations if not c.memory_enabled}
        if shown != self._shown or memory_off != self._memory_off:
            self._shown, self._memory_off = shown, memory_off
            self.clear_options()
            # Text, not markup: a title is whatever the participant typed.
            self.add_options(Option(self._prompt(title, conversation_id in memory_off), id=conversation_id)
                             for conversation_id, title in shown)
        ids = [conversation_id for conversation_id, _ in shown]
        self.highlighted = ids.index(current_id) if current_id in ids else None

    @staticmethod
    def _prompt(title: str, memory_off: bool) -> Text:
        """A conversation without memory keeps its mark in the list, so reopening it later says so."""
        prompt = Text(title)
        if memory_off:
            prompt.append(" · memory off", style="italic dim")
        return prompt

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if event.option.id is not None:
            self.post_message(self.Chosen(event.option.id))
