"""Fixtures for the study tests: a real database file, a conversation with a prompt, the scripted model server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlite_utils import Database

from studyapp.store.comparisons import ComparisonStore
from studyapp.store.conversations import ConversationStore
from studyapp.store.db import open_database
from tests.support.fixtures import scripted_llm  # noqa: F401


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = open_database(tmp_path / "studyapp.db")
    yield database
    database.close()


@pytest.fixture
def conversations(db: Database) -> ConversationStore:
    return ConversationStore(db)


@pytest.fixture
def comparisons(db: Database) -> ComparisonStore:
    return ComparisonStore(db)
