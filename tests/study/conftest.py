"""Fixtures for the study tests: a real database file, a conversation with a prompt, the scripted model server."""

from __future__ import annotations

import pytest
from sqlite_utils import Database

from studyapp.store.comparisons import ComparisonStore
from studyapp.store.conversations import ConversationStore
from tests.support.fixtures import db, scripted_llm  # noqa: F401


@pytest.fixture
def conversations(db: Database) -> ConversationStore:
    return ConversationStore(db)


@pytest.fixture
def comparisons(db: Database) -> ComparisonStore:
    return ComparisonStore(db)
