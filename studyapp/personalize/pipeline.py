"""The three stages wired together over the participant's database: what the chat and study code call.

    personalization = Personalization(db, extractor_model=model, selector_model=model)
    selection = await personalization.select_for(conversation, user_message)   # stage 2 (recorded)
    messages, template = personalization.build(history, selection)            # stage 3 prompt
    ...stream the reply...
    await personalization.extract(conversation.id)                            # stage 1, in the background

A conversation with memory off gets no selection (nothing from memory is used) and nothing is extracted
from it. ``memory`` is the ``MemoryService`` for the memory screen. ``on_change()`` is called after every
committed attribute change or label, to wake the privacy gate (the record itself is noted for it by the
database, in the same transaction).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlite_utils import Database

from studyapp.domain import Attribute, Conversation, Message
from studyapp.llm.base import ChatMessage, ChatModel
from studyapp.personalize.extract import DEFAULT_THRESHOLD, ExtractionResult, Extractor
from studyapp.personalize.generate import build_messages
from studyapp.personalize.memory import ChangeHook, MemoryService, notify_change
from studyapp.personalize.select import SelectionResult, Selector
from studyapp.store.memory import MemoryStore


class Personalization:
    def __init__(
        self,
        db: Database,
        *,
        extractor_model: ChatModel,
        selector_model: ChatModel | None = None,
        threshold: float = DEFAULT_THRESHOLD,
        on_change: ChangeHook | None = None,
    ) -> None:
        self.store = MemoryStore(db)
        self.on_change = on_change
        self.extractor = Extractor(extractor_model, self.store, threshold=threshold)
        self.selector = Selector(selector_model or extractor_model, self.store)
        self.memory = MemoryService(self.store, on_change=on_change)

    def attributes(self) -> list[Attribute]:
        return self.store.list_attributes()

    async def select_for(self, conversation: Conversation, request: Message) -> SelectionResult:
        """Stage 2 for a user message: decisions recorded for every attribute (none if memory is off)."""
        if not conversation.memory_enabled:
            return SelectionResult(model=None, template=None)
        return await self.selector.select(request.content, self.store.list_attributes(), message_id=request.id)

    def build(self, history: Sequence[Message], selection: SelectionResult | None, *,
              context_messages: int = 20) -> tuple[list[ChatMessage], str]:
        """Stage 3 prompt: personalized with the selected attributes, generic when none were selected."""
        attributes = selection.selected if selection is not None else None
        return build_messages(history, attributes, context_messages=context_messages)

    async def extract(self, conversation_id: str | None = None) -> list[ExtractionResult]:
        """Stage 1 over everything pending (of one conversation, or all). Never raises for model problems.

        Calls ``on_change`` when a run changed the memory.
        """
        results = await self.extractor.run_pending(conversation_id)
        if any(r.events for r in results):
            notify_change(self.on_change)
        return results

    def used_attributes(self, message_id: str) -> list[Attribute]:
        """The attributes selected for a user message (the chat view's "which attributes were used")."""
        return self.store.selected_attributes(message_id)
