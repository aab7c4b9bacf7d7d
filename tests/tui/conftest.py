from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from studyapp.context import AppContext
from studyapp.llm.openai_compat import OpenAICompatModel
from studyapp.tui.app import StudyApp
from tests.support.fixtures import scripted_llm  # noqa: F401
from tests.support.keyring import memory_keyring  # noqa: F401
from tests.support.scripted_llm import ScriptedLLM


@pytest.fixture
def make_app(tmp_path: Path, scripted_llm: ScriptedLLM) -> Callable[[], StudyApp]:
    def factory() -> StudyApp:
        app_ctx = AppContext.create(tmp_path / "data")
        return StudyApp(app_ctx, model_factory=lambda: OpenAICompatModel(scripted_llm.base_url, scripted_llm.model))

    return factory
