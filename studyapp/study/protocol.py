"""The study protocol: a researcher-authored TOML file, parsed into typed, frozen objects.

The file is the contract between a study's researchers and every participant install (docs/ARCHITECTURE.md
section 7). It is validated completely on load: every problem is collected (not only the first) and each
message names the key, the value found and what is allowed, so a researcher can fix the file in one pass.

Layout (see examples/study.toml for a complete, commented file)::

    [study]            id, title, version, duration_days, server_url (optional)
    [[consent]]        version, title, and text = "..." or file = "relative/path.md"; the last one is current
    [categories.NAME]  required, description        NAME from studyapp.events.CATEGORIES
    [privacy]          review_uploads, require_ner
    [comparisons]      min_turns_between, daily_cap, probability, min_attributes, seed (optional)
    [rating_scale]     points (5), labels (5 strings, Response 1 much better .. Response 2 much better)
    [attribute_review] every_new_attributes, batch_size, max_per_day
    [display]          show_memory_use (optional, default true)
    [[questions]]      id, version (optional, "1"), text, type (likert, choice, yes_no, text), when
                       (after_comparison, after_turn, daily, weekly, at_end), and the keys of its type and
                       when (optional; see studyapp/study/questions.py)
    [models.ROLE]      model ("local" or a model name), base_url, via ("direct", the default, or "study");
                       ROLE is assistant, extractor, selector, judge; the judge may be an array of tables
                       ([[models.judge]]) for several judges
    [personalization]  memory ("on", the default, or "off": ordinary replies without the participant's attributes)
    [conditions]       reveal, block_size (optional), and [conditions.NAME] tables (two or more), each with a
                       description and the settings of comparisons, attribute_review, display, personalization
                       and models it changes (see studyapp/study/conditions.py)

A role with ``via = "study"`` names a model the researchers provide through the study's collection server
(its model gateway, ``{server}/llm/v1``): the app authenticates with the participant's token, so participants
need no API key. Such a role gives no base_url and is never "local"; the server is the one the participant
enrolled with (where the token is valid), else ``[study] server_url``.

``Protocol.to_dict()`` gives the same shape with consent texts inline (plus their sha256), and
``protocol_from_dict`` validates such a dict again: this is how a protocol travels from the collection
server to a participant's install and into the ``studies`` table.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from studyapp.events import CATEGORIES
from studyapp.study.conditions import Conditions, apply_overrides, check_condition_name, conditions_from
from studyapp.study.questions import QUESTION_WHEN, Question, questions_from

LOCAL = "local"
ROLES = ("assistant", "extractor", "selector", "judge")
# How a role's model is reached: "direct" (its own base_url, or the embedded model) or "study" (through the
# study's collection server, which holds the researchers' model and key).
DIRECT, VIA_STUDY = "direct", "study"
ROUTES = (DIRECT, VIA_STUDY)
RATING_POINTS = 5
# A consent document is text a participant reads; the limit keeps the published protocol well under the size the
# app accepts from the server (studyapp.sync.server_client.MAX_ANSWER_BYTES).
MAX_CONSENT_BYTES = 256 * 1024
# The most a protocol may take as the server publishes it (its TOML text and Protocol.to_dict(), in JSON with
# non-ASCII characters escaped, up to 6 bytes each): the enrollment answer that carries it must stay under what
# the app reads of an answer (MAX_ANSWER_BYTES, 1 MiB), with room for the answer's other fields.
MAX_PUBLISHED_BYTES = 2**20 - 64 * 1024
DEFAULT_LABELS = (
    "Response 1 much better",
    "Response 1 somewhat better",
    "About the same",
    "Response 2 somewhat better",
    "Response 2 much better",
)
DEFAULT_CATEGORY_DESCRIPTIONS = {
    "ratings": "Your ratings of side-by-side answers, with the answers you rated.",
    "attribute_labels": "Your labels on what the assistant believes about you (makes sense / maybe / doesn't).",
    "relevance_labels": "Your yes/no answers on whether an attribute should have shaped an answer.",
    "attributes": "The attributes the assistant inferred about you (anonymized).",
    "conversation_text": "The text of your conversations (anonymized on your machine).",
    "selections": "For each of your messages, which of the attributes the assistant judged relevant, and why.",
    "question_answers": "Your answers to the study's own questions (free-text answers anonymized on your machine).",
}
_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}


class ProtocolError(ValueError):
    """The protocol cannot be used. ``errors`` lists every problem found, each one line."""

    def __init__(self, source: str, errors: list[str]) -> None:
        self.source = source
        self.errors = list(errors)
        noun = "problem" if len(errors) == 1 else "problems"
        lines = "\n".join(f"  - {e}" for e in errors)
        super().__init__(f"{source}: {len(errors)} {noun} in the study protocol:\n{lines}")


@dataclass(frozen=True)
class ConsentDocument:
    version: str
    title: str
    text: str

    @property
    def sha256(self) -> str:
        """Hash of the exact text shown to the participant (recorded with every consent event)."""
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class CategorySpec:
    name: str
    required: bool
    description: str


@dataclass(frozen=True)
class ComparisonSchedule:
    min_turns_between: int
    daily_cap: int
    probability: float
    min_attributes: int
    seed: int | None = None


@dataclass(frozen=True)
class RatingScale:
    points: int = RATING_POINTS
    labels: tuple[str, ...] = DEFAULT_LABELS


# The protocol file keeps the key [attribute_review], so protocols written for earlier versions stay valid.
@dataclass(frozen=True)
class LabelingCadence:
    # Ask for labels once this many extracted attributes are still unlabeled ...
    every_new_attributes: int = 3
    # ... this many at a time ...
    batch_size: int = 3
    # ... and at most this many attributes per study day.
    max_per_day: int = 9


@dataclass(frozen=True)
class DisplayOptions:
    # Name the attributes under a reply built with them ("Shaped by your memory: ..."). A study may hide
    # the line, e.g. so that seeing it does not sway how participants judge the answers.
    show_memory_use: bool = True


MEMORY_SETTINGS = ("on", "off")


@dataclass(frozen=True)
class Personalization:
    # "off": ordinary turns are answered without the participant's attributes, as in a memory-off conversation,
    # while attributes are still extracted and comparisons still run (a condition's "memory off" arm).
    memory: str = "on"

    @property
    def memory_in_replies(self) -> bool:
        return self.memory == "on"


@dataclass(frozen=True)
class ModelSpec:
    model: str
    base_url: str | None = None
    via: str = DIRECT

    @property
    def is_local(self) -> bool:
        return self.model == LOCAL

    @property
    def via_study(self) -> bool:
        """The researchers provide this model through the study's server (no API key on the participant's side)."""
        return self.via == VIA_STUDY

    def describe(self) -> str:
        """E.g. "gpt-4o-mini via the study's server", "local", "llama3 at http://127.0.0.1:8080/v1"."""
        if self.via_study:
            return f"{self.model} via the study's server"
        return f"{self.model} at {self.base_url}" if self.base_url else self.model

    def to_dict(self) -> dict[str, Any]:
        # "via" only when it is not the default: a protocol without it publishes exactly as before.
        return ({"model": self.model} | ({"base_url": self.base_url} if self.base_url else {})
                | ({"via": self.via} if self.via != DIRECT else {}))


@dataclass(frozen=True)
class Protocol:
    id: str
    title: str
    version: str
    duration_days: int
    consent: list[ConsentDocument]
    categories: dict[str, CategorySpec]
    review_uploads: bool
    comparisons: ComparisonSchedule
    rating_scale: RatingScale
    attribute_review: LabelingCadence
    # Roles assistant, extractor, selector, judge; further judges are "judge.2", "judge.3", ...
    models: dict[str, ModelSpec]
    server_url: str | None
    require_ner: bool
    display: DisplayOptions = field(default_factory=DisplayOptions)
    # The study's own questions to participants, in the file's order (empty: none).
    questions: tuple[Question, ...] = ()
    personalization: Personalization = field(default_factory=Personalization)
    # The randomized conditions ([conditions]); None in a study without them and in every participant's protocol.
    conditions: Conditions | None = None
    # In a participant's protocol: their own condition's name, only when the study reveals it (reveal = true).
    condition: str | None = None
    raw_text: str = field(default="", repr=False, compare=False)

    @property
    def current_consent(self) -> ConsentDocument:
        """The consent document participants are asked to agree to now: the last one listed."""
        return self.consent[-1]

    @property
    def judges(self) -> list[ModelSpec]:
        """Every judge model, in the order the file lists them (empty: no judging)."""
        return [spec for role, spec in self.models.items() if role == "judge" or role.startswith("judge.")]

    @property
    def required_categories(self) -> list[str]:
        return [name for name, spec in self.categories.items() if spec.required]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, in the file's own shape (consent texts inline), so ``protocol_from_dict`` reads it back."""
        study: dict[str, Any] = {
            "id": self.id,
            "title": self.title,
            "version": self.version,
            "duration_days": self.duration_days,
        }
        if self.server_url:
            study["server_url"] = self.server_url
        comparisons: dict[str, Any] = {
            "min_turns_between": self.comparisons.min_turns_between,
            "daily_cap": self.comparisons.daily_cap,
            "probability": self.comparisons.probability,
            "min_attributes": self.comparisons.min_attributes,
        }
        if self.comparisons.seed is not None:
            comparisons["seed"] = self.comparisons.seed
        models: dict[str, Any] = {
            role: spec.to_dict() for role, spec in self.models.items() if role in ROLES and role != "judge"
        }
        models["judge"] = [spec.to_dict() for spec in self.judges]
        protocol: dict[str, Any] = {
            "study": study,
            "consent": [
                {"version": c.version, "title": c.title, "text": c.text, "sha256": c.sha256} for c in self.consent
            ],
            "categories": {
                name: {"required": spec.required, "description": spec.description}
                for name, spec in self.categories.items()
            },
            "privacy": {"review_uploads": self.review_uploads, "require_ner": self.require_ner},
            "comparisons": comparisons,
            "rating_scale": {"points": self.rating_scale.points, "labels": list(self.rating_scale.labels)},
            "attribute_review": {
                "every_new_attributes": self.attribute_review.every_new_attributes,
                "batch_size": self.attribute_review.batch_size,
                "max_per_day": self.attribute_review.max_per_day,
            },
            "display": {"show_memory_use": self.display.show_memory_use},
            "models": models,
        }
        # Only when there are questions: a protocol without them publishes exactly as before.
        if self.questions:
            protocol["questions"] = [q.to_dict() for q in self.questions]
        # Each only when it is used, likewise.
        if self.personalization != Personalization():
            protocol["personalization"] = {"memory": self.personalization.memory}
        if self.conditions is not None:
            protocol["conditions"] = self.conditions.to_dict()
        if self.condition is not None:
            protocol["condition"] = self.condition
        return protocol

    def for_condition(self, name: str) -> Protocol:
        """The protocol a participant in condition ``name`` runs: the condition's settings laid over the study's,
        without the [conditions] table (the app never learns of the other conditions), naming the condition
        only when the study reveals it."""
        if self.conditions is None:
            raise KeyError(f"study {self.id!r} has no conditions")
        arm = self.conditions.get(name)
        data = {key: value for key, value in self.to_dict().items() if key != "conditions"}
        data = apply_overrides(data, arm.overrides)
        if self.conditions.reveal:
            data["condition"] = name
        return protocol_from_dict(data, source=f"study {self.id!r}, condition {name!r}")

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, sort_keys=True)

    def summary(self) -> str:
        """A few lines for ``studyapp study check`` and for the participant's status views."""
        c = self.comparisons
        r = self.attribute_review
        cats = ", ".join(f"{n}{' (required)' if s.required else ''}" for n, s in self.categories.items())
        models = ", ".join(f"{role}={spec.model}" + (" (via the study's server)" if spec.via_study else "")
                           for role, spec in self.models.items())
        lines = [
            f"Study {self.id!r} version {self.version}: {self.title}",
            f"  duration: {self.duration_days} days; server: {self.server_url or '(none: local only)'}",
            f"  consent: version {self.current_consent.version} ({self.current_consent.title!r}, "
            f"sha256 {self.current_consent.sha256[:12]}...); {len(self.consent)} document(s)",
            f"  categories: {cats}",
            f"  privacy: review uploads {'yes' if self.review_uploads else 'no'}, "
            f"require NER {'yes' if self.require_ner else 'no'}",
            f"  comparisons: at least {c.min_turns_between} turns apart, at most {c.daily_cap} a day, "
            f"probability {c.probability}, needs {c.min_attributes} attributes"
            + (f", seed {c.seed}" if c.seed is not None else ""),
            f"  rating scale: {self.rating_scale.points} points: {' | '.join(self.rating_scale.labels)}",
            f"  attribute labels: after {r.every_new_attributes} new, {r.batch_size} at a time, "
            f"at most {r.max_per_day} a day",
            f"  display: 'Shaped by your memory' under replies {'shown' if self.display.show_memory_use else 'hidden'}",
            f"  models: {models}",
        ]
        if not self.personalization.memory_in_replies:
            lines.append("  personalization: memory off (ordinary replies without the participant's attributes)")
        if self.conditions is not None:
            lines += self.conditions.summary()
        if self.condition is not None:
            lines.append(f"  condition: {self.condition}")
        if self.questions:
            counts = ", ".join(f"{when} {n}" for when in QUESTION_WHEN
                               if (n := sum(q.when == when for q in self.questions)))
            lines.append(f"  questions: {len(self.questions)} ({counts})")
            lines += [f"    {q.when}: {q.describe()}" for q in self.questions]
        if any(spec.via_study for spec in self.models.values()):
            server = self.server_url or "the server participants enroll with"
            lines.append(f"  model gateway: {server}/llm/v1 (`studyapp-server models add NAME ...` must serve "
                         f"{', '.join(sorted({s.model for s in self.models.values() if s.via_study}))})")
        return "\n".join(lines)


# Validation ---------------------------------------------------------------------------------------


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _a(noun: str) -> str:
    return f"an {noun}" if noun[0] in "aeiou" else f"a {noun}"


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "table"
    return type(value).__name__


class _Validator:
    """Walks the parsed TOML and collects every error instead of stopping at the first."""

    def __init__(self, base_dir: Path | None, *, files: bool = True) -> None:
        self.base_dir = base_dir
        # False for a protocol that arrived as data (from the study server, or stored from it): such a protocol
        # carries its texts inline, and a path in it would name a file on the participant's machine.
        self.files = files
        self.errors: list[str] = []

    def error(self, message: str) -> None:
        self.errors.append(message)

    def table(self, data: Mapping[str, Any], key: str, path: str, *, required: bool) -> dict[str, Any] | None:
        if key not in data:
            if required:
                self.error(f"[{path}] is missing: add a [{path}] table")
            return None
        value = data[key]
        if not isinstance(value, dict):
            self.error(f"{path} = {_show(value)} is {_a(_type_name(value))}: it must be a table ([{path}])")
            return None
        return value

    def wrong_type(self, path: str, value: Any, wanted: str) -> None:
        self.error(f"{path} = {_show(value)} is {_a(_type_name(value))}: it must be {wanted}")

    def unknown_keys(self, data: Mapping[str, Any], allowed: tuple[str, ...], path: str) -> None:
        for key in data:
            if key in allowed:
                continue
            where = f"{path}.{key}" if path else key
            hint = difflib.get_close_matches(key, allowed, n=1)
            suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
            self.error(f"{where} is not a known key{suggestion}; allowed here: {', '.join(allowed)}")

    def get(
        self,
        data: Mapping[str, Any],
        key: str,
        path: str,
        kind: str,
        *,
        default: Any = None,
        required: bool = False,
        check: Callable[[Any], str | None] | None = None,
    ) -> Any:
        """One value of kind 'string', 'integer', 'number', 'boolean' or 'strings'; a range check may follow."""
        where = f"{path}.{key}"
        if key not in data:
            if required:
                self.error(f"{where} is missing: add {key} = <{kind}>")
            return default
        value = data[key]
        ok = {
            "string": isinstance(value, str),
            "integer": isinstance(value, int) and not isinstance(value, bool),
            "number": isinstance(value, int | float) and not isinstance(value, bool),
            "boolean": isinstance(value, bool),
            "strings": isinstance(value, list) and all(isinstance(v, str) for v in value),
        }[kind]
        if not ok:
            wanted = "an array of strings" if kind == "strings" else _a(kind)
            self.error(f"{where} = {_show(value)} is {_a(_type_name(value))}: it must be {wanted}")
            return default
        if kind == "string" and not value.strip():
            self.error(f"{where} is empty: it must be a non-empty string")
            return default
        if check is not None:
            problem = check(value)
            if problem:
                self.error(f"{where} = {_show(value)} {problem}")
                return default
        return value


def _at_least(minimum: int) -> Callable[[Any], str | None]:
    return lambda v: None if v >= minimum else f"is out of range: it must be at least {minimum}"


def _between(low: float, high: float) -> Callable[[Any], str | None]:
    return lambda v: None if low <= v <= high else f"is out of range: it must be between {low} and {high}"


def _check_url(value: str) -> str | None:
    parsed = urlparse(value)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        return "is not a URL: it must look like https://host/path"
    # Participants' data must never cross a network in clear text.
    if parsed.scheme == "http" and parsed.hostname not in _LOCAL_HOSTS:
        return "uses plain http: it must use https (http is allowed only for localhost / 127.0.0.1)"
    return None


def _check_model_url(value: str) -> str | None:
    parsed = urlparse(value)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        return "is not a URL: it must look like http://127.0.0.1:8080/v1 or https://api.example.org/v1"
    return None


def _check_id(value: str) -> str | None:
    if _ID_PATTERN.match(value):
        return None
    return "is not a valid study id: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"


def _validate(data: Mapping[str, Any], v: _Validator, raw_text: str) -> Protocol | None:
    v.unknown_keys(
        data,
        ("study", "consent", "categories", "privacy", "comparisons", "rating_scale", "attribute_review", "display",
         "models", "questions", "personalization", "conditions", "condition"),
        "",
    )

    # [study]
    study = v.table(data, "study", "study", required=True) or {}
    if study:
        v.unknown_keys(study, ("id", "title", "version", "duration_days", "server_url"), "study")
    # A missing [study] is one error, not one per key.
    required = isinstance(data.get("study"), dict)
    study_id = v.get(study, "id", "study", "string", required=required, check=_check_id)
    title = v.get(study, "title", "study", "string", required=required)
    version = v.get(study, "version", "study", "string", required=required)
    duration = v.get(study, "duration_days", "study", "integer", required=required, check=_between(1, 3650))
    server_url = v.get(study, "server_url", "study", "string", check=_check_url)

    consent = _consent(data, v)
    categories = _categories(data, v)

    # [privacy]
    privacy = v.table(data, "privacy", "privacy", required=False) or {}
    v.unknown_keys(privacy, ("review_uploads", "require_ner"), "privacy")
    review_uploads = v.get(privacy, "review_uploads", "privacy", "boolean", default=False)
    require_ner = v.get(privacy, "require_ner", "privacy", "boolean", default=False)

    # [comparisons]: required, because how often participants are asked is the heart of the design.
    schedule = _schedule(data.get("comparisons"), "comparisons", v, required=True)

    # [rating_scale]
    scale = v.table(data, "rating_scale", "rating_scale", required=False) or {}
    v.unknown_keys(scale, ("points", "labels"), "rating_scale")
    points = v.get(
        scale, "points", "rating_scale", "integer", default=RATING_POINTS,
        check=lambda p: None if p == RATING_POINTS else
        f"is not supported: it must be {RATING_POINTS} (the export contract's 5-point comparative scale)",
    )
    labels = v.get(
        scale, "labels", "rating_scale", "strings", default=list(DEFAULT_LABELS),
        check=lambda ls: None if len(ls) == RATING_POINTS and all(s.strip() for s in ls) else
        f"has {len(ls)} labels: it must list {RATING_POINTS} non-empty labels, from "
        f"'Response 1 much better' to 'Response 2 much better'",
    )
    rating_scale = RatingScale(points=points, labels=tuple(labels))

    attribute_review = _cadence(data.get("attribute_review"), "attribute_review", v)
    display = _display(data.get("display"), "display", v)
    personalization = _personalization(data.get("personalization"), "personalization", v)
    models = _models(data.get("models"), "models", v)
    questions = questions_from(data, v)
    if questions and "question_answers" not in categories and "categories" in data:
        # The answers are collected only under their own consent category: without it nobody could be asked.
        v.error(f"[[questions]] asks {len(questions)} question(s), but [categories] does not list "
                "question_answers: add [categories.question_answers] (with a description; required = true if "
                "taking part means answering them), or remove the questions")
    conditions = conditions_from(data, v, tables=_CONDITION_TABLES)
    condition = _own_condition(data, v)

    if v.errors:
        return None
    return Protocol(
        id=study_id,
        title=title,
        version=version,
        duration_days=duration,
        consent=consent,
        categories=categories,
        review_uploads=review_uploads,
        comparisons=schedule,
        rating_scale=rating_scale,
        attribute_review=attribute_review,
        models=models,
        server_url=server_url,
        require_ner=require_ner,
        display=display,
        questions=questions,
        personalization=personalization,
        conditions=conditions,
        condition=condition,
        raw_text=raw_text,
    )


def _table_at(value: Any, path: str, v: _Validator, *, required: bool = False) -> dict[str, Any] | None:
    """``value`` as the table at ``path`` (None: absent, or not a table, which is reported)."""
    if value is None:
        if required:
            v.error(f"[{path}] is missing: add a [{path}] table")
        return None
    if not isinstance(value, dict):
        v.error(f"{path} = {_show(value)} is {_a(_type_name(value))}: it must be a table ([{path}])")
        return None
    return value


def _schedule(value: Any, path: str, v: _Validator, *, required: bool = False) -> ComparisonSchedule:
    comp = _table_at(value, path, v, required=required)
    need = comp is not None
    comp = comp or {}
    v.unknown_keys(comp, ("min_turns_between", "daily_cap", "probability", "min_attributes", "seed"), path)
    return ComparisonSchedule(
        min_turns_between=v.get(comp, "min_turns_between", path, "integer", required=need, default=0,
                                check=_at_least(0)),
        daily_cap=v.get(comp, "daily_cap", path, "integer", required=need, default=0, check=_at_least(0)),
        probability=float(v.get(comp, "probability", path, "number", required=need, default=0.0,
                                check=_between(0, 1))),
        min_attributes=v.get(comp, "min_attributes", path, "integer", required=need, default=0,
                             check=_at_least(0)),
        seed=v.get(comp, "seed", path, "integer"),
    )


def _cadence(value: Any, path: str, v: _Validator) -> LabelingCadence:
    review = _table_at(value, path, v) or {}
    v.unknown_keys(review, ("every_new_attributes", "batch_size", "max_per_day"), path)
    defaults = LabelingCadence()
    return LabelingCadence(
        every_new_attributes=v.get(review, "every_new_attributes", path, "integer",
                                   default=defaults.every_new_attributes, check=_at_least(1)),
        batch_size=v.get(review, "batch_size", path, "integer", default=defaults.batch_size,
                         check=_between(1, 50)),
        max_per_day=v.get(review, "max_per_day", path, "integer", default=defaults.max_per_day,
                          check=_at_least(0)),
    )


def _display(value: Any, path: str, v: _Validator) -> DisplayOptions:
    shown = _table_at(value, path, v) or {}
    v.unknown_keys(shown, ("show_memory_use",), path)
    return DisplayOptions(
        show_memory_use=v.get(shown, "show_memory_use", path, "boolean", default=DisplayOptions().show_memory_use),
    )


def _personalization(value: Any, path: str, v: _Validator) -> Personalization:
    table = _table_at(value, path, v) or {}
    v.unknown_keys(table, ("memory",), path)
    return Personalization(memory=v.get(
        table, "memory", path, "string", default=Personalization().memory,
        check=lambda m: None if m in MEMORY_SETTINGS else
        "is not a memory setting: it must be \"on\" (replies use the participant's attributes) or \"off\" "
        "(ordinary replies without them; attributes are still extracted and comparisons still run)"))


def _own_condition(data: Mapping[str, Any], v: _Validator) -> str | None:
    """A participant's protocol may name their own condition (a study that reveals it); a study's file may not."""
    if "condition" not in data:
        return None
    if v.files:
        v.error("condition is not a key of a study's protocol: the server names a participant's condition in "
                "the protocol it sends them; define the study's conditions in [conditions]")
        return None
    if "conditions" in data:
        v.error("condition is set beside [conditions]: a participant's protocol names only its own condition")
        return None
    name = data["condition"]
    problem = check_condition_name(name) if isinstance(name, str) else "is not a string"
    if problem:
        v.error(f"condition = {_show(name)} {problem}")
        return None
    return name


# What a condition may change, each parsed as the protocol's own table is (the models by whole role entries).
_CONDITION_TABLES: dict[str, Callable[[Any, str, _Validator], Any]] = {
    "comparisons": lambda value, path, v: _schedule(value, path, v, required=True),
    "attribute_review": _cadence,
    "display": _display,
    "models": lambda value, path, v: _models(value, path, v),
    "personalization": _personalization,
}


def _consent(data: Mapping[str, Any], v: _Validator) -> list[ConsentDocument]:
    if "consent" not in data:
        v.error("[[consent]] is missing: add at least one consent document ([[consent]] with version, title, text)")
        return []
    entries = data["consent"]
    if isinstance(entries, dict):
        entries = [entries]
    if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
        v.error(f"consent = {_show(entries)} is {_a(_type_name(entries))}: it must be one or more [[consent]] tables")
        return []
    documents: list[ConsentDocument] = []
    seen: dict[str, int] = {}
    for i, entry in enumerate(entries, start=1):
        path = f"consent[{i}]"
        v.unknown_keys(entry, ("version", "title", "text", "file", "sha256"), path)
        version = v.get(entry, "version", path, "string", required=True)
        title = v.get(entry, "title", path, "string", required=True)
        text = _consent_text(entry, path, v)
        if version is not None:
            if version in seen:
                v.error(f"{path}.version = {version!r} repeats consent[{seen[version]}].version: "
                        "every consent document needs its own version")
            else:
                seen[version] = i
        if version is None or title is None or text is None:
            continue
        doc = ConsentDocument(version=version, title=title, text=text)
        expected = entry.get("sha256")
        if expected is not None and expected != doc.sha256:
            # Only present in a protocol that travelled as JSON: the text must be the one hashed.
            v.error(f"{path}.sha256 = {_show(expected)} does not match the text's sha256 {doc.sha256}: "
                    "the consent text was changed in transit")
            continue
        documents.append(doc)
    return documents


def _consent_text(entry: Mapping[str, Any], path: str, v: _Validator) -> str | None:
    has_text, has_file = "text" in entry, "file" in entry
    if has_text and has_file:
        v.error(f"{path} has both text and file: give the consent text inline (text = \"\"\"...\"\"\") "
                "or as a file path, not both")
        return None
    if not has_text and not has_file:
        v.error(f"{path}.text is missing: add text = \"\"\"...\"\"\" or file = \"consent.md\" "
                "(a path relative to the protocol file)")
        return None
    if has_text:
        return v.get(entry, "text", path, "string", required=True)
    name = v.get(entry, "file", path, "string", required=True)
    if name is None:
        return None
    if not v.files:
        v.error(f"{path}.file = {name!r} is not allowed here: a protocol sent by the study server must carry its "
                "consent texts inline (text); the research team publishes the protocol file with studyapp-server, "
                "which puts them inline")
        return None
    if v.base_dir is None:
        v.error(f"{path}.file = {name!r} cannot be read: a protocol given as text has no folder to resolve "
                "paths against; give the text inline or use load_protocol(path)")
        return None
    # Only files inside the protocol's folder (symlinks resolved): what is published to every participant must be
    # what the research team put next to the protocol, never another file of the machine it is published from.
    folder = v.base_dir.resolve()
    file = (folder / name).resolve()
    if not file.is_relative_to(folder):
        v.error(f"{path}.file = {name!r} is outside the protocol's folder {folder} (it leads to {file}): put the "
                "consent document in that folder or below it, and name it relative to the protocol file")
        return None
    if file.exists() and not file.is_file():
        v.error(f"{path}.file = {name!r} is not a regular file ({file}): name the consent document's text file")
        return None
    try:
        if file.stat().st_size > MAX_CONSENT_BYTES:
            v.error(f"{path}.file = {name!r} is larger than {MAX_CONSENT_BYTES // 1024} KiB: a consent document "
                    "is text a participant reads; check the path")
            return None
        # Bytes decoded as-is (no newline translation): the sha256 must be of the exact text shown.
        text = file.read_bytes().decode("utf-8")
    except FileNotFoundError:
        v.error(f"{path}.file = {name!r} does not exist (looked for {file}): the path is relative to the "
                "protocol file")
        return None
    except (OSError, UnicodeDecodeError) as exc:
        v.error(f"{path}.file = {name!r} cannot be read as UTF-8 text ({exc})")
        return None
    if not text.strip():
        v.error(f"{path}.file = {name!r} is empty: the consent document needs its text")
        return None
    return text


def _categories(data: Mapping[str, Any], v: _Validator) -> dict[str, CategorySpec]:
    table = v.table(data, "categories", "categories", required=True)
    if table is None:
        return {}
    if not table:
        v.error(f"[categories] is empty: ask for at least one of {', '.join(CATEGORIES)}")
    result: dict[str, CategorySpec] = {}
    for name, spec in table.items():
        path = f"categories.{name}"
        if name not in CATEGORIES:
            hint = difflib.get_close_matches(name, CATEGORIES, n=1)
            suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
            v.error(f"[{path}] is not a known data category{suggestion}; allowed: {', '.join(CATEGORIES)}")
            continue
        if isinstance(spec, bool):
            # Shorthand: ratings = true asks for the category, optional for the participant.
            if spec:
                result[name] = CategorySpec(name, False, DEFAULT_CATEGORY_DESCRIPTIONS[name])
            continue
        if not isinstance(spec, dict):
            v.error(f"{path} = {_show(spec)} is {_a(_type_name(spec))}: it must be a table "
                    "with required = true|false and description = \"...\" (or true)")
            continue
        v.unknown_keys(spec, ("required", "description"), path)
        required = v.get(spec, "required", path, "boolean", default=False)
        description = v.get(spec, "description", path, "string", default=DEFAULT_CATEGORY_DESCRIPTIONS[name])
        result[name] = CategorySpec(name, required, description)
    return result


def _model_spec(entry: Any, path: str, v: _Validator) -> ModelSpec | None:
    if isinstance(entry, str):
        entry = {"model": entry}
    if not isinstance(entry, dict):
        v.error(f"{path} = {_show(entry)} is {_a(_type_name(entry))}: it must be a table with model = "
                "\"local\" or a model name, and base_url for an OpenAI-compatible endpoint")
        return None
    v.unknown_keys(entry, ("model", "base_url", "via"), path)
    model = v.get(entry, "model", path, "string", required=True)
    base_url = v.get(entry, "base_url", path, "string", check=_check_model_url)
    via = v.get(entry, "via", path, "string", default=DIRECT,
                check=lambda x: None if x in ROUTES else
                "is not a route: it must be \"direct\" (the model's own base_url, or \"local\") or \"study\" "
                "(through the study's server)")
    if via is None:
        return None
    if via == VIA_STUDY:
        problem = False
        if base_url:
            v.error(f"{path}.base_url = {base_url!r} is set with via = \"study\": the study's models are reached "
                    "through the study's server (<server>/llm/v1, the server participants enroll with); remove "
                    "base_url, or set via = \"direct\" to name another endpoint")
            problem = True
        if model == LOCAL:
            v.error(f"{path}.model = \"local\" with via = \"study\": the embedded model runs on the participant's "
                    "computer, not on the study's server; name a model the server provides "
                    "(`studyapp-server models add NAME ...`), or remove via")
            problem = True
        if problem:
            return None
    if model == LOCAL and base_url:
        v.error(f"{path}.base_url = {base_url!r} is set for model = \"local\": the embedded model needs no "
                "endpoint; remove base_url or name a served model")
        return None
    if model is None:
        return None
    return ModelSpec(model=model, base_url=base_url, via=via)


def _models(value: Any, path: str, v: _Validator) -> dict[str, ModelSpec]:
    table = _table_at(value, path, v) or {}
    v.unknown_keys(table, ROLES, path)
    models: dict[str, ModelSpec] = {}
    for role in ("assistant", "extractor", "selector"):
        spec = _model_spec(table[role], f"{path}.{role}", v) if role in table else ModelSpec(LOCAL)
        if spec is not None:
            models[role] = spec
    judges = table.get("judge", {"model": LOCAL})
    # judge = [] turns judging off; [[models.judge]] lists several judges.
    entries = judges if isinstance(judges, list) else [judges]
    for i, entry in enumerate(entries, start=1):
        where = f"{path}.judge" if not isinstance(judges, list) else f"{path}.judge[{i}]"
        spec = _model_spec(entry, where, v)
        if spec is not None:
            models["judge" if i == 1 else f"judge.{i}"] = spec
    return models


# Entry points -------------------------------------------------------------------------------------


def _parse(text: str, source: str, base_dir: Path | None) -> Protocol:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message carries "(at line N, column M)".
        raise ProtocolError(source, [f"not valid TOML: {exc}"]) from None
    v = _Validator(base_dir)
    protocol = _validate(data, v, text)
    if protocol is None:
        raise ProtocolError(source, v.errors)
    published = published_size(text, protocol)
    if published > MAX_PUBLISHED_BYTES:
        raise ProtocolError(source, [
            f"the protocol as the study server publishes it (its text and every consent document inline, non-ASCII "
            f"characters escaped) takes {published // 1024} KiB, more than the {MAX_PUBLISHED_BYTES // 1024} KiB "
            "a participant's app accepts: shorten the consent documents or leave out old versions no consent "
            "record points to"])
    return protocol


def published_size(text: str, protocol: Protocol) -> int:
    """Bytes of the protocol in the server's answers (the TOML text and the resolved protocol, ASCII JSON)."""
    return len(json.dumps({"protocol": text, "protocol_resolved": protocol.to_dict()}, ensure_ascii=True))


def parse_protocol(text: str, *, source: str = "<string>", base_dir: str | Path | None = None) -> Protocol:
    """Parse and validate protocol TOML. Consent files resolve against ``base_dir`` (if given)."""
    return _parse(text, source, Path(base_dir) if base_dir is not None else None)


def load_protocol(path: str | Path) -> Protocol:
    """Read, parse and validate a protocol file; consent files resolve relative to it."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ProtocolError(str(path), [f"file {path} does not exist: give the path of a study TOML file"]) from None
    except IsADirectoryError:
        raise ProtocolError(str(path), [f"{path} is a directory: give the path of a study TOML file"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProtocolError(str(path), [f"file {path} cannot be read as UTF-8 text ({exc})"]) from None
    return _parse(text, str(path), path.parent.resolve())


def protocol_from_dict(data: Mapping[str, Any], *, source: str = "<protocol JSON>") -> Protocol:
    """Validate a protocol received as ``Protocol.to_dict()`` (from the server or the studies table)."""
    if not isinstance(data, Mapping):
        raise ProtocolError(source, [f"the protocol is {_a(_type_name(data))}: it must be a JSON object"])
    v = _Validator(None, files=False)
    protocol = _validate(data, v, json.dumps(data, ensure_ascii=False, sort_keys=True))
    if protocol is None:
        raise ProtocolError(source, v.errors)
    return protocol


def protocol_from_json(text: str, *, source: str = "<protocol JSON>") -> Protocol:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProtocolError(source, [f"not valid JSON: {exc}"]) from None
    return protocol_from_dict(data, source=source)


def builtin_protocol() -> Protocol:
    """The local study the app runs without enrollment: embedded model, comparisons within a few turns."""
    text = resources.files("studyapp.study").joinpath("builtin.toml").read_text(encoding="utf-8")
    return parse_protocol(text, source="studyapp/study/builtin.toml")
