"""Command line for the study part: ``studyapp study check FILE`` and ``studyapp judge --rerun``."""

from __future__ import annotations

import sys
from pathlib import Path

import click

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
