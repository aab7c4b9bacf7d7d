"""Messages on screen: one MessageView per message inside a ConversationView.

Only a window of the conversation is mounted (the newest page, or the page around a search hit);
older pages are mounted on request, so a conversation of any length opens at once.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Button, Markdown, Static

from studyapp.domain import Message

ROLE_LABELS = {"user": "You", "assistant": "Assistant", "system": "System"}
STATUS_NOTES = {
    "interrupted": "Stopped: the text above is what arrived.",
    "streaming": "…",
}


class MessageView(Vertical):
    def __init__(self, message: Message) -> None:
        super().__init__(classes=f"message -{message.role} -{message.status}", id=f"m{message.n}")
        self.message = message
        self._stream = None

    def compose(self) -> ComposeResult:
        yield Static(ROLE_LABELS.get(self.message.role, self.message.role), classes="role", markup=False)
        yield Markdown(self.message.content, classes="content")
        # The note and the "shaped by" line are mounted only when there is something to say: a page of
        # messages is then two widgets each, which keeps opening a conversation quick.
        if note := self._note():
            yield Static(note, classes="note", markup=False)

    def _line(self, cls: str) -> Static:
        found = self.query(f".{cls}")
        if found:
            return found.first(Static)
        line = Static("", classes=cls, markup=False)
        self.mount(line)
        return line

    def _note(self) -> str:
        if self.message.status == "error":
            return f"Error: {self.message.error or 'the reply failed'}"
        if self.message.status == "interrupted" and not self.message.content.strip():
            return "Stopped before any text arrived."  # there is no "text above" to point at
        return STATUS_NOTES.get(self.message.status, "")

    def set_used(self, attributes: list[str]) -> None:
        """Show which of the participant's attributes shaped this reply (stage 2's selection)."""
        if not attributes and not self.query(".used"):
            return
        used = self._line("used")
        # Attributes are sentences, most ending in a full stop: a middle dot reads well after one ("; " did not).
        used.update("Shaped by your memory: " + " · ".join(attributes) if attributes else "")
        used.display = bool(attributes)

    @property
    def markdown(self) -> Markdown:
        return self.query_one(".content", Markdown)

    async def append(self, text: str) -> None:
        if self._stream is None:
            self._stream = Markdown.get_stream(self.markdown)
        self.message.content += text
        await self._stream.write(text)

    async def finish(self, message: Message) -> None:
        if self._stream is not None:
            await self._stream.stop()
            self._stream = None
        self.message = message
        self.set_classes(f"message -{message.role} -{message.status}")
        if self.markdown.source != message.content:
            await self.markdown.update(message.content)
        note = self._note()
        if note or self.query(".note"):
            self._line("note").update(note)


class ConversationView(VerticalScroll):
    """The scrolling column of messages, pinned to the bottom while the participant has not scrolled away."""

    def on_mount(self) -> None:
        self.anchor()

    async def show(self, messages: list[Message], *, has_earlier: bool) -> None:
        await self.remove_children()
        widgets: list[Vertical | Button] = []
        if has_earlier:
            widgets.append(Button("Load earlier messages (ctrl+b)", id="load-earlier", classes="load-earlier"))
        widgets.extend(MessageView(m) for m in messages)
        await self.mount_all(widgets)

    async def prepend(self, messages: list[Message], *, has_earlier: bool) -> None:
        button = self.query("#load-earlier")
        first = self.query(MessageView).first() if self.query(MessageView) else None
        await button.remove()
        widgets: list[Vertical | Button] = []
        if has_earlier:
            widgets.append(Button("Load earlier messages (ctrl+b)", id="load-earlier", classes="load-earlier"))
        widgets.extend(MessageView(m) for m in messages)
        if first is not None:
            await self.mount_all(widgets, before=first)
        else:
            await self.mount_all(widgets)

    async def add(self, message: Message) -> MessageView:
        view = MessageView(message)
        await self.mount(view)
        return view

    def view_for(self, message_id: str) -> MessageView | None:
        for view in self.query(MessageView):
            if view.message.id == message_id:
                return view
        return None

    def first_n(self) -> int | None:
        views = self.query(MessageView)
        return views.first().message.n if views else None
