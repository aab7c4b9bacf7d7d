"""The ``studyapp`` console script.

sqlite-utils imports pandas and numpy at import time whenever they are installed, only to map their types
when rows holding them are inserted, which studyapp never does. That costs the chat app about 0.3 s at every
start. So sqlite-utils is imported with both marked absent (a ``None`` in ``sys.modules``: Python's documented
way to make an import fail), and the marks are lifted right after, whatever happened: numpy and pandas stay
importable for the rest of the process (spaCy needs numpy, in the anonymizer's worker thread).

Nothing here relies on how sqlite-utils imports them: should a version need either one, the lean import fails,
its half-imported modules are dropped and sqlite-utils is imported the ordinary way (slower, same behaviour).
"""

from __future__ import annotations

import sys

OPTIONAL_IMPORTS = ("pandas", "numpy")


def _forget(package: str) -> None:
    for name in [n for n in sys.modules if n == package or n.startswith(package + ".")]:
        del sys.modules[name]


def import_sqlite_utils_lean() -> None:
    """Import sqlite_utils.db without pandas and numpy; both stay importable afterwards."""
    if "sqlite_utils.db" in sys.modules:
        return
    hidden = [name for name in OPTIONAL_IMPORTS if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        import sqlite_utils.db
    except ImportError:
        _forget("sqlite_utils")  # this sqlite-utils needs them: import it normally below
    finally:
        for name in hidden:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]
    import sqlite_utils.db  # noqa: F401 - a no-op after the lean import; the fallback otherwise


def main() -> None:
    import_sqlite_utils_lean()
    from studyapp.cli import cli

    cli()
