"""Fixtures for the personalization tests: a real database file and models behind the scripted server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlite_utils import Database

from studyapp.llm.openai_compat import OpenAICompatModel
from studyapp.store.conversations import ConversationStore
from studyapp.store.memory import MemoryStore
from tests.support.fixtures import db, scripted_llm  # noqa: F401
from tests.support.scripted_llm import ScriptedLLM


@pytest.fixture
def conversations(db: Database) -> ConversationStore:
    return ConversationStore(db)


@pytest.fixture
def memory(db: Database) -> MemoryStore:
    return MemoryStore(db)


@pytest.fixture
async def model(scripted_llm: ScriptedLLM) -> AsyncIterator[OpenAICompatModel]:
    m = OpenAICompatModel(scripted_llm.base_url, scripted_llm.model)
    yield m
    await m.aclose()
