"""The study's own questions: the protocol's ``[[questions]]`` array, parsed into typed, frozen objects.

Beyond which of two answers is better, researchers ask participants directly (did an answer feel written for
them, did it assume something wrong, how well the assistant kept up this week). Each question says what it asks
(``type``: likert, choice, yes_no, text) and when (``when``: after a comparison, after a turn with a probability
and a daily cap, daily or weekly at a local time, or at the end of the study). Every question may be skipped.

Only the protocol part lives here; asking, records and export build on these objects. Validation follows the
protocol's: ``questions_from`` reports every problem, with its path (``questions[2].points``), to the protocol's
validator, which collects them for ``studyapp study check``.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from studyapp.events import QUESTION_TYPES, QUESTION_WHEN

# Shared with the records' contract (studyapp.events), which the server checks too.
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
LIKERT_POINTS = (2, 11)
CHOICE_OPTIONS = (2, 12)
TEXT_MAX_LENGTH = (1, 2000)
DEFAULT_TEXT_MAX_LENGTH = 500
DEFAULT_VERSION = "1"

_COMMON_KEYS = ("id", "version", "text", "type", "when")
# The keys each type and each `when` adds; a key of another type or timing is an error, as unknown keys are.
_TYPE_KEYS: dict[str, tuple[str, ...]] = {
    "likert": ("points", "labels"),
    "choice": ("options",),
    "yes_no": (),
    "text": ("max_length",),
}
_WHEN_KEYS: dict[str, tuple[str, ...]] = {
    "after_comparison": (),
    "after_turn": ("probability", "daily_cap"),
    "daily": ("at",),
    "weekly": ("at", "weekday"),
    "at_end": (),
}
_QUESTION_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_CLOCK = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")


class _Validator(typing.Protocol):
    """What the questions need of the protocol's validator (studyapp.study.protocol, which imports this module)."""

    errors: list[str]

    def error(self, message: str) -> None: ...

    def wrong_type(self, path: str, value: Any, wanted: str) -> None: ...

    def unknown_keys(self, data: Mapping[str, Any], allowed: tuple[str, ...], path: str) -> None: ...

    def get(self, data: Mapping[str, Any], key: str, path: str, kind: str, *, default: Any = None,
            required: bool = False, check: Callable[[Any], str | None] | None = None) -> Any: ...


@dataclass(frozen=True)
class Question:
    """One question; the fields a type or timing does not use stay None (or empty)."""

    id: str
    # Raised when the wording changes, so answers to different wordings stay apart.
    version: str
    text: str
    type: str
    when: str
    # likert: the scale's points and its labels (two end labels, or one per point).
    points: int | None = None
    labels: tuple[str, ...] = ()
    # choice: what the participant picks from.
    options: tuple[str, ...] = ()
    # text: the longest answer accepted, in characters.
    max_length: int | None = None
    # after_turn: the chance a turn brings the question, and how often a day at most.
    probability: float | None = None
    daily_cap: int | None = None
    # daily and weekly: the participant's local time "HH:MM"; weekly also the day.
    at: str | None = None
    weekday: str | None = None

    def describe(self) -> str:
        """E.g. "felt_understood (choice, 4 options)", for ``studyapp study check``."""
        kind = {
            "likert": f"likert, {self.points} points",
            "choice": f"choice, {len(self.options)} options",
            "yes_no": "yes/no",
            "text": f"text, at most {self.max_length} characters",
        }[self.type]
        timing = {
            "after_turn": f"; probability {self.probability}, at most {self.daily_cap} a day",
            "daily": f"; at {self.at}",
            "weekly": f"; {self.weekday} at {self.at}",
        }.get(self.when, "")
        return f"{self.id} v{self.version} ({kind}{timing}): {self.text!r}"

    def to_dict(self) -> dict[str, Any]:
        """The question as the file gives it: only the keys of its type and timing."""
        data: dict[str, Any] = {"id": self.id, "version": self.version, "text": self.text, "type": self.type,
                                "when": self.when}
        if self.type == "likert":
            data |= {"points": self.points, "labels": list(self.labels)}
        elif self.type == "choice":
            data["options"] = list(self.options)
        elif self.type == "text":
            data["max_length"] = self.max_length
        if self.when == "after_turn":
            data |= {"probability": self.probability, "daily_cap": self.daily_cap}
        elif self.when in ("daily", "weekly"):
            data["at"] = self.at
            if self.when == "weekly":
                data["weekday"] = self.weekday
        return data


def _one_of(allowed: tuple[str, ...], noun: str) -> Any:
    return lambda x: None if x in allowed else f"is not {noun}: it must be one of {', '.join(allowed)}"


def _check_question_id(value: str) -> str | None:
    if _QUESTION_ID.match(value):
        return None
    return "is not a valid question id: use 1-64 letters, digits, '_', '-' or '.'"


def _check_clock(value: str) -> str | None:
    return None if _CLOCK.match(value) else "is not a time of day: write it as \"HH:MM\" (24-hour, e.g. \"19:00\")"


def _check_options(options: list[str]) -> str | None:
    low, high = CHOICE_OPTIONS
    if not low <= len(options) <= high:
        return f"has {len(options)} options: a choice question needs {low} to {high}"
    if not all(o.strip() for o in options):
        return "has an empty option: every option needs its text"
    seen = [o.strip().casefold() for o in options]
    repeated = sorted({o for o in options if seen.count(o.strip().casefold()) > 1})
    if repeated:
        return f"repeats {', '.join(map(repr, repeated))}: every option must be different"
    return None


def _likert_labels(points: int | None) -> Any:
    def check(labels: list[str]) -> str | None:
        # Without valid points the count cannot be judged: the points' error is enough.
        if points is not None and len(labels) not in (2, points):
            return f"has {len(labels)} labels: give the two end labels (lowest, highest) or one label per point " \
                   f"({points})"
        if not all(label.strip() for label in labels):
            return "has an empty label: every label needs its text"
        return None

    return check


def questions_from(data: Mapping[str, Any], v: _Validator) -> tuple[Question, ...]:
    """The protocol's ``[[questions]]`` (none when the key is absent); problems go to ``v``."""
    if "questions" not in data:
        return ()
    entries = data["questions"]
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        v.wrong_type("questions", entries, "an array of tables ([[questions]], one per question)")
        return ()
    questions: list[Question] = []
    seen: dict[str, int] = {}
    for i, entry in enumerate(entries, start=1):
        question = _question(entry, f"questions[{i}]", v)
        if question is None:
            continue
        if question.id in seen:
            v.error(f"questions[{i}].id = {question.id!r} repeats questions[{seen[question.id]}].id: "
                    "every question needs its own id (raise version when you reword one)")
            continue
        seen[question.id] = i
        questions.append(question)
    return tuple(questions)


def _question(entry: Mapping[str, Any], path: str, v: _Validator) -> Question | None:
    before = len(v.errors)
    qtype = v.get(entry, "type", path, "string", required=True,
                  check=_one_of(QUESTION_TYPES, "a question type"))
    when = v.get(entry, "when", path, "string", required=True, check=_one_of(QUESTION_WHEN, "a time to ask"))
    _check_keys(entry, path, qtype, when, v)
    qid = v.get(entry, "id", path, "string", required=True, check=_check_question_id)
    version = v.get(entry, "version", path, "string", default=DEFAULT_VERSION)
    text = v.get(entry, "text", path, "string", required=True)

    details: dict[str, Any] = {}
    if qtype == "likert":
        low, high = LIKERT_POINTS
        points = v.get(entry, "points", path, "integer", required=True,
                       check=lambda p: None if low <= p <= high else
                       f"is out of range: it must be an integer from {low} to {high}")
        labels = v.get(entry, "labels", path, "strings", required=True, check=_likert_labels(points))
        details |= {"points": points, "labels": tuple(labels or ())}
    elif qtype == "choice":
        options = v.get(entry, "options", path, "strings", required=True, check=_check_options)
        details["options"] = tuple(options or ())
    elif qtype == "text":
        low, high = TEXT_MAX_LENGTH
        details["max_length"] = v.get(entry, "max_length", path, "integer", default=DEFAULT_TEXT_MAX_LENGTH,
                                       check=lambda n: None if low <= n <= high else
                                       f"is out of range: it must be an integer from {low} to {high}")
    if when == "after_turn":
        probability = v.get(entry, "probability", path, "number", required=True,
                            check=lambda p: None if 0 < p <= 1 else
                            "is out of range: it must be more than 0 and at most 1")
        details |= {
            "probability": float(probability) if probability is not None else None,
            "daily_cap": v.get(entry, "daily_cap", path, "integer", required=True,
                               check=lambda n: None if n >= 1 else "is out of range: it must be at least 1"),
        }
    elif when in ("daily", "weekly"):
        details["at"] = v.get(entry, "at", path, "string", required=True, check=_check_clock)
        if when == "weekly":
            details["weekday"] = v.get(entry, "weekday", path, "string", required=True,
                                       check=_one_of(WEEKDAYS, "a day of the week"))
    if len(v.errors) > before:
        return None
    return Question(id=qid, version=version, text=text, type=qtype, when=when, **details)


def _check_keys(entry: Mapping[str, Any], path: str, qtype: str | None, when: str | None, v: _Validator) -> None:
    """Unknown keys, and keys of another type or timing: each one an error saying where it belongs."""
    # With an unknown type (or when) its own keys cannot be judged: the type's error is enough.
    type_keys = _TYPE_KEYS.get(qtype or "", sum(_TYPE_KEYS.values(), ()))
    when_keys = _WHEN_KEYS.get(when or "", sum(_WHEN_KEYS.values(), ()))
    allowed = tuple(dict.fromkeys(_COMMON_KEYS + type_keys + when_keys))
    for key, value in entry.items():
        if key in allowed:
            continue
        by_type = [f"{t!r}" for t, keys in _TYPE_KEYS.items() if key in keys]
        by_when = [f"{w!r}" for w, keys in _WHEN_KEYS.items() if key in keys]
        if by_type or by_when:
            setting, here, owners = ("type", qtype, by_type) if by_type else ("when", when, by_when)
            v.error(f"{path}.{key} does not belong to a question with {setting} = {here!r}: {key} is only for "
                    f"{setting} = {' or '.join(owners)}; remove it, or change the question's {setting}")
        else:
            v.unknown_keys({key: value}, allowed, path)
