"""Command line for the study part: ``studyapp study check FILE`` and ``studyapp judge --rerun``."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from sqlite_utils import Database

from studyapp.cli_options import data_dir_option
from studyapp.study.protocol import ProtocolError, builtin_protocol, load_protocol


@click.group()
def study() -> None:
    """Study protocol files: check one before handing it to participants."""


@study.command("check")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path), required=False)
@click.option("--builtin", is_flag=True, help="Check the built-in local study instead of a file.")
@click.option("--json", "as_json", is_flag=True, help="Print the parsed protocol as JSON.")
def check(file: Path | None, builtin: bool, as_json: bool) -> None:
    """Validate a study protocol FILE (TOML) and print a summary, or every problem found."""
    if file is None and not builtin:
        raise click.UsageError("give a protocol FILE, or --builtin for the built-in local study")
    try:
        protocol = builtin_protocol() if builtin else load_protocol(file)  # type: ignore[arg-type]
    except ProtocolError as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)
    if as_json:
        click.echo(protocol.to_json())
    else:
        click.echo(protocol.summary())
        click.echo("OK: the protocol is valid.")


def _open_db(ctx: click.Context, data_dir: Path | None) -> Database:
    # Imported when a command runs: studyapp.cli is the parent group, loaded first.
    from studyapp.cli import make_context, open_or_exit

    return open_or_exit(make_context(ctx, data_dir)).db


_data_dir = data_dir_option  # the shared option: flag, then the group's flag, then STUDYAPP_DATA_DIR


@study.command("status")
@_data_dir
@click.pass_context
def status(ctx: click.Context, data_dir: Path | None) -> None:
    """The study this install runs (enrolled or built-in), the study day and attributes waiting for review."""
    from studyapp.study.service import StudyService

    service = StudyService(_open_db(ctx, data_dir))
    if service.study.problem:
        click.echo(f"The enrolled study's protocol is not valid any more: {service.study.problem}\n"
                   "You are still enrolled, but nothing is collected and no comparison is offered until the app "
                   "receives a valid protocol (`studyapp sync` asks the server for one).", err=True)
    plan = service.labeling_plan()
    click.echo(service.status_line())
    click.echo(f"  enrolled: {'yes, as ' + str(service.study.record.participant_id) if service.study.record else 'no'}")
    click.echo(f"  attributes without your label: {plan.unlabeled}; to review now: {len(plan.due)}")


@study.command("comparisons")
@_data_dir
@click.option("--json", "as_json", is_flag=True, help="One JSON object per comparison, as the study would receive it.")
@click.pass_context
def comparisons_command(ctx: click.Context, data_dir: Path | None, as_json: bool) -> None:
    """Your comparisons: when, your rating (5 = the personalized answer much better), the judge's ratings."""
    import json

    from studyapp.privacy.intake import comparison_context
    from studyapp.privacy.records import comparison_records
    from studyapp.store.comparisons import ComparisonStore

    db = _open_db(ctx, data_dir)
    store = ComparisonStore(db)
    records = store.list()
    for record in records:
        verdicts = [v.rating for v in store.verdicts(record.id) if v.rating is not None]
        if as_json:
            # The same record the study receives (before anonymization), context included.
            [(_, event)] = comparison_records(record, [], comparison_context(db, record))
            click.echo(json.dumps(event | {"judge_ratings": verdicts}, ensure_ascii=False))
            continue
        rating = "skipped" if record.skipped else (str(record.rating) if record.rating else record.status)
        judge = f"{sum(verdicts) / len(verdicts):.1f} ({len(verdicts)})" if verdicts else "-"
        click.echo(f"{record.created_at[:16].replace('T', ' ')}  {record.id[:8]}  rating {rating:<10} "
                   f"chosen {record.chosen or '-':<12} judge {judge:<10} {record.prompt[:40]!r}")
    if not as_json:
        click.echo(f"{len(records)} comparisons.")


@click.command("judge")
@_data_dir
@click.option("--rerun", is_flag=True,
              help="Judge every rated or skipped comparison again, not only those not yet judged.")
@click.option("--model", "models", multiple=True,
              help="Judge with this model instead of the study's judges ('local' or a model name; repeatable).")
@click.option("--base-url", help="OpenAI-compatible endpoint for --model (default: your configured one).")
@click.pass_context
def judge(ctx: click.Context, data_dir: Path | None, rerun: bool, models: tuple[str, ...],
          base_url: str | None) -> None:
    """Let the LLM judge rate rated and skipped comparisons (in both orders); verdicts go to the database.

    Researchers testing a new judge: studyapp judge --rerun --model NAME --base-url URL
    """
    import asyncio
    from dataclasses import replace

    from studyapp.cli import make_context, open_or_exit
    from studyapp.llm.base import LLMError
    from studyapp.llm.factory import make_model
    from studyapp.store.comparisons import ComparisonRecord, ComparisonStore
    from studyapp.study.current import current_study
    from studyapp.study.judge import Judge, Verdict
    from studyapp.study.models import role_settings

    app_ctx = open_or_exit(make_context(ctx, data_dir))
    base = app_ctx.model_settings()
    if models:
        settings = [replace(base, model=name, base_url=base_url or base.base_url,
                            via_study=None if base_url else base.via_study, role="judge") for name in models]
    else:
        # The study's judges, each reached the way the protocol says (through the study's server, or directly).
        study = current_study(app_ctx.db)
        settings = [role_settings(study, "judge", spec, base) for spec in study.protocol.judges]
        if not settings:
            click.echo("The study has no judge models (models.judge = []); give one with --model.")
            return
    try:
        chat_models = [make_model(s) for s in settings]
    except LLMError as exc:
        raise click.ClickException(str(exc)) from exc
    store = ComparisonStore(app_ctx.db)
    judge_ = Judge(chat_models, store)

    def done(comparison: ComparisonRecord, verdicts: list[Verdict]) -> None:
        ratings = ", ".join(f"{v.judge_model} [{v.personalized_side}]: {v.rating if v.rating else 'unreadable'}"
                            for v in verdicts)
        participant = "skipped" if comparison.skipped else comparison.rating
        click.echo(f"{comparison.id}  participant {participant}  judge {ratings or '(no verdict)'}")

    async def run() -> int:
        try:
            return await judge_.judge_pending(rerun=rerun, on_done=done)
        finally:
            for model in chat_models:
                await model.aclose()

    count = asyncio.run(run())
    click.echo(f"{count} verdicts stored.")
    if judge_.failures:
        click.echo(f"{len(judge_.failures)} judge calls failed (nothing stored for them; run again later):", err=True)
        for failure in sorted(set(judge_.failures)):
            click.echo(f"  {failure}", err=True)
        sys.exit(1)
