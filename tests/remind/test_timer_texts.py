"""The daily timer's files and crontab line, as text: what systemd, cron and launchd will read."""

from __future__ import annotations

import plistlib

import pytest

from studyapp import remind

ARGV = ["/opt/study app/bin/python", "-m", "studyapp", "remind", "--data-dir", "/home/p/100%data"]


def test_at_takes_a_24_hour_time_and_names_what_is_wrong_otherwise() -> None:
    assert remind.parse_at("18:30") == (18, 30)
    assert remind.parse_at("7:05") == (7, 5)
    for bad in ("24:00", "18:60", "6pm", "18.30", ""):
        with pytest.raises(ValueError, match="HH:MM"):
            remind.parse_at(bad)


def test_systemd_units_run_the_reminder_daily_with_specifiers_escaped() -> None:
    units = remind.systemd_units(ARGV, 7, 5)
    assert set(units) == {"studyapp-remind.service", "studyapp-remind.timer"}
    service, timer = units["studyapp-remind.service"], units["studyapp-remind.timer"]
    # Quoted for systemd's splitting; % doubled so systemd does not read it as a specifier.
    assert 'ExecStart="/opt/study app/bin/python" "-m" "studyapp" "remind" "--data-dir" "/home/p/100%%data"' \
        in service.splitlines()
    assert "Type=oneshot" in service.splitlines()
    assert "OnCalendar=*-*-* 07:05:00" in timer.splitlines()
    assert "Persistent=true" in timer.splitlines() and "WantedBy=timers.target" in timer.splitlines()


def test_the_crontab_line_is_replaced_and_every_other_line_kept() -> None:
    line = remind.crontab_line(ARGV, 18, 30, uid=1000)
    assert line.startswith("30 18 * * * env DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/1000/bus ")
    assert "'/opt/study app/bin/python' -m studyapp remind" in line
    assert "100\\%data" in line  # cron turns a bare % into a newline
    assert line.endswith(remind.CRON_MARK)
    theirs = "MAILTO=p@example.org\n0 3 * * * backup.sh\n"
    once = remind.crontab_with(theirs, line)
    assert once == theirs + line + "\n"
    moved = remind.crontab_with(once, remind.crontab_line(ARGV, 9, 0, uid=1000))
    assert moved.count(remind.CRON_MARK) == 1 and "0 9 * * *" in moved and theirs in moved
    assert remind.crontab_with(moved, None) == theirs


def test_the_launchd_agent_runs_the_reminder_at_the_time() -> None:
    plist = plistlib.loads(remind.launchd_plist(ARGV, 8, 15).encode())
    assert plist["Label"] == "org.studyapp.remind"
    assert plist["ProgramArguments"] == ARGV
    assert plist["StartCalendarInterval"] == {"Hour": 8, "Minute": 15}


def test_the_notifier_command_per_platform() -> None:
    assert remind.notify_command("studyapp", "Rate it", "linux") == ["notify-send", "--app-name", "studyapp",
                                                                     "studyapp", "Rate it"]
    [osascript, flag, script] = remind.notify_command("studyapp", 'Say "hi"', "darwin") or []
    assert (osascript, flag) == ("osascript", "-e")
    assert script == 'display notification "Say \\"hi\\"" with title "studyapp"'
    assert remind.notify_command("studyapp", "x", "win32") is None
