"""The participant's command line: ``studyapp`` opens the chat; subcommands script everything else."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from studyapp import paths
from studyapp.context import AppContext
from studyapp.store.db import DatabaseError

F = TypeVar("F", bound=Callable[..., Any])


def data_dir_option(func: F) -> F:
    """--data-dir on every command (and STUDYAPP_DATA_DIR for all of them)."""
    return click.option(
        "--data-dir",
        type=click.Path(file_okay=False, path_type=Path),
        # No click envvar: paths.data_dir reads the variable, so a group-level --data-dir still wins over it.
        help=f"Where studyapp keeps its database [env: {paths.ENV_DATA_DIR}; default: the user data dir].",
        expose_value=True,
        is_eager=False,
    )(func)


def make_context(ctx: click.Context, data_dir: Path | None) -> AppContext:
    """The AppContext for a command: its own --data-dir wins over the group's."""
    parent: AppContext | None = ctx.find_object(AppContext)
    if data_dir is None and parent is not None:
        return parent
    return AppContext.create(data_dir,
                             model=parent.model_override if parent else None,
                             base_url=parent.base_url_override if parent else None)


def open_or_exit(app_ctx: AppContext) -> AppContext:
    try:
        app_ctx.db  # noqa: B018 - opening checks and migrates the database
    except DatabaseError as exc:
        raise click.ClickException(str(exc)) from exc
    return app_ctx


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@data_dir_option
@click.option("--model", "-m", help="Model to chat with: 'local' (embedded) or a model name [env: STUDYAPP_MODEL].")
@click.option("--base-url", help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8080/v1 [env: STUDYAPP_BASE_URL].")
@click.version_option(package_name="studyapp")
@click.pass_context
def cli(ctx: click.Context, data_dir: Path | None, model: str | None, base_url: str | None) -> None:
    """studyapp: chat with an assistant and help research how it personalizes.

    Without a command, opens the chat app.
    """
    ctx.obj = AppContext.create(data_dir, model=model, base_url=base_url)
    if ctx.invoked_subcommand is None:
        app_ctx = open_or_exit(ctx.obj)
        from studyapp.tui.app import StudyApp

        StudyApp(app_ctx).run()


@cli.command()
@data_dir_option
@click.option("--no-model-check", is_flag=True, help="Do not ask the model for an answer.")
@click.pass_context
def doctor(ctx: click.Context, data_dir: Path | None, no_model_check: bool) -> None:
    """Print where data lives, the schema version, model settings and whether the model answers."""
    from studyapp.diagnostics import run_doctor

    app_ctx = make_context(ctx, data_dir)
    ok = run_doctor(app_ctx, check_model=not no_model_check, echo=click.echo)
    sys.exit(0 if ok else 1)


@cli.command("export-mine")
@data_dir_option
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="File to write (JSON). Use - for standard output.")
@click.pass_context
def export_mine(ctx: click.Context, data_dir: Path | None, out: Path) -> None:
    """Write all your conversations as JSON: your data is yours."""
    from studyapp.store.export import export_conversations

    app_ctx = open_or_exit(make_context(ctx, data_dir))
    data = export_conversations(app_ctx.db)
    text = json.dumps(data, ensure_ascii=False, indent=2)
    if str(out) == "-":
        click.echo(text)
    else:
        out.write_text(text + "\n", encoding="utf-8")
        n_conv = len(data["conversations"])
        n_msg = sum(len(c["messages"]) for c in data["conversations"])
        click.echo(f"Wrote {n_conv} conversations ({n_msg} messages) to {out}")


# Commands of the other parts register here, one line each.
from studyapp.study.commands import study as _study_group  # noqa: E402
cli.add_command(_study_group)
from studyapp.privacy.commands import consent as _consent_command  # noqa: E402
from studyapp.privacy.commands import privacy as _privacy_group  # noqa: E402
cli.add_command(_privacy_group)
cli.add_command(_consent_command)
from studyapp.sync.commands import enroll as _enroll_command  # noqa: E402
from studyapp.sync.commands import sync as _sync_command  # noqa: E402
from studyapp.sync.commands import withdraw as _withdraw_command  # noqa: E402
cli.add_command(_enroll_command)
cli.add_command(_sync_command)
cli.add_command(_withdraw_command)
from studyapp.personalize.commands import pipeline as _pipeline_group  # noqa: E402
cli.add_command(_pipeline_group)
from studyapp.study.commands import judge as _judge_command  # noqa: E402
cli.add_command(_judge_command)
