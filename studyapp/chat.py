"""Saving a participant's message and streaming the assistant's reply into the database (Textual-free).

``studyapp.turns.TurnController`` decides what a turn is (selection, comparison or reply) and calls this for the
reply; the benchmarks and crash tests drive ``send`` directly. Durability rules: the user message is committed
before any request goes out; reply text is flushed to the database at least every ``flush_interval`` seconds
while it streams; every reply ends ``complete``, ``interrupted`` (cancelled, text so far kept) or ``error``
(the reason kept beside it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass

from studyapp.domain import Conversation, Message
from studyapp.llm.base import ChatModel, ChatParams, LLMError
from studyapp.personalize.generate import build_messages
from studyapp.store.conversations import ConversationStore

log = logging.getLogger(__name__)

TITLE_LENGTH = 48


@dataclass
class UserSaved:
    message: Message
    conversation: Conversation


@dataclass
class ReplyStarted:
    message: Message
    attributes: list[str]


@dataclass
class ReplyDelta:
    message_id: str
    text: str


@dataclass
class ReplyFinished:
    message: Message


TurnEvent = UserSaved | ReplyStarted | ReplyDelta | ReplyFinished


def title_from(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= TITLE_LENGTH else line[: TITLE_LENGTH - 1].rstrip() + "…"


class ChatService:
    def __init__(
        self,
        store: ConversationStore,
        model_factory: Callable[[], ChatModel],
        *,
        params: ChatParams | None = None,
        context_messages: int = 20,
        flush_interval: float = 0.5,
    ) -> None:
        self.store = store
        self._model_factory = model_factory
        self._model: ChatModel | None = None
        self.params = params or ChatParams()
        self.context_messages = context_messages
        self.flush_interval = flush_interval

    @property
    def model(self) -> ChatModel:
        if self._model is None:
            self._model = self._model_factory()
        return self._model

    async def replace_model(self, factory: Callable[[], ChatModel], params: ChatParams | None = None) -> None:
        old, self._model = self._model, None
        self._model_factory = factory
        if params is not None:
            self.params = params
        if old is not None:
            await old.aclose()

    async def aclose(self) -> None:
        if self._model is not None:
            await self._model.aclose()
            self._model = None

    def save_user_message(self, conversation_id: str | None, text: str, *, memory_enabled: bool = True) -> UserSaved:
        """Commit the participant's message (creating the conversation if needed) before anything else.

        ``memory_enabled`` applies to a new conversation: off means nothing is extracted from it and
        nothing from memory is used in it.
        """
        if conversation_id is None:
            conversation = self.store.create(title_from(text), memory_enabled=memory_enabled)
        else:
            found = self.store.get(conversation_id)
            if found is None:
                raise ValueError(f"conversation {conversation_id} does not exist")
            conversation = found
        message = self.store.add_message(conversation.id, "user", text)
        return UserSaved(message, conversation)

    async def send(self, conversation_id: str | None, text: str, *,
                   memory_enabled: bool = True) -> AsyncIterator[TurnEvent]:
        """Save the message, then stream an unpersonalized reply (the app's turns go through TurnController).

        Cancelling the consumer marks the reply interrupted."""
        saved = self.save_user_message(conversation_id, text, memory_enabled=memory_enabled)
        yield saved
        # aclosing: closing this generator early must close the inner ones at once, so the reply is
        # marked interrupted now rather than whenever the garbage collector gets to it.
        async with aclosing(self.reply(saved.conversation, saved.message)) as events:
            async for event in events:
                yield event

    async def reply(self, conversation: Conversation, request: Message, *,
                    attributes: list[str] | None = None) -> AsyncIterator[TurnEvent]:
        """Stream the reply to ``request``, personalized with ``attributes`` (stage 3) when there are any."""
        attributes = list(attributes or [])
        history = self.store.messages(conversation.id, limit=self.context_messages * 2)
        chat_messages, template = build_messages(history, attributes, context_messages=self.context_messages)
        try:
            model = self.model
        except LLMError as exc:
            # The model cannot even start (e.g. the embedded model is not installed): say so in the thread.
            failed = self.store.add_message(conversation.id, "assistant", "", status="error", template=template)
            self.store.update_message(failed.id, error=str(exc))
            failed.error = str(exc)
            yield ReplyStarted(failed, attributes)
            yield ReplyFinished(failed)
            return
        reply = self.store.add_message(conversation.id, "assistant", "", status="streaming",
                                       model=model.name, template=template)
        yield ReplyStarted(reply, attributes)
        async with aclosing(self._stream_into(reply, model, chat_messages)) as events:
            async for event in events:
                yield event

    async def _stream_into(self, reply: Message, model: ChatModel,
                           chat_messages: list[dict[str, str]]) -> AsyncIterator[TurnEvent]:
        parts: list[str] = []
        started = time.perf_counter()
        last_flush = started
        first_token_ms: float | None = None
        status, error = "complete", None
        try:
            async with aclosing(model.stream(chat_messages, self.params)) as deltas:
                async for delta in deltas:
                    if not delta:
                        continue
                    if first_token_ms is None:
                        first_token_ms = (time.perf_counter() - started) * 1000
                    parts.append(delta)
                    # Persist before showing, so what is on screen is never ahead of the database by more
                    # than one flush interval.
                    if time.perf_counter() - last_flush >= self.flush_interval:
                        self.store.update_message(reply.id, content="".join(parts))
                        last_flush = time.perf_counter()
                    yield ReplyDelta(reply.id, delta)
        except (asyncio.CancelledError, GeneratorExit):
            status = "interrupted"
            raise
        except LLMError as exc:
            status, error = "error", str(exc)
        except Exception as exc:  # never lose the turn to an unexpected failure
            log.exception("reply failed")
            status, error = "error", f"Unexpected error while answering: {exc}. The conversation is saved."
        finally:
            self.store.update_message(
                reply.id,
                content="".join(parts),
                status=status,
                error=error,
                first_token_ms=first_token_ms,
                duration_ms=(time.perf_counter() - started) * 1000,
            )
            reply.content, reply.status, reply.error = "".join(parts), status, error
            reply.first_token_ms = first_token_ms
        yield ReplyFinished(reply)
