from __future__ import annotations

from pathlib import Path

import pytest

from studyapp.context import AppContext
from studyapp.llm.openai_compat import OpenAICompatModel
from studyapp.tui.app import StudyApp
from tests.support.fixtures import scripted_llm  # noqa: F401
from tests.support.keyring import memory_keyring  # noqa: F401
from tests.support.scripted_llm import ScriptedLLM
from tests.tui.helpers import MakeApp


@pytest.fixture
def make_app(tmp_path: Path, scripted_llm: ScriptedLLM) -> MakeApp:
    # No extraction after replies unless a test asks: it would query the scripted model after the test's
    # own requests, and a pending debounce keeps a worker alive that wait_for_complete() waits for.
    def factory(*, extract_debounce_s: float | None = None) -> StudyApp:
        app_ctx = AppContext.create(tmp_path / "data")
        return StudyApp(app_ctx, model_factory=lambda: OpenAICompatModel(scripted_llm.base_url, scripted_llm.model),
                        extract_debounce_s=extract_debounce_s)

    return factory
