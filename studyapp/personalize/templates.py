"""Versioned prompt templates, shipped as package data in personalize/prompts/.

A template file starts with ``version: N``, a line ``---``, then the text. Every stored output records
``template.ref`` (``name@version``), so a change of wording is visible in the data.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources


@dataclass(frozen=True)
class Template:
    name: str
    version: str
    text: str

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    def render(self, **values: str) -> str:
        return self.text.format(**values)


@cache
def load_template(name: str) -> Template:
    raw = resources.files("studyapp.personalize.prompts").joinpath(f"{name}.txt").read_text(encoding="utf-8")
    header, sep, body = raw.partition("\n---\n")
    if not sep or not header.startswith("version:"):
        raise ValueError(f"prompt template {name!r} must start with 'version: N' and a '---' line")
    return Template(name=name, version=header.split(":", 1)[1].strip(), text=body.strip())
