"""One attribute in full: its statement, reason, confidence, origin, evidence messages and history."""

from __future__ import annotations

from collections.abc import Sequence

from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Label, Static

from studyapp.domain import Attribute, AttributeEvent, Message
from studyapp.tui.widgets.memory_table import LABEL_TEXT, origin_text

ACTOR_TEXT = {"model": "assistant", "participant": "you"}


class AttributeDetail(VerticalScroll):
    def __init__(self, attribute: Attribute, evidence: Sequence[Message], history: Sequence[AttributeEvent],
                 **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.attribute = attribute
        self.evidence = list(evidence)
        self.history = list(history)

    def compose(self) -> ComposeResult:
        a = self.attribute
        edited = any(e.action == "update" and e.actor == "participant" for e in self.history)
        yield Static(a.text, classes="attribute-text", markup=False)
        yield Static(f"Why: {a.reason or '–'}", classes="attribute-reason", markup=False)
        yield Static(
            f"Confidence {a.confidence:.2f} · from {origin_text(a.origin, edited=edited)} · "
            f"added {a.created_at[:16].replace('T', ' ')} UTC · your label: {LABEL_TEXT.get(a.label, '–')}",
            classes="attribute-meta", markup=False,
        )
        yield Label(f"Evidence ({len(self.evidence)} message{'s' if len(self.evidence) != 1 else ''})",
                    classes="section-title")
        if not self.evidence:
            yield Static("No messages support this attribute"
                         + (" (you added it yourself)." if a.origin == "participant" else "."),
                         classes="evidence-empty", markup=False)
        for message in self.evidence:
            yield Static(f"{message.created_at[:16].replace('T', ' ')} · you wrote:\n{message.content}",
                         classes="evidence", markup=False)
        yield Label("History", classes="section-title")
        for event in self.history:
            after = (event.after or {}).get("text", "")
            yield Static(
                f"{event.created_at[:16].replace('T', ' ')} · {event.action} by "
                f"{ACTOR_TEXT.get(event.actor, event.actor)}: {event.reason}"
                + (f" → {after}" if event.action == "update" and after else ""),
                classes="event", markup=False,
            )
