from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlite_utils import Database

from studyapp.store.db import open_database
from tests.server.live import live, server_db  # noqa: F401
from tests.support.keyring import MemoryKeyring, memory_keyring  # noqa: F401
from tests.support.postgres import pg_cluster, pg_url  # noqa: F401


@pytest.fixture(autouse=True)
def _keyring(memory_keyring: MemoryKeyring) -> MemoryKeyring:
    """Every sync test runs against the in-memory keyring, never the OS one."""
    return memory_keyring


@pytest.fixture
def client_db(tmp_path: Path) -> Iterator[Database]:
    (tmp_path / "client").mkdir()
    db = open_database(tmp_path / "client" / "studyapp.db")
    yield db
    db.close()
