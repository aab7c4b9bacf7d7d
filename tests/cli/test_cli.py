"""The participant's command line: data dir overrides, doctor, export-mine, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from studyapp.cli import cli
from studyapp.store.conversations import ConversationStore
from studyapp.store.db import open_database
from tests.store.test_migrations import every_migration
from tests.support.net import free_port
from tests.support.scripted_llm import ScriptedLLM


def seed(data_dir: Path) -> None:
    store = ConversationStore(open_database(data_dir / "studyapp.db"))
    c = store.create("Garden")
    store.add_message(c.id, "user", "When to plant garlic?")
    store.add_message(c.id, "assistant", "In autumn.")


def test_export_mine_writes_every_conversation(tmp_path: Path) -> None:
    seed(tmp_path)
    out = tmp_path / "mine.json"
    result = CliRunner().invoke(cli, ["export-mine", "--data-dir", str(tmp_path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "1 conversations (2 messages)" in result.output
    data = json.loads(out.read_text())
    [conversation] = data["conversations"]
    assert conversation["title"] == "Garden"
    assert [(m["role"], m["content"], m["status"]) for m in conversation["messages"]] == [
        ("user", "When to plant garlic?", "complete"), ("assistant", "In autumn.", "complete")]


def test_data_dir_comes_from_the_environment_and_the_flag_wins(tmp_path: Path) -> None:
    env_dir, flag_dir = tmp_path / "env", tmp_path / "flag"
    env_dir.mkdir()
    seed(env_dir)
    runner = CliRunner(env={"STUDYAPP_DATA_DIR": str(env_dir)})
    result = runner.invoke(cli, ["export-mine", "--out", "-"])
    # stdout only: env_dir was made 0755, so the notice that it is private now goes to stderr.
    assert json.loads(result.stdout)["conversations"][0]["title"] == "Garden"
    result = runner.invoke(cli, ["export-mine", "--data-dir", str(flag_dir), "--out", "-"])
    assert json.loads(result.output)["conversations"] == []
    # The group-level flag works too.
    result = runner.invoke(cli, ["--data-dir", str(flag_dir), "doctor", "--no-model-check"])
    assert str(flag_dir) in result.output


def test_doctor_reports_schema_model_keyring_and_a_working_model(tmp_path: Path, scripted_llm: ScriptedLLM) -> None:
    seed(tmp_path)
    result = CliRunner().invoke(cli, ["--model", scripted_llm.model, "--base-url", scripted_llm.base_url,
                                      "doctor", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    latest = every_migration()[-1]
    for expected in (f"data dir:        {tmp_path}", f"schema version:  {latest}",
                     "1 conversations, 2 messages", f"model:           {scripted_llm.model} at",
                     "keyring:", "model answers:   yes"):
        assert expected in result.output


def test_doctor_says_when_the_model_does_not_answer(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    result = CliRunner().invoke(cli, ["--model", "m", "--base-url", url, "doctor", "--data-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "model answers:   no: Could not reach" in result.output


def test_export_mine_refuses_to_write_over_the_database_or_its_wal(tmp_path: Path) -> None:
    db = open_database(tmp_path / "studyapp.db")
    store = ConversationStore(db)
    store.add_message(store.create("Kept").id, "user", "do not lose me")
    db.close()
    before = (tmp_path / "studyapp.db").read_bytes()
    (tmp_path / "link.db").hardlink_to(tmp_path / "studyapp.db")
    # By name, beside it (SQLite's own files), by another path to it, and by a hard link.
    for out in ("studyapp.db", "studyapp.db-wal", "studyapp.db-shm", f"../{tmp_path.name}/studyapp.db", "link.db"):
        result = CliRunner().invoke(cli, ["export-mine", "--data-dir", str(tmp_path), "--out", str(tmp_path / out)])
        assert result.exit_code == 1, (out, result.output)
        assert "is the studyapp database itself" in result.output
    assert (tmp_path / "studyapp.db").read_bytes() == before


def test_corrupt_database_is_a_clear_error_not_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "studyapp.db").write_bytes(b"not a database at all" * 50)
    for args in (["export-mine", "--out", "-"], []):
        result = CliRunner().invoke(cli, ["--data-dir", str(tmp_path), *args])
        assert result.exit_code == 1
        assert "not a SQLite database" in result.output
        assert "Traceback" not in result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)


def test_doctor_reports_the_study_and_what_may_be_collected(tmp_path: Path) -> None:
    from studyapp.study.current import save_enrollment
    from studyapp.study.protocol import load_protocol

    db = open_database(tmp_path / "studyapp.db")
    save_enrollment(db, load_protocol(Path(__file__).parents[2] / "examples" / "study.toml"),
                    participant_id="p-1", server_url="http://127.0.0.1:9")
    db.close()
    result = CliRunner().invoke(cli, ["doctor", "--no-model-check", "--data-dir", str(tmp_path)])
    assert "study:           " in result.output and "day 1 of" in result.output
    assert "collection:      Nothing is collected until you agree" in result.output
    assert "anonymizer:" in result.output


def test_the_console_script_keeps_pandas_out_of_the_process() -> None:
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "studyapp", "--help"],
                            capture_output=True, text=True, timeout=60, cwd=Path(__file__).parents[2])
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Usage:" in result.stdout
    imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}
    assert "sqlite_utils" in imported
    assert "pandas" not in imported
    assert "numpy" not in imported


def test_numpy_stays_importable_after_the_lean_import() -> None:
    import subprocess
    import sys

    code = ("from studyapp.entry import import_sqlite_utils_lean; import_sqlite_utils_lean(); "
            "import sqlite_utils.db as d; import numpy; print(d.np is None, numpy.__name__)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                            cwd=Path(__file__).parents[2])
    assert result.stdout.split() == ["True", "numpy"], result.stderr[-2000:]


def test_the_chat_app_on_a_damaged_database_says_so_without_a_traceback(tmp_path: Path) -> None:
    from tests.store.test_migrations import _damage

    _damage(tmp_path / "studyapp.db")
    before = (tmp_path / "studyapp.db").read_bytes()
    result = CliRunner().invoke(cli, ["--data-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "corrupt" in result.output and str(tmp_path / "studyapp.db") in result.output
    assert (tmp_path / "studyapp.db").read_bytes() == before


def test_every_lazy_command_loads() -> None:
    import click

    from studyapp.cli import LAZY_COMMANDS

    with click.Context(cli) as ctx:
        for name in LAZY_COMMANDS:
            command = cli.get_command(ctx, name)
            assert isinstance(command, click.Command), name
        assert set(LAZY_COMMANDS) <= set(cli.list_commands(ctx))


def test_progress_lines_end_their_line(tmp_path: Path, memory_keyring: object) -> None:
    """The progress label is a whole line (what follows starts on the next), also where no bar is drawn."""
    from studyapp.store.outbox import OutboxStore
    from studyapp.study.current import save_enrollment
    from studyapp.study.protocol import load_protocol

    db = open_database(tmp_path / "studyapp.db")
    protocol = load_protocol(Path(__file__).parents[2] / "examples" / "study.toml")
    save_enrollment(db, protocol, participant_id="p-1", server_url=f"http://127.0.0.1:{free_port()}")
    OutboxStore(db).add(study_id=protocol.id, kind="memory_view", category="ratings", approved=True,
                        payload={"view_id": "v1", "opened_at": "2026-03-02T09:30:00+00:00", "duration_s": 1.0},
                        consent_version=protocol.current_consent.version)
    db.close()
    result = CliRunner().invoke(cli, ["sync", "--data-dir", str(tmp_path)])
    assert result.exit_code == 1
    lines = result.stderr.split("\n")
    assert lines[0] == "Uploading" and lines[1].startswith("Error: "), result.stderr
    assert result.stderr.endswith("\n")
