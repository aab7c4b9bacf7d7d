"""Stage 2: decide which attributes should shape the answer to one request.

One structured call covers the whole memory (cost grows with the memory, not with the number of calls):
the model sees the attributes numbered 1..n and answers yes/no with a one-line rationale for each.
A decision is recorded for **every** attribute, selected or not, with the model and the template ref;
attributes the model said nothing about are recorded as not selected ("no decision from model").
When the answer is unusable or the model cannot be reached, nothing is selected (the reply goes out
without a profile) and the reason is recorded with each attribute; ``select`` never raises for that.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from studyapp.domain import Attribute
from studyapp.llm.base import ChatMessage, ChatModel, ChatParams
from studyapp.personalize.structured import StructuredResult, complete_structured
from studyapp.personalize.templates import load_template
from studyapp.store.memory import MemoryStore

SELECT_TEMPLATE = "select"
NO_DECISION = "no decision from model"
MAX_RATIONALE_CHARS = 300
# Output budget per attribute (id, use, a one-line rationale), plus a margin; capped because many endpoints
# refuse larger max_tokens.
TOKENS_PER_DECISION = 40
MAX_OUTPUT_TOKENS = 8192

SELECT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "decisions": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "id": {"type": "integer"},
                    "use": {"type": "boolean"},
                    "rationale": {"type": "string"},
                },
                "required": ["id", "use", "rationale"],
            },
        }
    },
    "required": ["decisions"],
}


@dataclass
class SelectionDecision:
    attribute_id: str
    text: str
    selected: bool
    rationale: str
    # False when the selector's answer was unreadable or said nothing about this attribute: "not selected"
    # then is not the model's "no".
    valid: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {"attribute_id": self.attribute_id, "text": self.text, "selected": self.selected,
                "rationale": self.rationale}


@dataclass
class SelectionResult:
    decisions: list[SelectionDecision] = field(default_factory=list)
    model: str | None = None
    template: str | None = None
    error: str | None = None
    structured: StructuredResult | None = None

    @property
    def selected(self) -> list[str]:
        """The texts of the selected attributes, in memory order: what the personalized prompt gets."""
        return [d.text for d in self.decisions if d.selected]

    @property
    def selected_ids(self) -> list[str]:
        return [d.attribute_id for d in self.decisions if d.selected]

    @property
    def ok(self) -> bool:
        return self.error is None


class Selector:
    def __init__(self, model: ChatModel, store: MemoryStore | None = None, *,
                 params: ChatParams | None = None) -> None:
        self.model = model
        self.store = store
        self.params = params
        self.template = load_template(SELECT_TEMPLATE)

    def build_messages(self, request_text: str, attributes: Sequence[Attribute]) -> list[ChatMessage]:
        listed = "\n".join(f"{i}. {a.text}" for i, a in enumerate(attributes, start=1))
        return [
            {"role": "system", "content": self.template.text},
            {"role": "user", "content": f"Attributes:\n{listed}\n\nThe user's request:\n{request_text}"},
        ]

    def _params(self, n: int) -> ChatParams:
        if self.params is not None:
            return self.params
        return ChatParams(temperature=0.0, max_tokens=min(MAX_OUTPUT_TOKENS, 64 + TOKENS_PER_DECISION * n))

    async def select(self, request_text: str, attributes: Sequence[Attribute], *,
                     message_id: str | None = None) -> SelectionResult:
        """Decide for every attribute; record the decisions for ``message_id`` when a store is given."""
        result = SelectionResult(model=self.model.name, template=self.template.ref)
        if not attributes:
            return result
        structured = await complete_structured(self.model, self.build_messages(request_text, attributes),
                                               SELECT_SCHEMA, self._params(len(attributes)))
        result.structured = structured
        answers: dict[int, tuple[bool, str]] = {}
        if structured.ok:
            for item in structured.value["decisions"]:
                ref = item["id"]
                if 1 <= ref <= len(attributes) and ref not in answers:  # unknown numbers are ignored
                    rationale = " ".join(str(item["rationale"]).split())[:MAX_RATIONALE_CHARS]
                    answers[ref] = (bool(item["use"]), rationale)
            missing_reason = NO_DECISION
        else:
            result.error = structured.error
            missing_reason = f"{NO_DECISION} ({structured.error})"
        for i, attribute in enumerate(attributes, start=1):
            selected, rationale = answers.get(i, (False, missing_reason))
            result.decisions.append(SelectionDecision(attribute.id, attribute.text, selected, rationale,
                                                      valid=i in answers))
        if self.store is not None and message_id is not None:
            self.store.record_selections(
                message_id, [(d.attribute_id, d.selected, d.rationale, d.valid) for d in result.decisions],
                model=result.model, template=result.template,
            )
        return result
