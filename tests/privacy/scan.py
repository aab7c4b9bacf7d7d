"""Scan every file under a data dir for secrets (privacy invariant 4), for reuse after any test session.

    from tests.privacy.scan import scan_for_secrets
    leaks = scan_for_secrets(data_dir, {"participant token": token, "api key": key})
    assert leaks == [], leaks

Reads raw bytes, so it also sees SQLite pages (free pages included), the WAL and shared-memory files,
logs and config files. Each secret is looked for as UTF-8, UTF-16 (both byte orders) and base64.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

# Shorter values would match by chance (and are not secrets worth the name).
MIN_SECRET_LENGTH = 8


@dataclass(frozen=True)
class Leak:
    path: Path
    secret: str  # the secret's label, never its value
    encoding: str
    offset: int


def _encodings(value: str) -> dict[str, bytes]:
    raw = value.encode("utf-8")
    forms = {"utf-8": raw, "utf-16-le": value.encode("utf-16-le"), "utf-16-be": value.encode("utf-16-be")}
    # base64 of the secret at each of the three byte alignments it can have inside a longer blob;
    # only the fully determined middle part is searched.
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + raw)
        start = 4 if shift else 0
        usable = encoded[start: len(encoded) - 4]
        if len(usable) >= MIN_SECRET_LENGTH:
            forms[f"base64/{shift}"] = usable
    return forms


def scan_for_secrets(root: str | Path, secrets: Mapping[str, str] | Iterable[str]) -> list[Leak]:
    """Every place under ``root`` where one of ``secrets`` appears (empty list: none)."""
    labeled = dict(secrets) if isinstance(secrets, Mapping) else {f"secret {i + 1}": s for i, s in enumerate(secrets)}
    for label, value in labeled.items():
        if len(value) < MIN_SECRET_LENGTH:
            raise ValueError(f"{label} is shorter than {MIN_SECRET_LENGTH} characters: it would match by chance")
    needles = [(label, name, form) for label, value in labeled.items() for name, form in _encodings(value).items()]
    leaks: list[Leak] = []
    for path in sorted(Path(root).rglob("*")):
        if not path.is_file():
            continue
        data = path.read_bytes()
        for label, name, form in needles:
            offset = data.find(form)
            if offset >= 0:
                leaks.append(Leak(path, label, name, offset))
    return leaks
