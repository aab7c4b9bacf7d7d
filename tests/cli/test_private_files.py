"""The command line keeps the participant's files private: the export, doctor's report, the one-time notice."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from studyapp.cli import cli
from tests.cli.test_cli import seed

pytestmark = pytest.mark.skipif(os.name == "nt", reason="POSIX file modes")


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def loosen(data_dir: Path) -> None:
    os.chmod(data_dir, 0o755)
    os.chmod(data_dir / "studyapp.db", 0o644)


def test_export_mine_writes_a_private_file(tmp_path: Path) -> None:
    seed(tmp_path)
    out, existing = tmp_path / "mine.json", tmp_path / "old.json"
    existing.write_text("{}")
    os.chmod(existing, 0o644)
    old = os.umask(0o022)
    try:
        for target in (out, existing):
            result = CliRunner().invoke(cli, ["export-mine", "--data-dir", str(tmp_path), "--out", str(target)])
            assert result.exit_code == 0, result.output
            assert mode(target) == 0o600 and '"Garden"' in target.read_text()
    finally:
        os.umask(old)


def test_doctor_reports_loose_permissions_and_the_notice_is_printed_once(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o700)
    seed(data_dir)
    result = CliRunner().invoke(cli, ["doctor", "--no-model-check", "--data-dir", str(data_dir)])
    assert "permissions:     private (data dir 0700, database files 0600)" in result.output
    assert "only you can read them" not in result.output

    loosen(data_dir)
    result = CliRunner().invoke(cli, ["doctor", "--no-model-check", "--data-dir", str(data_dir)])
    assert result.exit_code == 0, result.output
    assert "permissions:     readable by other users: " in result.output
    assert f"{data_dir} is 0755, should be 0700" in result.output
    assert f"{data_dir / 'studyapp.db'} is 0644, should be 0600" in result.output
    assert result.output.count("only you can read them now") == 1  # opening the database tightened them
    assert mode(data_dir) == 0o700 and mode(data_dir / "studyapp.db") == 0o600

    result = CliRunner().invoke(cli, ["doctor", "--no-model-check", "--data-dir", str(data_dir)])
    assert "permissions:     private" in result.output and "only you can read them" not in result.output


def test_a_command_that_prints_nothing_leaves_the_notice_to_the_next(tmp_path: Path) -> None:
    seed(tmp_path)
    loosen(tmp_path)
    result = CliRunner().invoke(cli, ["export-mine", "--data-dir", str(tmp_path), "--out", "-"])
    # The export on standard output stays JSON: the notice goes to standard error.
    assert "only you can read them now" in result.stderr and "only you can read" not in result.stdout
    result = CliRunner().invoke(cli, ["export-mine", "--data-dir", str(tmp_path), "--out", "-"])
    assert "only you can read" not in result.output
