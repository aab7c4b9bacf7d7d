"""Enrolling on a computer without a keyring: the token in a private file, only when the participant asks.

keyring's fail backend stands for the missing keyring; the study server is a real one on 127.0.0.1.
"""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import keyring
import pytest
from click.testing import CliRunner
from keyring.backends import fail
from sqlite_utils import Database

from studyapp.cli import cli
from studyapp.secrets import secrets_file
from studyapp.store.studies import StudyStore
from tests.server import live as f
from tests.server.live import LiveServer
from tests.sync.helpers import queue


@pytest.fixture
def no_keyring() -> Iterator[None]:
    previous = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    yield
    keyring.set_keyring(previous)


def run(tmp_path: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, [*args, "--data-dir", str(tmp_path / "client")])
    return result.exit_code, result.output


def test_without_a_keyring_enroll_names_the_flag_and_keeps_the_code(live: LiveServer, client_db: Database,
                                                                    tmp_path: Path, no_keyring: None) -> None:
    code = live.code()
    exit_code, output = run(tmp_path, "enroll", live.base_url, code)
    assert exit_code == 1
    assert "--store-token-in-file" in output and "code is still valid" in output
    assert "keyrings.alt" not in output and "Traceback" not in output
    assert live.storage.code_counts()["used"] == 0
    assert not secrets_file().exists()
    # The same code then works with the flag.
    exit_code, output = run(tmp_path, "enroll", "--store-token-in-file", live.base_url, code)
    assert exit_code == 0, output
    assert str(secrets_file()) in output


def test_the_token_in_a_file_enrolls_syncs_shows_in_doctor_and_goes_with_withdrawal(
        live: LiveServer, client_db: Database, tmp_path: Path, no_keyring: None) -> None:
    exit_code, output = run(tmp_path, "enroll", "--store-token-in-file", live.base_url, live.code())
    assert exit_code == 0, output
    path = secrets_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert not path.is_relative_to(tmp_path / "client")
    study = StudyStore(client_db).current()
    assert study is not None
    # Never in the database.
    token = path.read_text(encoding="utf-8").split('"')[3]
    assert live.storage.participant_for(token) == study.participant_id
    dump = "\n".join(str(r) for t in client_db.table_names() for r in client_db[t].rows)
    assert token not in dump

    ids = queue(client_db, f.STUDY_ID, [f.consent(), f.message()])
    exit_code, output = run(tmp_path, "sync")
    assert exit_code == 0, output
    assert sorted(live.storage.event_ids(study.participant_id)) == sorted(ids)

    exit_code, output = run(tmp_path, "doctor", "--no-model-check")
    assert f"participant token: stored in a file (you chose this at enrollment): {path}" in output
    assert token not in output

    exit_code, output = run(tmp_path, "withdraw", "--yes")
    assert exit_code == 0, output
    assert not path.exists()


def test_a_token_file_others_can_read_is_refused_with_what_to_do(live: LiveServer, client_db: Database,
                                                                 tmp_path: Path, no_keyring: None) -> None:
    assert run(tmp_path, "enroll", "--store-token-in-file", live.base_url, live.code())[0] == 0
    path = secrets_file()
    path.chmod(0o644)
    queue(client_db, f.STUDY_ID, [f.consent()])
    exit_code, output = run(tmp_path, "sync")
    assert exit_code == 1
    assert f"chmod 600 {path}" in output and "Traceback" not in output
    assert live.storage.count_events() == 0
    exit_code, output = run(tmp_path, "doctor", "--no-model-check")
    assert "NOT USABLE" in output and "0644" in output
    path.chmod(0o600)
    assert run(tmp_path, "sync")[0] == 0
    assert live.storage.count_events() == 1
