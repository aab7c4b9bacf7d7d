"""Stage 3: build what the model sees for a reply, with or without the participant's attributes."""

from __future__ import annotations

from collections.abc import Sequence

from studyapp.llm.base import ChatMessage
from studyapp.personalize.templates import load_template
from studyapp.store.conversations import Message


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
        template = load_template("assistant_personalized")
        system = template.render(attributes="\n".join(f"- {a}" for a in attributes))
    else:
        template = load_template("assistant")
        system = template.text
    turns = [m for m in history if m.role in ("user", "assistant") and m.content.strip()
             and m.status in ("complete", "interrupted")]
    turns = turns[-context_messages:]
    messages: list[ChatMessage] = [{"role": "system", "content": system}]
    messages += [{"role": m.role, "content": m.content} for m in turns]
    return messages, template.ref
