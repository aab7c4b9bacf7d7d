"""Shared pytest fixtures for model-facing tests.

Import them into a test folder's conftest.py (pytest finds fixtures by name in the conftest namespace):

    from tests.support.fixtures import llama_server, scripted_llm  # noqa: F401
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.scripted_llm import ScriptedLLM, run_scripted_llm


@pytest.fixture
def scripted_llm() -> Iterator[ScriptedLLM]:
    """A running ScriptedLLM (fresh per test): queue replies, point a model at ``scripted_llm.base_url``."""
    with run_scripted_llm() as llm:
        yield llm
