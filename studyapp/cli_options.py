"""The ``--data-dir`` option every studyapp command shares, and its one precedence.

A command's own ``--data-dir`` wins over the group's (``studyapp --data-dir DIR COMMAND``), either flag wins
over ``STUDYAPP_DATA_DIR``, and the variable wins over the platform's user data dir. The option has no click
``envvar`` on purpose: click would fill the subcommand's value from the variable and so beat a group flag.
The group stores its flags in ``ctx.obj`` (``CliOptions``); every subcommand finds them there.

Imported by the console script at start: click, the standard library and studyapp.paths only.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import click

from studyapp import paths

F = TypeVar("F", bound=Callable[..., Any])

DataDirSource = Literal["flag", "group", "env", "default"]


@dataclass
class CliOptions:
    """The top-level group's flags, kept unresolved in ``ctx.obj`` for the subcommands."""

    data_dir: Path | None = None
    model_override: str | None = None
    base_url_override: str | None = None


@dataclass(frozen=True)
class DataDirChoice:
    path: Path | None  # None: the platform's user data dir
    source: DataDirSource

    @property
    def explicit(self) -> bool:
        """Whether someone chose the directory (a flag or the variable), rather than falling to the default."""
        return self.source != "default"


def _option(help_text: str, *, must_exist: bool = False,
            callback: Callable[[click.Context, click.Parameter, Any], Any] | None = None) -> Callable[[F], F]:
    # The one definition of --data-dir. No envvar: see the module docstring.
    return click.option("--data-dir", "data_dir", type=click.Path(file_okay=False, exists=must_exist, path_type=Path),
                        default=None, callback=callback, help=help_text)


def data_dir_option(func: F) -> F:
    """``--data-dir`` for a command; resolve the value with ``resolve_data_dir``."""
    return _option(f"Where studyapp keeps its database [env: {paths.ENV_DATA_DIR}; default: the user data dir].")(func)


def _flag_only(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    choice = resolve_data_dir(ctx, value)
    return choice.path if choice.source in ("flag", "group") else None


def read_only_data_dir_option(func: F) -> F:
    """``--data-dir`` for commands that only read a participant's data when told to (``studyapp pipeline``).

    The same option and precedence between the two flags, but the value is None unless a flag named the
    directory: STUDYAPP_DATA_DIR or the default never feed someone's memory into a researcher's run unasked.
    """
    return _option("Read the participant's memory from here when the input has none (never written; "
                   f"{paths.ENV_DATA_DIR} is not used).", must_exist=True, callback=_flag_only)(func)


def resolve_data_dir(ctx: click.Context, data_dir: Path | None) -> DataDirChoice:
    """The data dir for a command given its own ``--data-dir`` value: command flag, group flag, env, default."""
    if data_dir is not None:
        return DataDirChoice(data_dir, "flag")
    options = ctx.find_object(CliOptions)
    if options is not None and options.data_dir is not None:
        return DataDirChoice(options.data_dir, "group")
    env = os.environ.get(paths.ENV_DATA_DIR)
    if env:
        return DataDirChoice(Path(env), "env")
    return DataDirChoice(None, "default")
