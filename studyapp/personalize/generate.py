"""Stage 3: build what the model sees for a reply, with or without the participant's attributes.

The generic arm gets the ``assistant`` template (no profile); the personalized arm gets
``assistant_personalized`` with the selected attributes; both with the same history, model and parameters.
Every stored output records the returned template ref (``name@version``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from studyapp.domain import Message
from studyapp.llm.base import ChatMessage, ChatModel, ChatParams
from studyapp.personalize.templates import load_template

GENERIC_TEMPLATE = "assistant"
PERSONALIZED_TEMPLATE = "assistant_personalized"


def built_with_memory(reply: Message) -> bool:
    """Whether the participant's attributes went into this reply's prompt, so it may say which shaped it.

    A comparison arm says so by its ``arm`` (the generic arm never saw them, even when it continues the
    conversation); an ordinary reply by the template it recorded (``assistant_personalized@N``).
    """
    if reply.role != "assistant":
        return False
    if reply.arm is not None:
        return reply.arm == "personalized"
    return reply.template is not None and reply.template.partition("@")[0] == PERSONALIZED_TEMPLATE


def build_messages(
    history: Sequence[Message],
    attributes: Sequence[str] | None = None,
    *,
    context_messages: int = 20,
) -> tuple[list[ChatMessage], str]:
    """The chat request for the next reply and the template ref it used.

    ``attributes`` None or empty gives the generic arm (no profile); otherwise the personalized arm.
    Only complete or interrupted turns with text are sent; the last ``context_messages`` are kept.
    """
    if attributes:
        template = load_template(PERSONALIZED_TEMPLATE)
        system = template.render(attributes="\n".join(f"- {a}" for a in attributes))
    else:
        template = load_template(GENERIC_TEMPLATE)
        system = template.text
    messages: list[ChatMessage] = [{"role": "system", "content": system}]
    messages += [{"role": m.role, "content": m.content} for m in prompt_turns(history, context_messages)]
    return messages, template.ref


def prompt_turns(history: Sequence[Message], context_messages: int = 20) -> list[Message]:
    """The messages of ``history`` that ``build_messages`` puts into the request, in order.

    Only complete or interrupted turns with text; the last ``context_messages`` of them. A comparison records
    exactly these (studyapp.study.comparison), so the judge can be shown the same conversation.
    """
    turns = [m for m in history if m.role in ("user", "assistant") and m.content.strip()
             and m.status in ("complete", "interrupted")]
    return turns[-context_messages:]


@dataclass
class Generation:
    """One generated reply (for the CLI and benchmarks; the chat streams through its own service)."""

    text: str
    template: str
    arm: str
    first_token_ms: float | None
    duration_ms: float


async def generate(
    model: ChatModel,
    history: Sequence[Message],
    attributes: Sequence[str] | None = None,
    params: ChatParams | None = None,
    *,
    context_messages: int = 20,
) -> Generation:
    """Stream one reply to the end; the generic arm when ``attributes`` is empty. Raises LLMError."""
    messages, template_ref = build_messages(history, attributes, context_messages=context_messages)
    started = time.perf_counter()
    first: float | None = None
    parts: list[str] = []
    async for delta in model.stream(messages, params):
        if first is None and delta:
            first = (time.perf_counter() - started) * 1000
        parts.append(delta)
    return Generation(
        text="".join(parts),
        template=template_ref,
        arm="personalized" if attributes else "generic",
        first_token_ms=first,
        duration_ms=(time.perf_counter() - started) * 1000,
    )
