"""``studyapp remind``: a desktop notification while today's study tasks are still open, and the daily timer for it.

Open tasks (only while enrolled in a running study with a usable protocol): attributes the study asks to label
now (the protocol's labeling cadence, as the app announces them), a comparison on screen that waits for a rating,
and no message written today (the participant's local day). Outside a running study nothing is ever open: a
reminder must never nag someone who has not joined, has withdrawn, or whose study is over.

The notification goes through ``notify-send`` (Linux) or ``osascript`` (macOS); elsewhere, or when that command
is missing or fails, the message is printed on the console. ``install`` puts ``studyapp remind`` on a daily user
timer: a systemd user timer when ``systemctl --user`` works, else a crontab line on Linux, a launchd agent on
macOS. The unit, crontab and plist texts are pure functions; every command goes through an injectable runner and
every file under ``Places``, so tests check both without changing the machine.
"""

from __future__ import annotations

import os
import plistlib
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlite_utils import Database

from studyapp.store.comparisons import ComparisonStore
from studyapp.store.conversations import ConversationStore
from studyapp.store.memory import MemoryStore
from studyapp.study.current import current_study
from studyapp.study.labeling import plan_labeling
from studyapp.study.schedule import start_of_day

TITLE = "studyapp"
UNIT_NAME = "studyapp-remind"
LAUNCHD_LABEL = "org.studyapp.remind"
CRON_MARK = "# studyapp remind (added by `studyapp remind --install`)"
DEFAULT_AT = "18:00"


class RemindError(RuntimeError):
    """Installing or removing the daily reminder failed; the message says what happened and what to do."""


# What is open today -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class OpenTasks:
    tasks: list[str]  # one sentence per open task, for the participant
    why_none: str = ""  # when nothing is open: why (said with -v)

    @property
    def any(self) -> bool:
        return bool(self.tasks)

    def message(self) -> str:
        return "Today's study tasks: " + "; ".join(self.tasks) + ". Open studyapp to continue."


def open_tasks(db: Database, *, now: datetime | None = None) -> OpenTasks:
    """Today's open study tasks, read from the participant's database (nothing is written)."""
    now = now or datetime.now(UTC)
    study = current_study(db)
    if not study.enrolled:
        return OpenTasks([], "you are not taking part in a study")
    if not study.usable:
        return OpenTasks([], "the study's protocol cannot be used until the next sync brings a valid one")
    day, total = study.day(now)
    if day > total:
        return OpenTasks([], f"the study is over ({total} days)")
    tasks: list[str] = []
    due = len(plan_labeling(MemoryStore(db), study.protocol.attribute_review, now=now).due)
    if due:
        tasks.append(f"{due} {'attribute waits' if due == 1 else 'attributes wait'} for your label (F4)")
    waiting = ComparisonStore(db).count_waiting_for_rating()
    if waiting:
        tasks.append(f"{waiting} {'comparison waits' if waiting == 1 else 'comparisons wait'} for your rating")
    if ConversationStore(db).count_user_messages_since(start_of_day(now)) == 0:
        tasks.append("you have not chatted with the assistant today")
    return OpenTasks(tasks, "" if tasks else f"everything for today is done (day {day} of {total})")


# Showing the notification ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CommandResult:
    returncode: int
    stdout: str = ""
    stderr: str = ""


# Runs a command (argv, text for its stdin or None) and reports how it ended; never raises for a missing program.
Runner = Callable[[Sequence[str], str | None], CommandResult]


def run_command(argv: Sequence[str], stdin: str | None = None) -> CommandResult:
    try:
        done = subprocess.run(list(argv), input=stdin, capture_output=True, text=True, timeout=30, check=False)
    except FileNotFoundError:
        return CommandResult(127, "", f"{argv[0]}: command not found")
    except subprocess.TimeoutExpired:
        return CommandResult(124, "", f"{argv[0]}: no answer within 30 s")
    return CommandResult(done.returncode, done.stdout, done.stderr)


def _applescript_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def notify_command(title: str, body: str, platform: str) -> list[str] | None:
    """The desktop notifier's command line on ``platform`` (sys.platform), or None where there is none."""
    if platform.startswith("linux"):
        return ["notify-send", "--app-name", title, title, body]
    if platform == "darwin":
        return ["osascript", "-e", f"display notification {_applescript_string(body)} with title "
                                   f"{_applescript_string(title)}"]
    return None


def notify(body: str, *, platform: str = sys.platform, which: Callable[[str], str | None] = shutil.which,
           run: Runner = run_command, echo: Callable[[str], None] = print) -> str:
    """Show ``body`` as a desktop notification, else print it. Returns how it was shown ("desktop"/"console")."""
    command = notify_command(TITLE, body, platform)
    if command is not None and which(command[0]) is not None and run(command, None).returncode == 0:
        return "desktop"
    echo(f"{TITLE}: {body}")
    return "console"


# The daily timer: pure texts ---------------------------------------------------------------------------


def parse_at(value: str) -> tuple[int, int]:
    """HH:MM (24-hour) as (hour, minute); a clear ValueError otherwise."""
    match = re.fullmatch(r"(\d{1,2}):(\d{2})", value.strip())
    if not match or int(match[1]) > 23 or int(match[2]) > 59:
        raise ValueError(f"{value!r} is not a time of day: give it as HH:MM on a 24-hour clock, e.g. 18:30")
    return int(match[1]), int(match[2])


def remind_command(data_dir: Path | None) -> list[str]:
    """What the timer runs: this Python with ``-m studyapp`` (works for pipx and venvs alike, PATH or not)."""
    command = [sys.executable, "-m", "studyapp", "remind"]
    if data_dir is not None and not str(data_dir).isprintable():
        # A newline would start a line of its own in the unit file or the crontab.
        raise RemindError(f"The data dir {str(data_dir)!r} holds a control character (a newline, say); a daily "
                          "reminder cannot name it. Use a folder whose name has none.")
    return command + (["--data-dir", str(data_dir)] if data_dir is not None else [])


def _systemd_quote(argv: Sequence[str]) -> str:
    # systemd splits ExecStart like a shell with C-style quotes, and expands % specifiers and $ variables.
    quoted = ['"' + a.replace("\\", "\\\\").replace('"', '\\"') + '"' for a in argv]
    return " ".join(quoted).replace("%", "%%").replace("$", "$$")


def systemd_units(argv: Sequence[str], hour: int, minute: int) -> dict[str, str]:
    """The user service and timer, by file name."""
    service = (
        "[Unit]\n"
        "Description=studyapp: remind me of today's study tasks\n\n"
        "[Service]\n"
        "Type=oneshot\n"
        f"ExecStart={_systemd_quote(argv)}\n"
    )
    timer = (
        "[Unit]\n"
        "Description=studyapp: daily reminder of today's study tasks\n\n"
        "[Timer]\n"
        f"OnCalendar=*-*-* {hour:02d}:{minute:02d}:00\n"
        # A day the computer was off at that time is reminded of when it next starts.
        "Persistent=true\n\n"
        "[Install]\n"
        "WantedBy=timers.target\n"
    )
    return {f"{UNIT_NAME}.service": service, f"{UNIT_NAME}.timer": timer}


def crontab_line(argv: Sequence[str], hour: int, minute: int, uid: int) -> str:
    # cron runs without the desktop session's environment: notify-send needs the session bus to reach it.
    command = f"env DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/{uid}/bus {shlex.join(argv)}"
    return f"{minute} {hour} * * * {command.replace('%', chr(92) + '%')} {CRON_MARK}"


def crontab_with(current: str, line: str | None) -> str:
    """The crontab ``current`` without our line, plus ``line`` when given; every other line is kept as it was."""
    kept = [entry for entry in current.splitlines() if not entry.endswith(CRON_MARK)]
    if line is not None:
        kept.append(line)
    return "".join(f"{entry}\n" for entry in kept)


def launchd_plist(argv: Sequence[str], hour: int, minute: int) -> str:
    return plistlib.dumps({
        "Label": LAUNCHD_LABEL,
        "ProgramArguments": list(argv),
        "StartCalendarInterval": {"Hour": hour, "Minute": minute},
        "RunAtLoad": False,
    }).decode("utf-8")


# The daily timer: installing and removing ---------------------------------------------------------------


def _default_systemd_dir() -> Path:
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "systemd" / "user"


@dataclass(frozen=True)
class Places:
    """Where the timer's files go (tests give a temporary folder)."""

    systemd_dir: Path = field(default_factory=_default_systemd_dir)
    launch_agents_dir: Path = field(default_factory=lambda: Path.home() / "Library" / "LaunchAgents")


@dataclass
class InstallReport:
    scheduler: str  # "systemd", "cron" or "launchd"
    files_written: list[Path] = field(default_factory=list)
    files_removed: list[Path] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        return ([f"wrote {p}" for p in self.files_written] + [f"removed {p}" for p in self.files_removed]
                + [f"ran: {c}" for c in self.commands])


class _Steps:
    """Runs commands through the runner, noting each in the report; a failure stops with what it said."""

    def __init__(self, report: InstallReport, run: Runner) -> None:
        self.report, self.run = report, run

    def __call__(self, argv: Sequence[str], stdin: str | None = None, *, may_fail: bool = False) -> CommandResult:
        result = self.run(argv, stdin)
        self.report.commands.append(shlex.join(argv) + ("" if result.returncode == 0 else
                                                        f"  (exit {result.returncode})"))
        if result.returncode != 0 and not may_fail:
            said = (result.stderr or result.stdout).strip()
            raise RemindError(f"`{shlex.join(argv)}` failed (exit {result.returncode}){': ' + said if said else ''}.")
        return result


def choose_scheduler(platform: str, run: Runner, which: Callable[[str], str | None]) -> str:
    if platform == "darwin":
        return "launchd"
    if platform.startswith("linux"):
        if which("systemctl") is not None and run(["systemctl", "--user", "show-environment"], None).returncode == 0:
            return "systemd"
        if which("crontab") is not None:
            return "cron"
        raise RemindError("Neither a systemd user session (`systemctl --user`) nor cron (`crontab`) is available "
                          "here, so no daily timer can be installed. Run `studyapp remind` yourself, or add it to "
                          "whatever starts programs on this computer.")
    raise RemindError(f"Daily reminders can be installed on Linux and macOS only (this is {platform}); run "
                      "`studyapp remind` from the system's task scheduler instead.")


def _write(path: Path, text: str, report: InstallReport) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    report.files_written.append(path)


def install(argv: Sequence[str], hour: int, minute: int, *, places: Places | None = None,
            platform: str = sys.platform, run: Runner = run_command,
            which: Callable[[str], str | None] = shutil.which, uid: int | None = None) -> InstallReport:
    """Install ``argv`` as a daily user timer at hour:minute (replacing an earlier one); says what it did."""
    places = places or Places()
    report = InstallReport(choose_scheduler(platform, run, which))
    step = _Steps(report, run)
    if report.scheduler == "systemd":
        for name, text in systemd_units(argv, hour, minute).items():
            _write(places.systemd_dir / name, text, report)
        step(["systemctl", "--user", "daemon-reload"])
        step(["systemctl", "--user", "enable", "--now", f"{UNIT_NAME}.timer"])
    elif report.scheduler == "cron":
        current = step(["crontab", "-l"], may_fail=True)  # exit 1: no crontab yet
        line = crontab_line(argv, hour, minute, os.getuid() if uid is None else uid)
        step(["crontab", "-"], crontab_with(current.stdout if current.returncode == 0 else "", line))
    else:
        path = places.launch_agents_dir / f"{LAUNCHD_LABEL}.plist"
        step(["launchctl", "unload", str(path)], may_fail=True)  # an earlier one, if loaded
        _write(path, launchd_plist(argv, hour, minute), report)
        step(["launchctl", "load", str(path)])
    return report


def uninstall(*, places: Places | None = None, platform: str = sys.platform, run: Runner = run_command,
              which: Callable[[str], str | None] = shutil.which) -> InstallReport:
    """Remove the daily timer wherever ``install`` put it on this platform; says what it did (maybe nothing)."""
    places = places or Places()
    if platform.startswith("linux"):
        units = [places.systemd_dir / name for name in systemd_units([], 0, 0)]
        # Whichever was installed: the unit files tell systemd's; our crontab line tells cron's.
        report = InstallReport("systemd" if any(p.exists() for p in units) else "cron")
        step = _Steps(report, run)
        if report.scheduler == "systemd":
            step(["systemctl", "--user", "disable", "--now", f"{UNIT_NAME}.timer"], may_fail=True)
            for path in units:
                if path.exists():
                    path.unlink()
                    report.files_removed.append(path)
            step(["systemctl", "--user", "daemon-reload"], may_fail=True)
        elif which("crontab") is not None:
            current = step(["crontab", "-l"], may_fail=True)
            if current.returncode == 0 and CRON_MARK in current.stdout:
                step(["crontab", "-"], crontab_with(current.stdout, None))
        return report
    if platform == "darwin":
        report = InstallReport("launchd")
        path = places.launch_agents_dir / f"{LAUNCHD_LABEL}.plist"
        if path.exists():
            _Steps(report, run)(["launchctl", "unload", str(path)], may_fail=True)
            path.unlink()
            report.files_removed.append(path)
        return report
    raise RemindError(f"Daily reminders are installed on Linux and macOS only (this is {platform}): nothing to remove.")
