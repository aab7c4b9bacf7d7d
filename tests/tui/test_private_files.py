"""The chat app tells the participant, once, that an older install's files were made private."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from studyapp.store.db import open_database
from tests.tui.helpers import MakeApp, toasts, wait_for_toast

pytestmark = pytest.mark.skipif(os.name == "nt", reason="POSIX file modes")

SIZE = (110, 36)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


async def test_an_older_install_is_made_private_at_start_and_the_app_says_so_once(
    make_app: MakeApp, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    open_database(data_dir / "studyapp.db").close()
    os.chmod(data_dir, 0o755)
    os.chmod(data_dir / "studyapp.db", 0o644)

    app = make_app()
    assert mode(data_dir) == 0o700 and mode(data_dir / "studyapp.db") == 0o600
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        toast = await wait_for_toast(pilot, lambda t: "only you can read them now" in t, what="the notice")
        assert toast.startswith("Your files are private now\n")

    again = make_app()
    async with again.run_test(size=SIZE, notifications=True) as pilot:
        # Notifications show in order: once this one is up, the notice would be too.
        again.notify("(test: shown after start)")
        await wait_for_toast(pilot, lambda t: t.startswith("(test:"), what="the notifications so far")
        assert not [t for t in toasts(again) if "only you can read" in t]
