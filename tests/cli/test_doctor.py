"""``studyapp doctor`` answers without loading the heavy parts: Presidio, spaCy and llama.cpp wait for ``--full``,
and every line of the report is still there. Each run is a fresh process, so ``sys.modules`` tells what loaded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from studyapp.store.db import open_database
from studyapp.study.current import save_enrollment
from studyapp.study.protocol import load_protocol

ROOT = Path(__file__).parents[2]
HEAVY = ("presidio_analyzer", "presidio_anonymizer", "spacy", "llama_cpp", "httpx")

DOCTOR = """
import json, sys
from studyapp import entry
args, heavy_names = json.loads(sys.argv[1]), set(json.loads(sys.argv[2]))
sys.argv = ["studyapp", "doctor", *args]
try:
    entry.main()
except SystemExit as exc:
    code = exc.code
heavy = sorted({name.split(".")[0] for name in sys.modules} & heavy_names)
print("EXIT", code, "LOADED", json.dumps(heavy))
"""


def doctor(*args: str) -> tuple[str, int, list[str]]:
    """The report, the exit status, and which heavy packages the process imported."""
    result = subprocess.run([sys.executable, "-c", DOCTOR, json.dumps(args), json.dumps(HEAVY)], capture_output=True,
                            text=True, timeout=300, cwd=ROOT, env={**os.environ})
    *report, last = result.stdout.strip().splitlines()
    assert last.startswith("EXIT "), result.stdout[-2000:] + result.stderr[-2000:]
    _, code, _, loaded = last.split(" ", 3)
    return "\n".join(report), int(code), json.loads(loaded)


@pytest.fixture
def enrolled_dir(tmp_path: Path) -> Path:
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o700)
    db = open_database(data_dir / "studyapp.db")
    save_enrollment(db, load_protocol(ROOT / "examples" / "study.toml"), participant_id="p-1",
                    server_url="http://127.0.0.1:9")
    db.close()
    return data_dir


def test_doctor_reports_everything_without_loading_the_anonymizer_or_the_embedded_model(enrolled_dir: Path) -> None:
    report, code, loaded = doctor("--data-dir", str(enrolled_dir))
    assert loaded == [], f"doctor without --full imported {loaded}"
    assert code == 0, report
    labels = [line.split(":")[0] for line in report.splitlines() if line and not line.startswith(" ")]
    assert labels == ["data dir", "database", "permissions", "schema version", "history", "model", "parameters",
                      "keyring", "participant token", "study", "collection", "anonymizer", "role models",
                      "study models", "sync", "model answers"]
    assert "anonymizer:      installed (not loaded; `studyapp doctor --full` checks it)" in report
    assert "collection:      Nothing is collected until you agree" in report
    assert "model answers:   installed (not loaded; `studyapp doctor --full` runs it)" in report


def test_doctor_full_loads_the_anonymizer_and_says_what_it_recognizes(enrolled_dir: Path) -> None:
    report, _, loaded = doctor("--full", "--no-model-check", "--data-dir", str(enrolled_dir))
    assert "presidio_analyzer" in loaded and "spacy" in loaded
    [anonymizer] = [line for line in report.splitlines() if line.startswith("anonymizer:")]
    assert "recognize" in anonymizer or "pattern recognizers" in anonymizer, anonymizer
    assert "not loaded" not in report

