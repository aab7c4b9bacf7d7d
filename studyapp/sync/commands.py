"""Participant commands for the study server: ``studyapp enroll URL CODE``, ``studyapp sync``, ``studyapp withdraw``.

Each takes ``--data-dir`` like every studyapp command. Errors print a message naming what went
wrong and what to do (never a traceback); events stay in the outbox whatever happens.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import click

from studyapp.cli_options import data_dir_option
from studyapp.sync.client import SyncError


def _context(ctx: click.Context, data_dir: Path | None) -> Any:
    # Imported when a command runs: studyapp.cli is the parent group, loaded first.
    from studyapp.cli import make_context, open_or_exit

    return open_or_exit(make_context(ctx, data_dir))


@click.command()
@data_dir_option
@click.argument("url")
@click.argument("code")
@click.option("--store-token-in-file", is_flag=True,
              help="Keep the participant token in a file only you can read (in your user config folder) instead "
                   "of the system keyring: for computers without a keyring (headless Linux, WSL, containers).")
@click.pass_context
def enroll(ctx: click.Context, data_dir: Path | None, url: str, code: str, store_token_in_file: bool) -> None:
    """Join the study served at URL with the one-time CODE from the research team."""
    from studyapp.sync.enroll import enroll as do_enroll

    app_ctx = _context(ctx, data_dir)
    try:
        result = asyncio.run(do_enroll(app_ctx.db, url, code, store_in_file=store_token_in_file))
    except SyncError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Enrolled in {result.title!r} ({result.study_id}) as participant {result.participant_id}.")
    where = (f"in a file only you can read ({result.token_file}); `studyapp withdraw` deletes it"
             if result.token_file else "in the system keyring")
    click.echo(f"Your token is {where}. Next: agree to the consent document (`studyapp consent`).")
    _adopt_study_assistant(app_ctx)


def _adopt_study_assistant(app_ctx: Any) -> None:
    """A study whose server provides the assistant: the chat uses it from now on (as joining in the app does)."""
    from studyapp.study.current import current_study
    from studyapp.study.models import ADOPTED_KEY, adopted_marker, study_assistant

    study = current_study(app_ctx.db)
    chosen = study_assistant(study, app_ctx.model_settings(), app_ctx.settings.get(ADOPTED_KEY), only_via_study=True)
    if chosen is not None:
        app_ctx.save_model_settings(chosen)
        app_ctx.settings.set(ADOPTED_KEY, adopted_marker(study))
        click.echo(f"The chat now uses {chosen.describe()}: no API key is needed for it.")


@click.command()
@data_dir_option
@click.option("--batch-size", type=click.IntRange(1, 1000), default=200, show_default=True,
              help="Events per request.")
@click.pass_context
def sync(ctx: click.Context, data_dir: Path | None, batch_size: int) -> None:
    """Upload the approved events of the outbox to the study server."""
    from studyapp.sync.client import run_sync, sync_status

    app_ctx = _context(ctx, data_dir)
    status = sync_status(app_ctx.db)
    if status.study_id is None and not status.withdrawal_pending:
        raise click.ClickException("This install is not enrolled in a study: run `studyapp enroll URL CODE` "
                                   "with the code from the research team.")
    total = status.ready
    # click draws the bar only on a terminal; elsewhere it prints the label once.
    with click.progressbar(length=max(total, 1), label="Uploading", file=sys.stderr, show_pos=True) as bar:
        last = 0

        def progress(done: int, of: int) -> None:
            nonlocal last
            bar.length = max(of, 1)
            bar.update(done - last)
            last = done

        try:
            report = asyncio.run(run_sync(app_ctx.db, progress=progress, batch_size=batch_size))
        except SyncError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"Sync done: {report}.")
    status = sync_status(app_ctx.db)
    if status.waiting_review:
        click.echo(f"{status.waiting_review} events wait for your review before they can be sent.")


@click.command()
@data_dir_option
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def withdraw(ctx: click.Context, data_dir: Path | None, yes: bool) -> None:
    """Leave the study: stop sending, empty the outbox and have the server delete all your records."""
    from studyapp.sync.withdraw import begin_withdrawal, finish_withdrawal

    app_ctx = _context(ctx, data_dir)
    if not yes:
        click.confirm("Withdraw from the study? The server deletes everything you sent; this cannot be undone.",
                      abort=True)
    try:
        marker = begin_withdrawal(app_ctx.db)
        click.echo(f"Withdrawn here: nothing more is sent for study {marker['study_id']!r}. Asking the server "
                   "to delete your records...")
        result = asyncio.run(finish_withdrawal(app_ctx.db))
    except SyncError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"The server confirmed: every record was deleted at {result.confirmed_at}; only a note that "
               "you withdrew remains.")
