"""``studyapp ask``: one turn from the command line, for scripts and for checking an install without a screen.

The turn runs through the same ``TurnController`` as the chat screen and lands in the same database, in a new
conversation with memory off: nothing is extracted from it and no attribute shapes it, since selection,
comparisons and attribute labels are questions that need the chat screen (a participant must see them).
"""

from __future__ import annotations

import asyncio
import sys
from contextlib import aclosing
from pathlib import Path

import click

from studyapp.chat import ReplyDelta, ReplyFinished, UserSaved
from studyapp.cli_options import data_dir_option
from studyapp.context import AppContext
from studyapp.turns import ComparisonOffered


async def ask_once(app_ctx: AppContext, text: str) -> tuple[str, str]:
    """Run one memory-off turn and echo the reply as it streams; returns (conversation id, reply status).

    A reply that failed has status ``error`` and its message is raised as a ``click.ClickException``."""
    from studyapp.tui.services import Services

    services = Services(app_ctx, recover=False)  # a chat app may be running beside this command
    conversation_id, status, error = "", "", None
    try:
        async with aclosing(services.turns.run(None, text, memory_enabled=False)) as events:
            async for event in events:
                if isinstance(event, UserSaved):
                    conversation_id = event.conversation.id
                elif isinstance(event, ReplyDelta):
                    click.echo(event.text, nl=False)
                elif isinstance(event, ReplyFinished):
                    status, error = event.message.status, event.message.error
                elif isinstance(event, ComparisonOffered):  # pragma: no cover - memory off never selects
                    raise RuntimeError("a memory-off turn was offered as a comparison")
    finally:
        await services.chat.aclose()
    click.echo("")  # the reply's own text may not end its line
    if status == "error":
        raise click.ClickException(f"The model did not answer: {error}. `studyapp doctor` checks the model settings.")
    return conversation_id, status


@click.command()
@data_dir_option
@click.argument("text")
@click.pass_context
def ask(ctx: click.Context, data_dir: Path | None, text: str) -> None:
    """Send TEXT as a new conversation (memory off) and print the reply as it arrives.

    The conversation is kept like any other and opens in the chat app. Use - to read TEXT from standard input.
    """
    from studyapp.cli import make_context, open_or_exit

    if text == "-":
        text = sys.stdin.read()
    if not text.strip():
        raise click.UsageError("TEXT is empty: give the message to send.")
    app_ctx = open_or_exit(make_context(ctx, data_dir))
    try:
        asyncio.run(ask_once(app_ctx, text.strip()))
    except KeyboardInterrupt:
        click.echo("\nStopped: the reply so far is kept in the conversation.", err=True)
        sys.exit(130)
