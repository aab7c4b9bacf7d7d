"""The wheel carries everything a non-editable install needs.

A wheel is built from a copy of the source (so a stale build/ folder in the work tree cannot hide a
missing file), installed with ``pip install --no-deps --target DIR``, and exercised in a child
process whose PYTHONPATH puts DIR before the editable install and whose working directory is not
the repository: every ``studyapp`` module it loads must come from DIR. Dependencies come from the
test environment, so nothing needs resolving offline.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import tomllib
import zipfile
from pathlib import Path

import pytest
from sqlite_utils import Database

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "studyapp"
MIGRATIONS = ROOT / "migrations"
SKIP_PARTS = {"__pycache__"}
SKIP_SUFFIXES = {".pyc", ".pyo"}


def _source_files(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.rglob("*")
        if p.is_file() and not SKIP_PARTS.intersection(p.parts) and p.suffix not in SKIP_SUFFIXES
    )


def _expected_wheel_names() -> set[str]:
    """Every file of studyapp/ and migrations/ as it must appear in the wheel."""
    names = {p.relative_to(ROOT).as_posix() for p in _source_files(SOURCE)}
    # migrations/ installs as studyapp.migrations (pyproject's package-dir).
    names |= {"studyapp/migrations/" + p.relative_to(MIGRATIONS).as_posix()
              for p in _source_files(MIGRATIONS)}
    return names


def _run(args: list[str], *, cwd: Path, env: dict[str, str] | None = None,
         timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def _build_isolation_flag() -> list[str]:
    """Build without isolation when the running environment already has a backend that can make wheels.

    setuptools >= 70.1 builds wheels by itself; older ones need the ``wheel`` package. Otherwise pip
    fetches the backend pyproject asks for (from its cache after the first time).
    """
    from importlib import metadata

    try:
        version = tuple(int(x) for x in metadata.version("setuptools").split(".")[:2])
    except metadata.PackageNotFoundError:
        return []
    if version >= (70, 1):
        return ["--no-build-isolation"]
    try:
        metadata.version("wheel")
    except metadata.PackageNotFoundError:
        return []
    return ["--no-build-isolation"] if version >= (68, 0) else []


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("src")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build")
    shutil.copytree(SOURCE, src / "studyapp", ignore=ignore)
    shutil.copytree(MIGRATIONS, src / "migrations", ignore=ignore)
    shutil.copy2(ROOT / "pyproject.toml", src / "pyproject.toml")
    shutil.copy2(ROOT / "README.md", src / "README.md")
    out = tmp_path_factory.mktemp("dist")
    result = _run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--quiet", "-w", str(out),
                   *_build_isolation_flag()], cwd=src)
    assert result.returncode == 0, f"building the wheel failed:\n{result.stdout}\n{result.stderr}"
    wheels = list(out.glob("studyapp-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("site")
    result = _run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-compile", "--quiet",
                   "--target", str(target), str(wheel)], cwd=target)
    assert result.returncode == 0, f"installing the wheel failed:\n{result.stdout}\n{result.stderr}"
    return target


def _env(target: Path, data_dir: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(target)  # before site-packages, so before the editable install's finder
    env.pop("PYTHONSAFEPATH", None)
    env["STUDYAPP_DATA_DIR"] = str(data_dir) if data_dir else ""
    env["STUDYAPP_SERVER_DB"] = ""
    return env


# Appended to every child script: each studyapp module it loaded must come from the installed copy.
_CHECK_ORIGIN = """
import sys as _sys
from pathlib import Path as _Path
_outside = sorted(
    name for name, mod in list(_sys.modules.items())
    if (name == "studyapp" or name.startswith("studyapp.") or name == "tests" or name.startswith("tests."))
    and not _Path(getattr(mod, "__file__", None) or "/nonexistent").resolve().is_relative_to(_TARGET)
)
assert not _outside, f"loaded from outside the installed copy: {_outside}"
"""


def _python(target: Path, body: str, cwd: Path) -> dict[str, object]:
    """Run ``body`` against the installed copy; it must set ``result`` (JSON-able), which is returned."""
    script = (f"from pathlib import Path\n_TARGET = Path({str(target.resolve())!r})\n"
              + textwrap.dedent(body) + _CHECK_ORIGIN
              + "\nimport json\nprint('RESULT ' + json.dumps(result))\n")
    proc = _run([sys.executable, "-c", script], cwd=cwd, env=_env(target, cwd / "data"))
    assert proc.returncode == 0, f"child failed:\n{proc.stdout}\n{proc.stderr}"
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line.removeprefix("RESULT "))


def test_wheel_holds_every_source_file(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = sorted(_expected_wheel_names() - names)
    assert not missing, f"files missing from the wheel (pyproject packages / package-data): {missing}"
    assert {"studyapp/migrations/client.py", "studyapp/migrations/server.py"} <= names
    # Nothing installs as a generic top-level package, and tests stay out of the wheel.
    tops = {n.split("/", 1)[0] for n in names if not n.split("/", 1)[0].endswith(".dist-info")}
    assert tops == {"studyapp"}, tops


def test_wheel_declares_both_console_scripts(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        info = next(n for n in zf.namelist() if n.endswith(".dist-info/entry_points.txt"))
        text = zf.read(info).decode()
        metadata = zf.read(info.replace("entry_points.txt", "METADATA")).decode()
    assert "studyapp = studyapp.entry:main" in text
    assert "studyapp-server = studyapp.server.cli:cli" in text
    extras = {ln.split(":", 1)[1].strip() for ln in metadata.splitlines() if ln.startswith("Provides-Extra:")}
    assert {"local", "server", "all"} <= extras, extras


def test_installed_copy_migrates_a_new_client_database(installed: Path, tmp_path: Path) -> None:
    from studyapp.migrations.client import migrations as source_migrations

    result = _python(installed, """
        import studyapp
        from studyapp.migrations.client import migrations
        from studyapp.store.db import open_database, pending_migrations, schema_version
        assert Path(studyapp.__file__).resolve().is_relative_to(_TARGET), studyapp.__file__
        db = open_database(Path("fresh.db"))
        result = {
            "version": schema_version(db),
            "pending": pending_migrations(db),
            "applied": [m.name for m in migrations.applied(db)],
            "tables": sorted(db.table_names()),
        }
    """, cwd=tmp_path)
    expected = [m.name for m in source_migrations.pending(_blank_db())]
    assert result["applied"] == expected
    assert result["version"] == expected[-1]
    assert result["pending"] == []
    assert "messages" in result["tables"]


def test_installed_copy_migrates_a_new_server_database(installed: Path, tmp_path: Path) -> None:
    from studyapp.migrations.server import migrations as source_migrations

    result = _python(installed, """
        from sqlite_utils import Database
        from studyapp.migrations.server import migrations
        from studyapp.server.storage import Storage
        Storage(Path("server.db"))
        db = Database(Path("server.db"))
        result = {"applied": [m.name for m in migrations.applied(db)],
                  "pending": [m.name for m in migrations.pending(db)]}
    """, cwd=tmp_path)
    assert result["applied"] == [m.name for m in source_migrations.pending(_blank_db())]
    assert result["applied"], "the server migration set is empty"
    assert result["pending"] == []


def test_installed_copy_imports_every_module_and_finds_its_data(installed: Path, tmp_path: Path) -> None:
    """Every module imports from the installed copy (no repo-relative paths, no imports of tests/),
    and every file the code reads as package data or Textual CSS is there."""
    result = _python(installed, """
        import importlib
        import inspect
        import pkgutil
        from importlib import resources
        import studyapp
        modules = []
        for info in pkgutil.walk_packages(studyapp.__path__, "studyapp."):
            importlib.import_module(info.name)
            modules.append(info.name)
        from studyapp.personalize import templates
        from studyapp.study import judge, protocol
        prompts = sorted(p.name for p in resources.files("studyapp.personalize.prompts").iterdir()
                         if p.name.endswith(".txt"))
        for name in prompts:
            templates.load_template(name.removesuffix(".txt"))
        judge.judge_template()
        builtin = protocol.builtin_protocol()
        css_missing = []
        css_checked = 0
        from textual.dom import DOMNode
        for name in modules:
            mod = importlib.import_module(name)
            for obj in vars(mod).values():
                if inspect.isclass(obj) and issubclass(obj, DOMNode) and obj.__module__ == name:
                    css = getattr(obj, "CSS_PATH", None)  # App and Screen only
                    paths = css if isinstance(css, list) else [css] if css else []
                    base = Path(inspect.getfile(obj)).parent
                    css_checked += len(paths)
                    css_missing += [f"{name}.{obj.__name__}: {p}" for p in paths if not (base / p).is_file()]
        result = {"modules": modules, "prompts": prompts, "css_missing": css_missing,
                  "css_checked": css_checked, "builtin": builtin.id}
    """, cwd=tmp_path)
    source_modules = {
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for p in SOURCE.rglob("*.py") if "__pycache__" not in p.parts
    } | {f"studyapp.migrations.{p.stem}" for p in MIGRATIONS.glob("*.py") if p.stem != "__init__"}
    source_modules.discard("studyapp")
    source_modules.add("studyapp.migrations")
    assert set(result["modules"]) == source_modules
    assert result["css_missing"] == []
    assert result["css_checked"] >= len(list((SOURCE / "tui" / "styles").glob("*.tcss")))
    assert result["prompts"] == sorted(p.name for p in (SOURCE / "personalize" / "prompts").glob("*.txt"))
    assert result["builtin"]


def test_installed_console_scripts_run(installed: Path, tmp_path: Path) -> None:
    scripts = installed / "bin"
    env = _env(installed, tmp_path / "data")
    for name in ("studyapp", "studyapp-server"):
        proc = _run([str(scripts / name), "--help"], cwd=tmp_path, env=env)
        assert proc.returncode == 0, proc.stderr
        assert "Usage:" in proc.stdout
    # doctor opens (and so migrates) the database through the installed entry point.
    proc = _run([str(scripts / "studyapp"), "doctor", "--no-model-check", "--data-dir", str(tmp_path / "dd")],
                cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    from studyapp.migrations.client import migrations as source_migrations

    last = [m.name for m in source_migrations.pending(_blank_db())][-1]
    assert f"schema version:  {last}" in proc.stdout
    assert (tmp_path / "dd" / "studyapp.db").is_file()


def test_pyproject_lists_every_subpackage() -> None:
    """pyproject lists packages explicitly (migrations/ is mapped into studyapp), so a new subpackage
    would silently miss the wheel unless it is added there."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    listed = set(config["packages"])
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in SOURCE.rglob("__init__.py")
               if "__pycache__" not in p.parts}
    on_disk.add("studyapp.migrations")
    missing = sorted(on_disk - listed)
    assert not missing, f"add to [tool.setuptools] packages in pyproject.toml: {missing}"
    stale = sorted(listed - on_disk)
    assert not stale, f"listed in pyproject.toml but not a package on disk: {stale}"
    assert config["package-dir"]["studyapp.migrations"] == "migrations"


def test_every_data_folder_is_a_package() -> None:
    """setuptools ships package data only from listed packages: a data file in a folder without
    __init__.py would be left out."""
    orphans = sorted(
        p.relative_to(ROOT).as_posix() for p in _source_files(SOURCE)
        if not (p.parent / "__init__.py").is_file()
    )
    assert not orphans, f"files in folders without __init__.py (not shipped): {orphans}"


def _blank_db() -> Database:
    return Database(memory=True)
