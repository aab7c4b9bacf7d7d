"""Shared pytest fixtures for model-facing tests.

Import them into a test folder's conftest.py (pytest finds fixtures by name in the conftest namespace):

    from tests.support.fixtures import llama_server, scripted_llm  # noqa: F401
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlite_utils import Database

from studyapp.store.db import open_database
from tests.support.llama_server import LlamaServer, run_llama_server
from tests.support.scripted_llm import ScriptedLLM, run_scripted_llm


@pytest.fixture
def scripted_llm() -> Iterator[ScriptedLLM]:
    """A running ScriptedLLM (fresh per test): queue replies, point a model at ``scripted_llm.base_url``."""
    with run_scripted_llm() as llm:
        yield llm


@pytest.fixture(scope="session")
def llama_server() -> Iterator[LlamaServer]:
    """The real ``llama_cpp.server`` with SmolLM2 on a free port, shared by the whole test session.

    ``llama_server.base_url`` (ends in /v1) and ``llama_server.model`` go into OpenAICompatModel or settings.
    """
    with run_llama_server() as server:
        yield server


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    """A migrated participant database in a real file, closed after the test."""
    database = open_database(tmp_path / "studyapp.db")
    yield database
    database.close()
