from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlite_utils import Database

from studyapp.store.db import open_database
from tests.server.live import LiveServer, new_storage, serve
from tests.support.keyring import MemoryKeyring, memory_keyring  # noqa: F401


@pytest.fixture(autouse=True)
def _keyring(memory_keyring: MemoryKeyring) -> MemoryKeyring:
    """Every sync test runs against the in-memory keyring, never the OS one."""
    return memory_keyring


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveServer]:
    storage, token = new_storage(tmp_path / "server.db")
    with serve(storage) as base_url:
        yield LiveServer(base_url, storage, token)
    storage.close()


@pytest.fixture
def client_db(tmp_path: Path) -> Iterator[Database]:
    (tmp_path / "client").mkdir()
    db = open_database(tmp_path / "client" / "studyapp.db")
    yield db
    db.close()
