"""AppContext's connection: closed means forgotten, and it belongs to the thread that opened it."""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from studyapp.context import AppContext


def test_close_leaves_nothing_pointing_at_the_closed_connection(tmp_path: Path) -> None:
    app_ctx = AppContext.create(tmp_path)
    old_db, old_settings = app_ctx.db, app_ctx.settings
    app_ctx.save_model_settings(replace(app_ctx.model_settings(), model="m-1", base_url="http://127.0.0.1:9/v1"))

    app_ctx.close()
    with pytest.raises(sqlite3.ProgrammingError):
        old_db.execute("SELECT 1")

    # A later use reopens: a fresh connection, and settings built on it rather than on the closed one.
    assert app_ctx.model_settings().model == "m-1"
    assert app_ctx.db is not old_db
    assert app_ctx.settings is not old_settings and app_ctx.settings.db is app_ctx.db
    app_ctx.close()
    app_ctx.close()  # twice is harmless


def test_the_connection_refuses_use_from_another_thread(tmp_path: Path) -> None:
    # Workers open their own connections; sharing the app's one would be a bug, so it fails loudly.
    app_ctx = AppContext.create(tmp_path)
    app_ctx.db.execute("SELECT 1")
    errors: list[BaseException] = []

    def use() -> None:
        try:
            app_ctx.db.execute("SELECT 1")
        except BaseException as exc:  # collected for the assertion in the main thread
            errors.append(exc)

    worker = threading.Thread(target=use)
    worker.start()
    worker.join()
    assert len(errors) == 1 and isinstance(errors[0], sqlite3.ProgrammingError)
    app_ctx.close()
