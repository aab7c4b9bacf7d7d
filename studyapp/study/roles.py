"""Whether the models of the study's background roles (extractor, selector, judge) are working.

Their failures never reach the participant as a failed reply, so without this a study whose extractor is
unreachable would silently learn nothing. The last outcome per role is kept in the settings table, so
the status line and ``studyapp doctor`` (another process) both show it until the role works again.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlite_utils import Database

from studyapp.store.settings import SettingsStore
from studyapp.store.util import now

SETTINGS_KEY = "models.role_problems"


@dataclass(frozen=True)
class RoleProblem:
    role: str
    model: str
    error: str
    since: str

    def describe(self, width: int = 160) -> str:
        text = f"{self.role} ({self.model}) failing since {self.since[:16].replace('T', ' ')} UTC: {self.error}"
        return text if len(text) <= width else text[: width - 1] + "…"


def note_outcome(db: Database, role: str, model: str, error: str | None) -> None:
    """Record that ``role`` just worked (``error`` None) or failed with ``error``."""
    settings = SettingsStore(db)
    problems = dict(settings.get(SETTINGS_KEY) or {})
    if error is None:
        if role not in problems:
            return  # the common case writes nothing
        problems.pop(role)
    else:
        previous = problems.get(role) or {}
        since = previous.get("since") if previous.get("model") == model else None
        problems[role] = {"model": model, "error": error, "since": since or now()}
    settings.set(SETTINGS_KEY, problems)


def role_problems(db: Database) -> list[RoleProblem]:
    stored = SettingsStore(db).get(SETTINGS_KEY) or {}
    return [RoleProblem(role, str(p.get("model", "")), str(p.get("error", "")), str(p.get("since", "")))
            for role, p in sorted(stored.items())]
