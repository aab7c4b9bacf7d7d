"""The LLM judge: the configured judge model(s) rate each rated or skipped comparison on the participant's scale.

Every pair is judged in both orders (personalized arm as Response 1, then as Response 2) to cancel
position bias; each verdict is converted to the personalized arm's point of view like the participant's
rating, and stored in ``judge_verdicts`` with the raw output. Verdicts are never shown to the participant.
The judge is shown the conversation the two answers were written with, rebuilt from the message ids the
comparison recorded (studyapp.study.transcript); each verdict keeps the sha256 and length of that transcript,
so a message edited or deleted since shows as a hash different from the comparison's.
A judge answer that cannot be read is recorded with its raw text and rating NULL; it never raises.
A model that cannot be reached records nothing, so the next background pass (or ``studyapp judge``) retries.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from studyapp.llm.base import ChatModel, ChatParams, LLMError
from studyapp.personalize.templates import Template
from studyapp.store.comparisons import ComparisonRecord, ComparisonStore
from studyapp.store.conversations import ConversationStore
from studyapp.study.comparison import to_personalized_scale
from studyapp.study.transcript import context_transcript, transcript_sha256

ORDERS = ("left", "right")  # where the personalized arm is put for the judge
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "rating": {"type": "integer", "minimum": 1, "maximum": 5},
        "reason": {"type": "string"},
    },
    "required": ["rating"],
}
# Deterministic judging: the same pair should get the same verdict from the same judge.
JUDGE_PARAMS = ChatParams(temperature=0.0, max_tokens=200)


@cache
def judge_template() -> Template:
    raw = resources.files("studyapp.study").joinpath("judge.txt").read_text(encoding="utf-8")
    header, _, body = raw.partition("\n---\n")
    return Template(name="judge", version=header.split(":", 1)[1].strip(), text=body.strip())


@dataclass(frozen=True)
class Verdict:
    judge_model: str
    personalized_side: str
    # On the personalized arm's scale (1 generic much better .. 5 personalized much better); None: unreadable.
    rating: int | None
    # The rating as the judge gave it on the shown scale (1 = Response 1 much better).
    shown_rating: int | None
    raw: str
    verdict_id: str | None = None


def read_rating(value: Any) -> int | None:
    """The judge's 1..5 from its JSON answer, or None if it is not there or out of range."""
    if isinstance(value, dict):
        value = value.get("rating")
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, int) and 1 <= value <= 5:
        return value
    return None


class Judge:
    """Judges comparisons with one or more models; results go to the comparison store."""

    def __init__(self, models: Sequence[ChatModel], store: ComparisonStore, *,
                 params: ChatParams = JUDGE_PARAMS) -> None:
        self.models = list(models)
        self.store = store
        self.conversations = ConversationStore(store.db)  # the comparison's context, by message id
        self.params = params
        # Why judge calls failed (model unreachable, ...): nothing was recorded for those; the CLI reports them.
        self.failures: list[str] = []
        # Per judge model, how its last call went (None: it answered), for the study models' problem record.
        self.outcomes: dict[str, str | None] = {}

    def context(self, comparison: ComparisonRecord) -> str:
        """The transcript of the conversation the pair was written with, as it reads now (messages deleted
        since are missing). Comparisons from before m008 recorded none: an empty context."""
        messages = self.conversations.messages_by_id(comparison.context_message_ids or [])
        return context_transcript(messages)

    def messages(self, comparison: ComparisonRecord, personalized_side: str,
                 context: str = "") -> list[dict[str, str]]:
        personalized, generic = comparison.personalized_response, comparison.generic_response
        first, second = (personalized, generic) if personalized_side == "left" else (generic, personalized)
        attributes = "\n".join(f"- {t}" for t in comparison.selected_texts) or "(nothing)"
        prompt = judge_template().render(attributes=attributes, context=context or "(none)",
                                         prompt=comparison.prompt, response_1=first, response_2=second)
        return [{"role": "user", "content": prompt}]

    async def _one(self, model: ChatModel, comparison: ComparisonRecord, side: str,
                   context: str) -> Verdict | None:
        try:
            result = await model.complete_json(self.messages(comparison, side, context), SCHEMA, self.params)
        except LLMError as exc:
            self.failures.append(f"{model.name}: {exc}")
            self.outcomes[model.name] = str(exc)
            return None
        self.outcomes[model.name] = None
        shown = read_rating(result.value)
        rating = to_personalized_scale(shown, side) if shown is not None else None
        return Verdict(model.name, side, rating, shown, result.raw)

    async def judge(self, comparison: ComparisonRecord | str) -> list[Verdict]:
        """Judge one comparison with every model in both orders; store and return the verdicts."""
        if isinstance(comparison, str):
            comparison = self.store.get(comparison)
        context = self.context(comparison)
        jobs = [self._one(model, comparison, side, context) for model in self.models for side in ORDERS]
        stored = []
        for verdict in await asyncio.gather(*jobs):
            if verdict is None:
                continue
            verdict_id = self.store.add_verdict(
                comparison.id, judge_model=verdict.judge_model, personalized_side=verdict.personalized_side,
                rating=verdict.rating, raw=verdict.raw, template=judge_template().ref,
                context_sha256=transcript_sha256(context), context_chars=len(context),
            )
            stored.append(Verdict(verdict.judge_model, verdict.personalized_side, verdict.rating,
                                  verdict.shown_rating, verdict.raw, verdict_id))
        return stored

    async def judge_pending(self, *, rerun: bool = False,
                            on_done: Callable[[ComparisonRecord, list[Verdict]], None] | None = None) -> int:
        """Judge rated and skipped comparisons not yet judged by each model (all of them with ``rerun``).

        One comparison at a time, so a long backlog never floods the model. Returns the number of verdicts.
        """
        count = 0
        for model in self.models:
            pending = self.store.judgeable() if rerun else self.store.unjudged(model.name)
            single = Judge([model], self.store, params=self.params)
            for comparison in pending:
                verdicts = await single.judge(comparison)
                self.failures += single.failures
                self.outcomes |= single.outcomes
                single.failures = []
                count += len(verdicts)
                if on_done is not None:
                    on_done(comparison, verdicts)
        return count

