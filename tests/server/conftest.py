from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server.live import LiveServer, new_storage, serve


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveServer]:
    """A real uvicorn server on 127.0.0.1 with a fresh study database."""
    storage, token = new_storage(tmp_path / "server.db")
    with serve(storage) as base_url:
        yield LiveServer(base_url, storage, token)
    storage.close()
