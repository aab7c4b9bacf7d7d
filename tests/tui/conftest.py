from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import keyring
import pytest
from keyring.backend import KeyringBackend

from studyapp.context import AppContext
from studyapp.llm.openai_compat import OpenAICompatModel
from studyapp.tui.app import StudyApp
from tests.support.fixtures import scripted_llm  # noqa: F401
from tests.support.scripted_llm import ScriptedLLM


class MemoryKeyring(KeyringBackend):
    """An in-memory keyring, standing in for the OS keyring (not a fake of our code)."""

    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.passwords: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.passwords.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.passwords[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self.passwords.pop((service, username), None)


@pytest.fixture
def memory_keyring() -> Iterator[MemoryKeyring]:
    previous = keyring.get_keyring()
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    yield backend
    keyring.set_keyring(previous)


@pytest.fixture
def make_app(tmp_path: Path, scripted_llm: ScriptedLLM) -> Callable[[], StudyApp]:  # noqa: F811
    def factory() -> StudyApp:
        app_ctx = AppContext.create(tmp_path / "data")
        return StudyApp(app_ctx, model_factory=lambda: OpenAICompatModel(scripted_llm.base_url, scripted_llm.model))

    return factory
