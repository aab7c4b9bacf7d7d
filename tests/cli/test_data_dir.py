"""One --data-dir for every command: the command's flag, then the group's, then STUDYAPP_DATA_DIR, then the default.

Each command runs through click's CliRunner in every combination of (group flag, command flag, variable); the
test asserts which of the four directories got the database, and that no other did.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from studyapp.cli import cli
from studyapp.paths import DATABASE_NAME

# (command arguments, standard input, what the output must say)
COMMANDS: dict[str, tuple[list[str], str | None, str]] = {
    "doctor": (["doctor", "--no-model-check"], None, "schema version:"),
    "study status": (["study", "status"], None, "attributes without your label"),
    "sync": (["sync"], None, "This install is not enrolled in a study"),
    "privacy scrub": (["privacy", "scrub", "--no-ner"], "write to mail@example.org\n", "<EMAIL_ADDRESS_1>"),
    "export-mine": (["export-mine", "--out", "-"], None, '"conversations"'),
}

MATRIX = list(itertools.product([False, True], repeat=3))  # (group flag, command flag, variable)


@pytest.fixture
def dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    found = {name: tmp_path / name for name in ("group", "command", "env", "default")}
    monkeypatch.setattr("studyapp.paths.platformdirs.user_data_dir", lambda *a, **k: str(found["default"]))
    return found


def invoke(dirs: dict[str, Path], words: list[str], stdin: str | None, *, group: bool, command: bool,
           env: bool) -> Result:
    # The command flag goes right after the command's words, before anything else it takes.
    args = (["--data-dir", str(dirs["group"])] if group else []) + words
    if command:
        args += ["--data-dir", str(dirs["command"])]
    runner = CliRunner(env={"STUDYAPP_DATA_DIR": str(dirs["env"]) if env else None,
                            "STUDYAPP_MODEL": None, "STUDYAPP_BASE_URL": None})
    return runner.invoke(cli, args, input=stdin)


def with_database(dirs: dict[str, Path]) -> list[str]:
    return [name for name, path in dirs.items() if (path / DATABASE_NAME).exists()]


def expected(group: bool, command: bool, env: bool) -> str:
    return "command" if command else "group" if group else "env" if env else "default"


@pytest.mark.parametrize(("group", "command", "env"), MATRIX,
                         ids=[f"group={g:d}-command={c:d}-env={e:d}" for g, c, e in MATRIX])
@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_puts_the_database_where_the_precedence_says(
        dirs: dict[str, Path], name: str, group: bool, command: bool, env: bool) -> None:
    words, stdin, says = COMMANDS[name]
    result = invoke(dirs, words, stdin, group=group, command=command, env=env)
    assert says in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    winner = expected(group, command, env)
    if name == "privacy scrub" and winner == "default":
        # scrub opens a participant's database only when one was chosen; a sample is not stored anywhere.
        assert with_database(dirs) == []
    else:
        assert with_database(dirs) == [winner]


def test_the_sync_command_names_the_problem_not_a_traceback(dirs: dict[str, Path]) -> None:
    result = invoke(dirs, ["sync"], None, group=True, command=False, env=True)
    assert result.exit_code == 1
    assert "not enrolled" in result.output and "studyapp enroll URL CODE" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(("group", "command", "env", "reads"), [
    (False, False, True, None),  # the variable never feeds a participant's memory into a pipeline run
    (True, False, True, "group"),
    (False, True, True, "command"),
    (True, True, False, "command"),
])
def test_pipeline_reads_a_participants_memory_only_from_a_flag(
        dirs: dict[str, Path], group: bool, command: bool, env: bool, reads: str | None) -> None:
    for path in dirs.values():
        path.mkdir()  # empty: reading memory from one says there is no database there
    result = invoke(dirs, ["pipeline", "generate", "--arm", "personalized", "-"], '{"prompt": "hi"}',
                    group=group, command=command, env=env)
    assert result.exit_code == 1
    if reads is None:
        assert 'The personalized arm needs "memory"' in result.output
    else:
        assert f"There is no studyapp database in {dirs[reads]}" in result.output
    assert with_database(dirs) == []


def test_help_names_the_variable_for_every_command() -> None:
    for words in (["doctor"], ["study", "status"], ["sync"], ["privacy", "scrub"], ["export-mine"], []):
        result = CliRunner().invoke(cli, [*words, "--help"])
        assert result.exit_code == 0
        assert "--data-dir" in result.output and "STUDYAPP_DATA_DIR" in result.output
