"""`studyapp enroll` in a study whose server provides the models (via = "study"), against a real collection server:
the chat takes on the study's assistant at once, routed through the server enrolled with, and needs no API key."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from studyapp.cli import cli
from studyapp.context import AppContext
from studyapp.study.models import ADOPTED_KEY
from tests.server import live as f
from tests.server.live import new_storage, serve

VIA_STUDY = f.PROTOCOL + '''
[models.assistant]
model = "gpt-4o-mini"
via = "study"
'''


def test_enrolling_switches_the_chat_to_the_studys_model_through_its_server(tmp_path: Path) -> None:
    storage, _ = new_storage(tmp_path / "server.db", VIA_STUDY)
    data_dir = tmp_path / "client"
    try:
        with serve(storage) as base_url:
            code = storage.create_codes(1)[0]
            result = CliRunner().invoke(cli, ["enroll", base_url, code, "--data-dir", str(data_dir)])
    finally:
        storage.close()
    assert result.exit_code == 0, result.output
    assert "The chat now uses gpt-4o-mini via the study's server: no API key is needed for it." in result.output
    app_ctx = AppContext.create(data_dir)
    settings = app_ctx.model_settings()
    assert (settings.model, settings.base_url, settings.via_study, settings.role) == (
        "gpt-4o-mini", f"{base_url}/llm/v1", f.STUDY_ID, "assistant")
    # Taken on once: a model chosen afterwards in Settings is not overridden at the next start.
    assert app_ctx.settings.get(ADOPTED_KEY) == f"{f.STUDY_ID}@1"
    app_ctx.close()


def test_enrolling_in_a_study_with_direct_models_leaves_the_chat_as_it_was(tmp_path: Path) -> None:
    storage, _ = new_storage(tmp_path / "server.db")
    data_dir = tmp_path / "client"
    try:
        with serve(storage) as base_url:
            code = storage.create_codes(1)[0]
            result = CliRunner().invoke(cli, ["enroll", base_url, code, "--data-dir", str(data_dir)])
    finally:
        storage.close()
    assert result.exit_code == 0, result.output
    assert "The chat now uses" not in result.output
    app_ctx = AppContext.create(data_dir)
    assert app_ctx.model_settings().via_study is None and app_ctx.model_settings().is_local
    app_ctx.close()
