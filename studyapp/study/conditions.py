"""Randomized conditions: the protocol's ``[conditions]`` table, and the blocked allocation the server runs.

A study may compare two or more ways personalization works (memory on vs off for ordinary turns, another
extractor, a different comparison schedule). Each condition overrides only settings the app already has: the
tables ``comparisons``, ``attribute_review``, ``display``, ``personalization`` and whole role entries of
``models``. The collection server assigns each participant a condition at enrollment, balanced by blocked
randomization (``block_order``: every block of ``block_size`` enrollments holds each condition equally often, in
an order drawn from the study's recorded seed), and sends the participant the study's protocol with their
condition's settings laid over it and without this table (``Protocol.for_condition``), so the app never learns
of the other conditions; it names the participant's own condition only when ``reveal = true``.

Validation follows the protocol's: problems go to the protocol's validator with their path
(``conditions.memory_off.consent``), and each condition's settings are parsed as the study's own tables are,
laid over them, so a condition that would make an unusable protocol is refused by ``studyapp study check``.
"""

from __future__ import annotations

import copy
import random
import re
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

MIN_CONDITIONS = 2
MAX_BLOCK_SIZE = 1000
_SETTINGS = ("reveal", "block_size")
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")


class _Validator(typing.Protocol):
    """What conditions need of the protocol's validator (studyapp.study.protocol, which imports this module)."""

    errors: list[str]

    def error(self, message: str) -> None: ...

    def wrong_type(self, path: str, value: Any, wanted: str) -> None: ...

    def get(self, data: Mapping[str, Any], key: str, path: str, kind: str, *, default: Any = None,
            required: bool = False, check: Callable[[Any], str | None] | None = None) -> Any: ...


@dataclass(frozen=True)
class Condition:
    name: str
    # For the researchers (study check, the export's readers); never sent to participants.
    description: str | None = None
    # Table -> the settings it sets, as the file gives them (models: whole role entries).
    overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def changes(self) -> list[str]:
        """Each setting this condition changes, as ``table.key = value`` (TOML-like), in the file's order."""
        out = []
        for table, values in self.overrides.items():
            for key, value in values.items():
                out.append(f"{table}.{key} = {_show(value)}")
        return out

    def to_dict(self) -> dict[str, Any]:
        return ({"description": self.description} if self.description else {}) | copy.deepcopy(dict(self.overrides))


@dataclass(frozen=True)
class Conditions:
    arms: tuple[Condition, ...]  # by name
    # Enrollments per block: a multiple of the number of conditions.
    block_size: int
    # Whether participants are told their condition (the app may show it); default never.
    reveal: bool = False

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(arm.name for arm in self.arms)

    def get(self, name: str) -> Condition:
        for arm in self.arms:
            if arm.name == name:
                return arm
        raise KeyError(f"no condition {name!r}; the study's conditions are {', '.join(self.names)}")

    def to_dict(self) -> dict[str, Any]:
        return {"reveal": self.reveal, "block_size": self.block_size} | {arm.name: arm.to_dict() for arm in self.arms}

    def summary(self) -> list[str]:
        told = "told to participants" if self.reveal else "never told to participants"
        lines = [f"  conditions: {len(self.arms)} ({', '.join(self.names)}), assigned at enrollment in blocks of "
                 f"{self.block_size}; {told}"]
        for arm in self.arms:
            changes = "; ".join(arm.changes()) or "the study's settings as they are"
            lines.append(f"    {arm.name}: {changes}" + (f" ({arm.description})" if arm.description else ""))
        return lines


def check_condition_name(value: str) -> str | None:
    if _NAME.match(value):
        return None
    return ("is not a valid condition name: use 1-64 letters, digits, '_' or '-', starting with a letter "
            "(it is a column value in every export file)")


def apply_overrides(data: Mapping[str, Any], overrides: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """A copy of a protocol's tables (``data``) with a condition's settings laid over them, key by key."""
    out = copy.deepcopy(dict(data))
    for table, values in overrides.items():
        base = out.get(table)
        out[table] = (dict(base) if isinstance(base, dict) else {}) | copy.deepcopy(dict(values))
    return out


def conditions_from(data: Mapping[str, Any], v: _Validator, *,
                    tables: Mapping[str, Callable[[Any, str, _Validator], Any]]) -> Conditions | None:
    """The protocol's ``[conditions]`` (None when absent); problems go to ``v``. ``tables`` parses each table a
    condition may change, given the study's table with the condition's settings laid over it and its path."""
    if "conditions" not in data:
        return None
    table = data["conditions"]
    if not isinstance(table, dict):
        v.wrong_type("conditions", table, "a table ([conditions], with one [conditions.NAME] table per condition)")
        return None
    reveal = v.get(table, "reveal", "conditions", "boolean", default=False)
    entries = {name: entry for name, entry in table.items() if name not in _SETTINGS}
    arms: list[Condition] = []
    for name, entry in entries.items():
        path = f"conditions.{name}"
        problem = check_condition_name(name)
        if problem:
            v.error(f"[{path}] {problem}")
            continue
        if not isinstance(entry, dict):
            v.wrong_type(path, entry, f"a table ([{path}]) of the settings this condition changes")
            continue
        arm = _condition(name, entry, path, data, v, tables)
        if arm is not None:
            arms.append(arm)
    if len(entries) < MIN_CONDITIONS:
        v.error(f"[conditions] defines {len(entries)} condition{'' if len(entries) == 1 else 's'}: a study with "
                f"conditions needs at least {MIN_CONDITIONS} ([conditions.NAME] tables, e.g. memory_on and "
                "memory_off); remove [conditions] for a study without them")
        return None
    n = len(entries)
    block_size = v.get(table, "block_size", "conditions", "integer", default=2 * n,
                       check=lambda b: None if n <= b <= MAX_BLOCK_SIZE and b % n == 0 else
                       f"is not a block size for {n} conditions: it must be a multiple of {n} (each block holds "
                       f"every condition equally often), from {n} to {MAX_BLOCK_SIZE}")
    if len(arms) < n or block_size is None:
        return None
    # By name: a protocol travels as JSON with sorted keys, and the allocation must see the same order everywhere.
    return Conditions(arms=tuple(sorted(arms, key=lambda arm: arm.name)), block_size=block_size, reveal=reveal)


def _condition(name: str, entry: Mapping[str, Any], path: str, data: Mapping[str, Any], v: _Validator,
               tables: Mapping[str, Callable[[Any, str, _Validator], Any]]) -> Condition | None:
    before = len(v.errors)
    description = v.get(entry, "description", path, "string")
    overrides: dict[str, dict[str, Any]] = {}
    allowed = ", ".join(tables)
    for key, value in entry.items():
        if key == "description":
            continue
        where = f"{path}.{key}"
        if key not in tables:
            v.error(f"{where} is not a setting a condition may change: a condition has a description and may "
                    f"override only the tables {allowed} (the settings the app already has)")
            continue
        if not isinstance(value, dict):
            v.wrong_type(where, value, f"a table ([{where}]) of the {key} settings this condition changes")
            continue
        base = data.get(key)
        # Parsed as the study's own table with this condition's settings laid over it: the app runs exactly that.
        tables[key]((dict(base) if isinstance(base, dict) else {}) | value, where, v)
        overrides[key] = copy.deepcopy(value)
    if len(v.errors) > before:
        return None
    return Condition(name=name, description=description, overrides=overrides)


def allocation_scheme(protocol: Mapping[str, Any]) -> tuple[tuple[str, ...], int] | None:
    """(condition names, block size) of a published protocol (``Protocol.to_dict()``, validated when it was
    published), or None without conditions. Reads only the [conditions] table: an enrollment needs nothing else
    of the protocol, whatever the rest of it holds."""
    table = protocol.get("conditions")
    if not isinstance(table, dict):
        return None
    names = tuple(sorted(name for name, entry in table.items() if name not in _SETTINGS and isinstance(entry, dict)))
    block_size = table.get("block_size", 2 * len(names))
    if len(names) < MIN_CONDITIONS or not isinstance(block_size, int) or block_size % len(names):
        return None
    return names, block_size


def block_order(seed: int, block: int, names: Sequence[str], block_size: int) -> list[str]:
    """The conditions of enrollment block ``block`` (1, 2, ...) in their drawn order: each of ``names`` appears
    ``block_size / len(names)`` times. The same seed, block and names always give the same order, so an
    allocation can be audited and reproduced from the seed the server recorded."""
    slots = [names[i % len(names)] for i in range(block_size)]
    # A str seed is hashed (SHA-512) the same way on every platform, and random() keeps its sequence across Python
    # versions; shuffle() does not promise that, so the Fisher-Yates steps are written out on random().
    rng = random.Random(f"studyapp-conditions:{seed}:{block}")
    for i in range(len(slots) - 1, 0, -1):
        j = int(rng.random() * (i + 1))
        slots[i], slots[j] = slots[j], slots[i]
    return slots


def _show(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_show(x)}" for k, x in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_show(x) for x in value) + "]"
    return str(value)
