"""Structured answers from a model: validate against a JSON Schema, repair once, never crash.

The model implementations ask for JSON in the strongest way the endpoint allows (``complete_json``) and
hand back the parsed value and the raw text. Here the value is checked against the schema (a small
validator for the subset the pipeline's schemas use: type, properties, required, items, enum, minimum,
maximum, minItems, maxItems, additionalProperties false, nullable types as a list); if it fails, the model
gets one follow-up request that shows its answer and what was wrong. If that fails too, the caller gets a
``StructuredFailure`` with the raw text of both attempts, to record, never an exception.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from studyapp.llm.base import (
    ChatMessage,
    ChatModel,
    ChatParams,
    LLMError,
    MalformedResponse,
    ModelAuthError,
    ModelNotFound,
    ModelRateLimited,
    ModelServerError,
    ModelTimeout,
    ModelUnavailable,
    ModelUnreachable,
)

# Errors after which the same request may well work later (network, server, settings): the caller keeps
# its input for another run. Any other LLMError (a garbled response, a prompt too long for the context)
# would fail the same way again, so it is recorded as a failure instead of being retried forever.
TRANSIENT_ERRORS = (ModelUnreachable, ModelTimeout, ModelRateLimited, ModelServerError, ModelAuthError,
                    ModelNotFound, ModelUnavailable)

MAX_ERRORS_SHOWN = 5

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


def _is_type(value: Any, name: str) -> bool:
    # bool is an int subclass in Python; JSON keeps them apart.
    if name in ("integer", "number") and isinstance(value, bool):
        return False
    if name == "integer" and isinstance(value, float):
        return value.is_integer()
    return isinstance(value, _TYPES.get(name, (object,)))


def validate(value: Any, schema: dict[str, Any], path: str = "$") -> list[str]:
    """Every way ``value`` breaks ``schema``, as short messages naming the place ("$.items[2].id: ...")."""
    errors: list[str] = []
    expected = schema.get("type")
    if expected is not None:
        names = expected if isinstance(expected, list) else [expected]
        if not any(_is_type(value, n) for n in names):
            errors.append(f"{path}: expected {' or '.join(names)}, got {_json_type(value)}")
            return errors
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: {value!r} is not one of {schema['enum']}")
    if _is_type(value, "number"):
        if "minimum" in schema and value < schema["minimum"]:
            errors.append(f"{path}: {value} is below the minimum {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            errors.append(f"{path}: {value} is above the maximum {schema['maximum']}")
    if isinstance(value, dict):
        props: dict[str, Any] = schema.get("properties", {})
        for key in schema.get("required", []):
            if key not in value:
                errors.append(f"{path}: missing required key {key!r}")
        for key, item in value.items():
            if key in props:
                errors.extend(validate(item, props[key], f"{path}.{key}"))
            elif schema.get("additionalProperties") is False:
                errors.append(f"{path}: unexpected key {key!r}")
    if isinstance(value, list):
        if "minItems" in schema and len(value) < schema["minItems"]:
            errors.append(f"{path}: needs at least {schema['minItems']} items")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            errors.append(f"{path}: at most {schema['maxItems']} items")
        if "items" in schema:
            for i, item in enumerate(value):
                errors.extend(validate(item, schema["items"], f"{path}[{i}]"))
    return errors


def _json_type(value: Any) -> str:
    for name in ("null", "boolean", "integer", "number", "string", "array", "object"):
        if _is_type(value, name):
            return name
    return type(value).__name__


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


def parse_lenient(raw: str) -> Any:
    """Parse JSON the way small models write it: inside code fences, or with chatter around one object.

    Raises ValueError when no JSON value can be found.
    """
    text = raw.strip()
    candidates = [text]
    candidates += [m.group(1).strip() for m in _FENCE.finditer(text)]
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        candidates.append(text[start:end + 1])
    for candidate in candidates:
        try:
            return json.loads(candidate)
        except (json.JSONDecodeError, ValueError):
            continue
    raise ValueError("the answer is not valid JSON")


@dataclass
class Attempt:
    raw: str
    errors: list[str]


@dataclass
class StructuredResult:
    """A valid value (``ok``), or why there is none; ``attempts`` keeps every raw answer."""

    value: Any
    attempts: list[Attempt] = field(default_factory=list)
    error: str | None = None
    # True when the model could not be asked (unreachable, server error, settings): callers may retry later.
    unavailable: bool = False
    repaired: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def raw(self) -> str:
        """Every raw answer, for the record (separated when there was a repair)."""
        return "\n--- repair ---\n".join(a.raw for a in self.attempts)


def _check(value: Any, raw: str, schema: dict[str, Any]) -> tuple[Any, list[str]]:
    if value is None:
        try:
            value = parse_lenient(raw)
        except ValueError as exc:
            return None, [str(exc)]
    return value, validate(value, schema)


def _repair_message(errors: list[str]) -> ChatMessage:
    shown = "\n".join(f"- {e}" for e in errors[:MAX_ERRORS_SHOWN])
    return {
        "role": "user",
        "content": (
            "Your answer did not match the required JSON format:\n"
            f"{shown}\n"
            "Answer again with only the corrected JSON object, nothing else."
        ),
    }


async def complete_structured(
    model: ChatModel,
    messages: list[ChatMessage],
    schema: dict[str, Any],
    params: ChatParams | None = None,
) -> StructuredResult:
    """Ask for JSON matching ``schema``; repair once; return a result (never raises for bad output).

    A model that cannot be asked right now (``TRANSIENT_ERRORS``) gives ``unavailable=True``; any other
    ``LLMError`` is a failure like an invalid answer.
    """
    result = StructuredResult(value=None)
    conversation = list(messages)
    for attempt_no in range(2):
        try:
            answer = await model.complete_json(conversation, schema, params)
        except LLMError as exc:
            result.error = f"model error: {exc}"
            result.unavailable = isinstance(exc, TRANSIENT_ERRORS)
            if exc.detail and isinstance(exc, MalformedResponse):
                result.attempts.append(Attempt(raw=exc.detail, errors=[str(exc)]))
            return result
        raw = answer.raw if isinstance(answer.raw, str) else str(answer.raw)
        value, errors = _check(answer.value, raw, schema)
        result.attempts.append(Attempt(raw=raw, errors=errors))
        if not errors:
            result.value = value
            result.repaired = attempt_no > 0
            return result
        conversation = [*conversation, {"role": "assistant", "content": raw}, _repair_message(errors)]
    result.error = "invalid output after one repair: " + "; ".join(result.attempts[-1].errors[:MAX_ERRORS_SHOWN])
    return result
