"""The participant's command line: ``studyapp`` opens the chat; subcommands script everything else."""

from __future__ import annotations

import importlib
import json
import os
import sqlite3
import sys
from pathlib import Path
from typing import Any

import click

from studyapp.cli_options import CliOptions, data_dir_option, resolve_data_dir
from studyapp.context import AppContext
from studyapp.store.db import UnusableDatabase, integrity_problem

# Commands of the other parts, imported only when used: the chat app starts without loading them
# (the "lazily loading subcommands" pattern from click's documentation). Add a part's command here.
LAZY_COMMANDS = {
    "ask": "studyapp.ask:ask",
    "study": "studyapp.study.commands:study",
    "judge": "studyapp.study.commands:judge",
    "privacy": "studyapp.privacy.commands:privacy",
    "consent": "studyapp.privacy.commands:consent",
    "enroll": "studyapp.sync.commands:enroll",
    "sync": "studyapp.sync.commands:sync",
    "withdraw": "studyapp.sync.commands:withdraw",
    "pipeline": "studyapp.personalize.commands:pipeline",
}


class LazyGroup(click.Group):
    def __init__(self, *args: Any, lazy_commands: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_commands = lazy_commands or {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.lazy_commands])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy_commands:
            module_name, attribute = self.lazy_commands[cmd_name].split(":")
            command = getattr(importlib.import_module(module_name), attribute)
            if not isinstance(command, click.Command):
                raise TypeError(f"{self.lazy_commands[cmd_name]} is not a click command")
            return command
        return super().get_command(ctx, cmd_name)


def make_context(ctx: click.Context, data_dir: Path | None) -> AppContext:
    """The AppContext for a command given its own --data-dir (see studyapp.cli_options for the precedence).

    Its database is closed when the command's click context closes (also on sys.exit or an error).
    """
    options = ctx.find_object(CliOptions) or CliOptions()
    app_ctx = AppContext.create(resolve_data_dir(ctx, data_dir).path, model=options.model_override,
                                base_url=options.base_url_override)
    ctx.call_on_close(app_ctx.close)
    # Registered after close, so it runs first (click closes in reverse order); nothing when the app showed it.
    ctx.call_on_close(lambda: _print_notice(app_ctx))
    return app_ctx


def _print_notice(app_ctx: AppContext) -> None:
    notice = app_ctx.take_notice()
    if notice:
        click.echo(notice, err=True)


def open_or_exit(app_ctx: AppContext) -> AppContext:
    try:
        app_ctx.db  # noqa: B018 - opening checks and migrates the database
    except UnusableDatabase as exc:
        raise click.ClickException(str(exc)) from exc
    return app_ctx


@click.group(cls=LazyGroup, lazy_commands=LAZY_COMMANDS, invoke_without_command=True,
             context_settings={"help_option_names": ["-h", "--help"]})
@data_dir_option
@click.option("--model", "-m", help="Model to chat with: 'local' (embedded) or a model name [env: STUDYAPP_MODEL].")
@click.option("--base-url", help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8080/v1 [env: STUDYAPP_BASE_URL].")
@click.version_option(package_name="studyapp")
@click.pass_context
def cli(ctx: click.Context, data_dir: Path | None, model: str | None, base_url: str | None) -> None:
    """studyapp: chat with an assistant and help research how it personalizes.

    Without a command, opens the chat app.
    """
    # Unresolved: a subcommand's own --data-dir may still win over this one (studyapp.cli_options).
    ctx.obj = CliOptions(data_dir, model, base_url)
    if ctx.invoked_subcommand is None:
        app_ctx = make_context(ctx, data_dir)
        app_ctx.check_integrity = False  # the app checks after its first frame (StudyApp.check_integrity)
        open_or_exit(app_ctx)
        from studyapp.tui.app import StudyApp

        try:
            app = StudyApp(app_ctx)
        except sqlite3.DatabaseError as exc:
            # Damage the deferred check would have found: say which file and what to do, never a traceback.
            problem = integrity_problem(app_ctx.database_path)
            raise click.ClickException(str(problem or exc)) from exc
        app.run()
        if app.return_code:
            sys.exit(app.return_code)


@cli.command()
@data_dir_option
@click.option("--no-model-check", is_flag=True, help="Do not ask the model for an answer.")
@click.option("--full", is_flag=True,
              help="Also load the anonymizer (Presidio, spaCy) and run the embedded model, and give a server "
                   "model its configured timeout instead of a few seconds (slower).")
@click.pass_context
def doctor(ctx: click.Context, data_dir: Path | None, no_model_check: bool, full: bool) -> None:
    """Print where data lives, the schema version, model settings and whether the model answers."""
    from studyapp.diagnostics import run_doctor

    app_ctx = make_context(ctx, data_dir)
    ok = run_doctor(app_ctx, check_model=not no_model_check, echo=click.echo, full=full)
    sys.exit(0 if ok else 1)


@cli.command()
@data_dir_option
@click.option("--install", "install_timer", is_flag=True,
              help="Run this reminder every day (a systemd user timer, cron, or launchd on macOS).")
@click.option("--at", "at", metavar="HH:MM", default=None,
              help="With --install: the time of day for the reminder [default: 18:00].")
@click.option("--uninstall", "uninstall_timer", is_flag=True, help="Remove the daily reminder.")
@click.option("-v", "--verbose", is_flag=True, help="Say so when nothing is open, and how the reminder was shown.")
@click.pass_context
def remind(ctx: click.Context, data_dir: Path | None, install_timer: bool, at: str | None, uninstall_timer: bool,
           verbose: bool) -> None:
    """Show a desktop notification when today's study tasks are still open (quiet when nothing is)."""
    from studyapp import remind as reminders

    if install_timer and uninstall_timer:
        raise click.UsageError("Give --install or --uninstall, not both.")
    if at is not None and not install_timer:
        raise click.UsageError("--at sets the time for --install: give both, e.g. --install --at 18:30.")
    try:
        hour, minute = reminders.parse_at(at or reminders.DEFAULT_AT)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--at") from None
    try:
        if install_timer:
            choice = resolve_data_dir(ctx, data_dir)
            # The timer checks the same data dir as this command when one was chosen explicitly.
            target = choice.path.expanduser().resolve() if choice.explicit and choice.path else None
            report = reminders.install(reminders.remind_command(target), hour, minute)
            click.echo(f"Installed the daily reminder at {hour:02d}:{minute:02d} ({report.scheduler}):")
        elif uninstall_timer:
            report = reminders.uninstall()
            click.echo("Removed the daily reminder:" if report.lines() else "No daily reminder was installed.")
        else:
            app_ctx = open_or_exit(make_context(ctx, data_dir))
            tasks = reminders.open_tasks(app_ctx.db)
            if not tasks.any:
                if verbose:
                    click.echo(f"Nothing to remind you of: {tasks.why_none}.")
                return
            shown = reminders.notify(tasks.message(), echo=click.echo)
            if verbose and shown == "desktop":
                click.echo(f"Shown as a desktop notification: {tasks.message()}")
            return
    except reminders.RemindError as exc:
        raise click.ClickException(str(exc)) from None
    for line in report.lines():
        click.echo(f"  {line}")


def _is_database_file(out: Path, database: Path) -> bool:
    """Whether ``out`` names the database or one of SQLite's files beside it (by path or, hard links, by inode).

    Writing one of them with plain file I/O would destroy it, and closing it would drop this process's
    SQLite locks on it. Only stat() is used here: it opens no descriptor.
    """
    names = [database.name + suffix for suffix in ("", "-wal", "-shm", "-journal")]
    if out.resolve() in {database.resolve().with_name(name) for name in names}:
        return True
    if not out.exists():
        return False
    return any(os.path.samefile(out, database.with_name(name)) for name in names
               if database.with_name(name).exists())


def _write_private(out: Path, text: str) -> None:
    """Write the export created 0600: it holds every conversation."""
    from studyapp.private_files import open_private_for_writing

    with os.fdopen(open_private_for_writing(out), "w", encoding="utf-8") as f:
        f.write(text)


@cli.command("export-mine")
@data_dir_option
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="File to write (JSON). Use - for standard output.")
@click.pass_context
def export_mine(ctx: click.Context, data_dir: Path | None, out: Path) -> None:
    """Write all your conversations as JSON: your data is yours."""
    from studyapp.store.export import export_conversations

    app_ctx = open_or_exit(make_context(ctx, data_dir))
    if str(out) != "-" and _is_database_file(out, app_ctx.database_path):
        raise click.ClickException(f"--out {out} is the studyapp database itself (or its -wal/-shm file); "
                                   "writing there would destroy it. Choose another file.")
    data = export_conversations(app_ctx.db)
    text = json.dumps(data, ensure_ascii=False, indent=2)
    if str(out) == "-":
        click.echo(text)
    else:
        _write_private(out, text + "\n")
        n_conv = len(data["conversations"])
        n_msg = sum(len(c["messages"]) for c in data["conversations"])
        click.echo(f"Wrote {n_conv} conversations ({n_msg} messages) to {out}")
