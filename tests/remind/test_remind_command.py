"""``studyapp remind`` on a real data dir: quiet when nothing is open, a notification (or a console message when
there is no notifier) naming what is. The notifier is a recording ``notify-send`` script put first on PATH."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlite_utils import Database

from studyapp.cli import cli
from studyapp.domain import AttributeChange, NewAttribute
from studyapp.store.comparisons import ComparisonStore
from studyapp.store.conversations import ConversationStore
from studyapp.store.db import open_database
from studyapp.store.memory import MemoryStore
from studyapp.study.current import save_enrollment
from studyapp.study.protocol import builtin_protocol


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def db(data_dir: Path) -> Iterator[Database]:
    data_dir.mkdir(mode=0o700)  # as studyapp creates it (a looser one would be tightened, and said)
    database = open_database(data_dir / "studyapp.db")
    yield database
    database.close()


@pytest.fixture
def notifier(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A notify-send on PATH that writes its arguments to a file; returns that file."""
    bin_dir, record = tmp_path / "bin", tmp_path / "notified.txt"
    bin_dir.mkdir()
    script = bin_dir / "notify-send"
    script.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$@\" > '{record}'\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return record


def remind(data_dir: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["remind", "--data-dir", str(data_dir), *args])
    return result.exit_code, result.output


def enroll(db: Database) -> None:
    save_enrollment(db, builtin_protocol(), participant_id="p-1")


def chat(db: Database, text: str = "Good morning") -> None:
    conversations = ConversationStore(db)
    conversations.add_message(conversations.create().id, "user", text)


def test_not_taking_part_is_never_reminded(db: Database, data_dir: Path, notifier: Path) -> None:
    assert remind(data_dir) == (0, "")
    code, output = remind(data_dir, "-v")
    assert code == 0 and "not taking part in a study" in output
    assert not notifier.exists()


def test_no_chat_yet_today_is_a_notification(db: Database, data_dir: Path, notifier: Path) -> None:
    enroll(db)
    code, output = remind(data_dir)
    assert code == 0 and output == ""
    title, app, *_, body = notifier.read_text().splitlines()
    assert (title, app) == ("--app-name", "studyapp")
    assert "you have not chatted with the assistant today" in body


def test_nothing_open_after_todays_chat_is_quiet(db: Database, data_dir: Path, notifier: Path) -> None:
    enroll(db)
    chat(db)
    assert remind(data_dir) == (0, "")
    assert not notifier.exists()
    code, output = remind(data_dir, "-v")
    assert code == 0 and "everything for today is done (day 1 of" in output


def test_labels_and_a_comparison_waiting_are_named(db: Database, data_dir: Path, notifier: Path) -> None:
    enroll(db)
    chat(db)
    MemoryStore(db).apply_changes([AttributeChange("add", "extracted", new=NewAttribute(t, "said so", 0.8, []))
                                   for t in ("The user cooks", "The user runs", "The user reads")], actor="model")
    conversations = ConversationStore(db)
    conversation = conversations.create()
    prompt = conversations.add_message(conversation.id, "user", "Dinner ideas?")
    comparisons = ComparisonStore(db)
    comparison_id = comparisons.create(conversation_id=conversation.id, prompt_message_id=prompt.id,
                                       personalized_side="left", coin={}, attributes=[], model="m", parameters={},
                                       templates={})
    comparisons.mark_shown(comparison_id)
    assert remind(data_dir)[0] == 0
    body = notifier.read_text().splitlines()[-1]
    assert "3 attributes wait for your label (F4)" in body
    assert "1 comparison waits for your rating" in body
    assert "not chatted" not in body


def test_without_a_notifier_the_console_says_it(db: Database, data_dir: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))  # no notify-send (nor anything else)
    enroll(db)
    code, output = remind(data_dir)
    assert code == 0
    assert output.startswith("studyapp: Today's study tasks: you have not chatted with the assistant today")


def test_install_options_are_checked_before_anything_runs(data_dir: Path) -> None:
    code, output = remind(data_dir, "--at", "18:00")
    assert code == 2 and "--install" in output
    code, output = remind(data_dir, "--install", "--at", "25:00")
    assert code == 2 and "HH:MM" in output and "Traceback" not in output
    code, output = remind(data_dir, "--install", "--uninstall")
    assert code == 2 and "not both" in output
