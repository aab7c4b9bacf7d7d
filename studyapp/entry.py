"""The ``studyapp`` console script.

sqlite-utils imports pandas and numpy at import time whenever they are installed, only to map their types
when rows holding them are inserted, which the participant app never does. That costs the chat app about
0.4 s at every start. So sqlite-utils is imported first with both marked absent; the marks are then lifted,
and numpy stays importable for what needs it (spaCy, in the anonymizer's worker thread).
"""

from __future__ import annotations

import sys

OPTIONAL_IMPORTS = ("pandas", "numpy")


def import_sqlite_utils_lean() -> None:
    hidden = [name for name in OPTIONAL_IMPORTS if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        import sqlite_utils.db  # noqa: F401
    finally:
        for name in hidden:
            if sys.modules.get(name) is None:
                del sys.modules[name]


def main() -> None:
    import_sqlite_utils_lean()
    from studyapp.cli import cli

    cli()
