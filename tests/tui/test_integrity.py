"""Damage that the start-up path does not touch is found by the check after the first frame."""

from __future__ import annotations

import time
from pathlib import Path

from studyapp.context import AppContext
from studyapp.store.db import integrity_problem, open_database
from studyapp.tui.app import StudyApp


def damage_the_end(path: Path) -> None:
    """Fill a table the chat never reads at start (the last pages of the file), then garble those pages."""
    db = open_database(path)
    with db.conn:
        db.conn.executemany("INSERT INTO privacy_terms (term, created_at) VALUES (?, ?)",
                            [(f"term {i} " + "y" * 300, "2026-01-01") for i in range(400)])
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    raw = bytearray(path.read_bytes())
    pages = len(raw) // 4096
    raw[4096 * (pages - 6) : 4096 * (pages - 2)] = b"\xde\xad\xbe\xef" * 4096
    path.write_bytes(bytes(raw))


async def test_the_app_stops_with_the_path_when_the_background_check_finds_damage(tmp_path: Path) -> None:
    path = tmp_path / "studyapp.db"
    damage_the_end(path)
    assert integrity_problem(path) is not None
    before = path.read_bytes()
    app_ctx = AppContext.create(tmp_path)
    app_ctx.check_integrity = False  # as `studyapp` starts the chat
    app = StudyApp(app_ctx)
    async with app.run_test() as pilot:
        deadline = time.monotonic() + 20
        while app.is_running and time.monotonic() < deadline:
            await pilot.pause(0.05)
    assert app.return_code == 1
    assert path.read_bytes() == before
