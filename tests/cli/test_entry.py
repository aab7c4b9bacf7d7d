"""The console script's lean start: sqlite-utils without numpy/pandas, and numpy importable afterwards."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]


def run_python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT,
                          env={**os.environ, **env})


def test_numpy_imports_in_the_process_after_the_console_script_ran(tmp_path: Path) -> None:
    # The whole start-up path of `studyapp doctor`, then a numpy user in the same process.
    code = f"""
import sys
from studyapp import entry
sys.argv = ["studyapp", "doctor", "--no-model-check", "--data-dir", {str(tmp_path)!r}]
before = "numpy" in sys.modules
try:
    entry.main()
except SystemExit as exc:
    code = exc.code
import numpy
print("numpy-before", before, "doctor", code, "sum", int(numpy.arange(4).sum()), numpy.__name__)
"""
    result = run_python(code)
    last = result.stdout.strip().splitlines()[-1]
    assert last == "numpy-before False doctor 0 sum 6 numpy", result.stdout[-2000:] + result.stderr[-2000:]
    assert "sqlite_utils" not in result.stderr


def test_a_sqlite_utils_that_needs_numpy_is_imported_the_ordinary_way(tmp_path: Path) -> None:
    # A stand-in sqlite_utils whose import fails without numpy: the lean import must fall back, not break.
    fake = tmp_path / "sqlite_utils"
    fake.mkdir()
    (fake / "__init__.py").write_text("")
    (fake / "db.py").write_text("import numpy\nNUMPY = numpy.__name__\n")
    code = ("from studyapp.entry import import_sqlite_utils_lean; import_sqlite_utils_lean(); "
            "import sqlite_utils.db as d; print(d.NUMPY); print(d.__file__)")
    result = run_python(code, PYTHONPATH=str(tmp_path))
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines() == ["numpy", str(fake / "db.py")]
