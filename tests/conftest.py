"""Every test keeps secrets stored in a file in its own config dir, never in the user's (studyapp.paths.config_dir)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _private_config_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STUDYAPP_CONFIG_DIR", str(tmp_path_factory.mktemp("config") / "studyapp"))
