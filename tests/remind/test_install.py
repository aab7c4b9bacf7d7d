"""Installing and removing the daily reminder: files under a temporary folder, commands recorded by an injected
runner (nothing on this machine changes)."""

from __future__ import annotations

import os
import plistlib
from collections.abc import Sequence
from pathlib import Path

import pytest

from studyapp import remind

ARGV = ["/usr/bin/python3", "-m", "studyapp", "remind"]


class Commands:
    """Records each command; answers from ``answers`` (by its first words), exit 0 otherwise."""

    def __init__(self, answers: dict[str, remind.CommandResult] | None = None) -> None:
        self.ran: list[tuple[list[str], str | None]] = []
        self.answers = answers or {}

    def __call__(self, argv: Sequence[str], stdin: str | None) -> remind.CommandResult:
        self.ran.append((list(argv), stdin))
        for prefix, result in self.answers.items():
            if " ".join(argv).startswith(prefix):
                return result
        return remind.CommandResult(0)

    def argvs(self) -> list[str]:
        return [" ".join(argv) for argv, _ in self.ran]


def everywhere(name: str) -> str | None:
    return f"/usr/bin/{name}"


def places(tmp_path: Path) -> remind.Places:
    return remind.Places(systemd_dir=tmp_path / "systemd" / "user", launch_agents_dir=tmp_path / "LaunchAgents")


def test_systemd_when_the_user_manager_answers(tmp_path: Path) -> None:
    run = Commands()
    report = remind.install(ARGV, 18, 30, places=places(tmp_path), platform="linux", run=run, which=everywhere)
    assert report.scheduler == "systemd"
    timer = tmp_path / "systemd" / "user" / "studyapp-remind.timer"
    assert report.files_written == [tmp_path / "systemd" / "user" / "studyapp-remind.service", timer]
    assert "OnCalendar=*-*-* 18:30:00" in timer.read_text()
    assert run.argvs() == ["systemctl --user show-environment", "systemctl --user daemon-reload",
                           "systemctl --user enable --now studyapp-remind.timer"]
    assert report.lines()[-1] == "ran: systemctl --user enable --now studyapp-remind.timer"

    run = Commands()
    removed = remind.uninstall(places=places(tmp_path), platform="linux", run=run, which=everywhere)
    assert removed.files_removed == report.files_written and not timer.exists()
    assert run.argvs() == ["systemctl --user disable --now studyapp-remind.timer", "systemctl --user daemon-reload"]


def test_cron_when_systemd_is_not_running_keeps_the_participants_own_lines(tmp_path: Path) -> None:
    theirs = "0 3 * * * backup.sh\n"
    run = Commands({"systemctl": remind.CommandResult(1, "", "Failed to connect to bus"),
                    "crontab -l": remind.CommandResult(0, theirs)})
    report = remind.install(ARGV, 7, 0, places=places(tmp_path), platform="linux", run=run, which=everywhere,
                            uid=1000)
    assert report.scheduler == "cron" and report.files_written == []
    [stdin] = [s for a, s in run.ran if a == ["crontab", "-"]]
    assert stdin is not None and stdin.startswith(theirs)
    assert stdin.splitlines()[-1] == remind.crontab_line(ARGV, 7, 0, uid=1000)
    assert not (tmp_path / "systemd").exists()

    installed = stdin
    run = Commands({"crontab -l": remind.CommandResult(0, installed)})
    remind.uninstall(places=places(tmp_path), platform="linux", run=run, which=everywhere)
    assert run.ran[-1] == (["crontab", "-"], theirs)


def test_cron_without_a_crontab_yet(tmp_path: Path) -> None:
    run = Commands({"systemctl": remind.CommandResult(1), "crontab -l": remind.CommandResult(1, "", "no crontab")})
    report = remind.install(ARGV, 7, 0, places=places(tmp_path), platform="linux", run=run, which=everywhere)
    assert run.ran[-1][1] == remind.crontab_line(ARGV, 7, 0, uid=os.getuid()) + "\n"
    assert "ran: crontab -l  (exit 1)" in report.lines()


def test_launchd_on_macos(tmp_path: Path) -> None:
    run = Commands()
    report = remind.install(ARGV, 9, 45, places=places(tmp_path), platform="darwin", run=run, which=everywhere)
    path = tmp_path / "LaunchAgents" / "org.studyapp.remind.plist"
    assert report.scheduler == "launchd" and report.files_written == [path]
    assert plistlib.loads(path.read_bytes())["StartCalendarInterval"] == {"Hour": 9, "Minute": 45}
    assert run.argvs() == [f"launchctl unload {path}", f"launchctl load {path}"]
    run = Commands()
    assert remind.uninstall(places=places(tmp_path), platform="darwin", run=run).files_removed == [path]
    assert run.argvs() == [f"launchctl unload {path}"] and not path.exists()


def test_a_failing_command_stops_with_what_it_said(tmp_path: Path) -> None:
    run = Commands({"systemctl --user enable": remind.CommandResult(1, "", "Unit file is masked.")})
    with pytest.raises(remind.RemindError, match=r"enable --now studyapp-remind\.timer.*exit 1.*masked"):
        remind.install(ARGV, 18, 0, places=places(tmp_path), platform="linux", run=run, which=everywhere)


def test_no_scheduler_or_another_system_says_what_to_do_instead(tmp_path: Path) -> None:
    run = Commands({"systemctl": remind.CommandResult(1)})
    with pytest.raises(remind.RemindError, match="Run `studyapp remind` yourself"):
        remind.install(ARGV, 18, 0, places=places(tmp_path), platform="linux", run=run, which=lambda name: None)
    with pytest.raises(remind.RemindError, match="Linux and macOS only"):
        remind.install(ARGV, 18, 0, places=places(tmp_path), platform="win32", run=run, which=everywhere)


def test_a_data_dir_with_a_newline_cannot_become_a_line_of_the_timer() -> None:
    # A newline in --data-dir would add a directive to the unit file or a second line to the crontab.
    with pytest.raises(remind.RemindError, match="control character"):
        remind.remind_command(Path("/tmp/x\nExecStartPre=/bin/sh -c evil"))
    assert remind.remind_command(Path("/tmp/with space/%and$"))[-2:] == ["--data-dir", "/tmp/with space/%and$"]
