"""The sidebar: conversations, most recent first."""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message
from textual.widgets import Label, ListItem, ListView

from studyapp.store.conversations import Conversation


class ConversationItem(ListItem):
    def __init__(self, conversation: Conversation) -> None:
        super().__init__(Label(conversation.title, markup=False), classes="conversation-item")
        self.conversation = conversation


class ConversationList(ListView):
    @dataclass
    class Chosen(Message):
        conversation_id: str

    def set_conversations(self, conversations: list[Conversation], current_id: str | None) -> None:
        self.clear()
        items = [ConversationItem(c) for c in conversations]
        self.extend(items)
        for index, item in enumerate(items):
            if item.conversation.id == current_id:
                self.index = index
                break

    def on_list_view_selected(self, event: ListView.Selected) -> None:
        event.stop()
        if isinstance(event.item, ConversationItem):
            self.post_message(self.Chosen(event.item.conversation.id))
