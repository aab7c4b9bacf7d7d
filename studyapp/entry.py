"""The ``studyapp`` console script.

sqlite-utils imports pandas at import time whenever it is installed (it comes with the ``analysis`` extra),
which costs the chat app about a third of a second at every start and buys it nothing: the participant app
never uses pandas. Marking pandas absent before anything imports sqlite-utils keeps it out of this process.
"""

from __future__ import annotations

import sys


def main() -> None:
    sys.modules.setdefault("pandas", None)  # type: ignore[arg-type]
    from studyapp.cli import cli

    cli()
