"""The contract's check (studyapp/contract.py, server/validation.py) gives the same answer and the same message as a
plain reference that runs ``check_field`` on every field, for tens of thousands of random payloads: every kind,
valid and invalid values of every field, missing and unknown fields, with and without ``require_offset``.

The checks the server runs are tuned for speed (fields classed once per kind, the clock read once per batch); this
keeps them to the contract's one definition of each field, ``check_field``.
"""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from studyapp import contract
from studyapp.contract import ContractError, check_field, check_fields, show
from studyapp.events import EVENT_KINDS, REPLACED_FIELD
from studyapp.server.validation import RECORD_KEYS, check_event
from studyapp.server.validation import TIME_FIELDS as DAY_FIELDS

PAYLOADS = 24_000
NOW = datetime.now(UTC)

# -- the reference ------------------------------------------------------------------------------------------------


def reference_check_fields(kind: str, payload: Any, *, require_offset: bool = False) -> dict[str, Any]:
    """The contract as first written: every field through check_field, then the kind-specific choices."""
    if kind not in EVENT_KINDS:
        raise ContractError(f"unknown kind {show(kind)}; known kinds: {', '.join(sorted(EVENT_KINDS))}")
    if not isinstance(payload, dict):
        raise ContractError("payload must be a JSON object")
    _, required, optional = EVENT_KINDS[kind]
    missing = [f for f in required if f not in payload]
    if missing:
        raise ContractError(f"kind '{kind}' is missing required field(s): {', '.join(missing)}")
    unknown = [f for f in payload if f not in required and f not in optional]
    if unknown:
        names = ", ".join(show(f, 40) for f in unknown[:5])
        raise ContractError(f"kind '{kind}' does not allow field(s) {names}; only the contract's fields are stored")
    checked = {name: check_field(name, value, require_offset=require_offset, optional=name not in required)
               for name, value in payload.items()}
    for (choice_kind, name), allowed in contract.KIND_CHOICES.items():
        if choice_kind == kind and checked.get(name) is not None and checked[name] not in allowed:
            raise ContractError(f"field '{name}' of a {kind} must be one of {', '.join(allowed)}; "
                                f"got {show(checked[name])}")
    return checked


def reference_check_event(event_id: str, kind: str, payload: Any) -> tuple[dict[str, Any], str, str | None]:
    checked = reference_check_fields(kind, payload)
    keys = RECORD_KEYS.get(kind)
    record_key = "\x1f".join(str(checked[k]) for k in keys) if keys else event_id
    day = None
    for name in DAY_FIELDS:
        value = checked.get(name)
        if isinstance(value, str) and len(value) >= 10 and value[4] == "-" and value[7] == "-":
            day = value[:10]
            break
    return checked, record_key, day


# -- random payloads ----------------------------------------------------------------------------------------------

LONE_SURROGATE = "x\ud800y"
TEXTS: list[Any] = ["", "hello", "Mag Äpfel 🍎", LONE_SURROGATE, "a\x00b", "tab\there", "x" * 201, "é" * 3,
                    " ", "line\n", "\u2028", "١٢٣"]
IDS: list[Any] = ["c1", "m-" + "0" * 36, "x" * 200, "x" * 201, "", "a\x00b", "m1\nX", "ünï", LONE_SURROGATE, " "]
SCALARS: list[Any] = [None, True, False, 0, 1, 2, -1, 5, 6, 0.0, 0.5, 1.0, 1.5, -0.1, 1e300, 10**30, -(10**30),
                      math.nan, math.inf, -math.inf, 840, -840, 841, -841, 12.5, "1", "true", [], {}, [1], {"a": 1}]
FUTURE = (NOW + timedelta(days=7)).isoformat()
SOON = (NOW + timedelta(hours=3)).isoformat()
TIMES: list[Any] = [
    "2026-11-25T10:00:00+00:00", "2026-11-25T10:00:00", "2026-11-25 10:00:00+05:30", "2026-11-25",
    "2026-11-25T10:00:00.123456-08:00", "2026-11-25T10:00:00Z", "2026-W48-1T10:00:00+00:00",
    "2026-333T10:00:00+00:00", "20261121T100000+0000", "0001-01-01T00:00:00+00:00", "1970-01-01T00:00:00",
    "2000-01-01T00:30:00+01:00", "1999-12-31T23:59:59-00:01", "2000-01-01T00:00:00+00:00", FUTURE, SOON,
    FUTURE.replace("+00:00", ""), "9999-12-31T23:59:59+00:00", "2026-11-25T10:00:00+00:00" + " " * 40,
    "2026-02-30T10:00:00+00:00", "2026-11-25X10:00:00", "2026-11-25\n", "２０２６-11-25T10:00:00+00:00",
    "2026-11-25T10:00:00+14:00", "2026-11-25T10:00:00+24:00", "banana", "", "2026-11-25T25:00:00+00:00",
]
SHA = "ab" * 32
KIND_CHOICE_FIELDS = {name for _, name in contract.KIND_CHOICES}
CHOICE_VALUES = sorted({v for values in contract.CHOICES.values() for v in values}
                       | {v for values in contract.KIND_CHOICES.values() for v in values})


def _pools(name: str) -> list[list[Any]]:
    pools: list[list[Any]] = [SCALARS, TEXTS]
    if name in contract.ID_FIELDS:
        pools += [IDS, IDS, IDS]
    if name in contract.TIME_FIELDS:
        pools += [TIMES, TIMES, TIMES]
    if name in contract.CHOICES or name in KIND_CHOICE_FIELDS:
        pools += [CHOICE_VALUES, CHOICE_VALUES, CHOICE_VALUES]
    if name in contract.SHA256_FIELDS:
        pools.append([SHA, SHA.upper(), SHA[:-1], SHA + "0", SHA + "\n"])
    if name == REPLACED_FIELD:
        pools.append([{"PERSON": 2}, {"PERSON": -1}, {"": 1}, {"x" * 65: 1}, {f"T{i}": 1 for i in range(65)},
                      '{"PERSON": 1}', "{", {"PERSON": True}, {"PERSON": 1.0}])
    if name == "categories":
        pools.append([["ratings"], [], ["ratings", 1], '["ratings"]', "[", "ratings", [LONE_SURROGATE]])
    if name in contract.JSON_FIELDS:
        pools.append([{"note": "x"}, {"note": LONE_SURROGATE}, ["a"], "text", {"n": math.nan}])
    return pools


def _accepted(kind: str, name: str, value: Any) -> bool:
    try:
        check_field(name, value, optional=True)
    except ContractError:
        return False
    allowed = contract.KIND_CHOICES.get((kind, name))
    return allowed is None or value is None or value in allowed


ANY_VALUE = {name: _pools(name) for _, required, optional in EVENT_KINDS.values() for name in (*required, *optional)}
# Values the contract accepts for each field of each kind: mostly these, so that the later fields of a payload are
# reached too.
VALID_VALUE = {(kind, name): [v for pool in ANY_VALUE[name] for v in pool if _accepted(kind, name, v)]
               for kind, (_, required, optional) in EVENT_KINDS.items() for name in (*required, *optional)}


def _value(kind: str, name: str, rng: random.Random) -> Any:
    valid = VALID_VALUE.get((kind, name))
    if valid and rng.random() < 0.85:
        return rng.choice(valid)
    return rng.choice(rng.choice(ANY_VALUE.get(name, [SCALARS, TEXTS])))


def random_case(rng: random.Random) -> tuple[str, Any]:
    roll = rng.random()
    if roll < 0.01:
        return rng.choice(["unknown", "", "Message", LONE_SURROGATE]), {}
    kind = rng.choice(sorted(EVENT_KINDS))
    if roll < 0.02:
        return kind, rng.choice([None, [], "payload", 3])
    _, required, optional = EVENT_KINDS[kind]
    fields = [f for f in required if rng.random() > 0.03] + [f for f in optional if rng.random() < 0.5]
    if rng.random() < 0.03:
        fields.append(rng.choice(["extra", "participant_id", LONE_SURROGATE, "x" * 50]))
    rng.shuffle(fields)
    payload = {name: _value(kind, name, rng) for name in fields}
    return kind, payload


def _outcome(call: Any, *args: Any, **kwargs: Any) -> tuple[str, str]:
    """("ok", the answer's repr: True, 1 and 1.0 differ) or ("refused", the message)."""
    try:
        return "ok", repr(call(*args, **kwargs))
    except ContractError as exc:
        return "refused", str(exc)


def _checked_event(event_id: str, kind: str, payload: Any) -> tuple[dict[str, Any], str, str | None]:
    event = check_event(event_id, kind, payload)
    return event.payload, event.record_key, event.day


# -- the checks ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("require_offset", [False, True])
def test_check_fields_answers_as_the_reference_for_random_payloads(require_offset: bool) -> None:
    rng = random.Random(20261130 + require_offset)
    outcomes = {"ok": 0, "refused": 0}
    for _ in range(PAYLOADS // 2):
        kind, payload = random_case(rng)
        expected = _outcome(reference_check_fields, kind, payload, require_offset=require_offset)
        got = _outcome(check_fields, kind, payload, require_offset=require_offset)
        assert got == expected, (kind, payload)
        outcomes[expected[0]] += 1
    # Both answers are well represented, so the comparison covers accepted and refused payloads alike.
    assert min(outcomes.values()) > PAYLOADS // 10, outcomes


def test_check_event_answers_as_the_reference_for_random_payloads() -> None:
    rng = random.Random(20261131)
    for i in range(PAYLOADS // 2):
        kind, payload = random_case(rng)
        expected = _outcome(reference_check_event, f"e{i}", kind, payload)
        assert _outcome(_checked_event, f"e{i}", kind, payload) == expected, (kind, payload)


def test_the_random_values_reach_every_message_of_the_contract() -> None:
    """The random payloads are worth comparing only if they meet the contract's refusals: most of its distinct
    messages (by their opening words) come up."""
    rng = random.Random(7)
    openings = set()
    for _ in range(PAYLOADS // 2):
        kind, payload = random_case(rng)
        outcome, message = _outcome(reference_check_fields, kind, payload)
        if outcome == "refused":
            openings.add(" ".join(message.split()[:4]))
    assert len(openings) > 150, sorted(openings)
