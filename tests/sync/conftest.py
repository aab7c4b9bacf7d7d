from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import keyring
import pytest
from keyring.backend import KeyringBackend
from keyring.errors import PasswordDeleteError
from sqlite_utils import Database

from studyapp.store.db import open_database
from tests.server.live import LiveServer, new_storage, serve


class MemoryKeyring(KeyringBackend):
    """A keyring that lives in this process only: tests never touch the OS keyring."""

    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.passwords: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.passwords.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.passwords[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        if (service, username) not in self.passwords:
            raise PasswordDeleteError(username)
        del self.passwords[(service, username)]


@pytest.fixture(autouse=True)
def memory_keyring() -> Iterator[MemoryKeyring]:
    previous = keyring.get_keyring()
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    yield backend
    keyring.set_keyring(previous)


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
