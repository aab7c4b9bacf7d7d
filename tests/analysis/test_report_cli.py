"""`studyapp-server report`: on the example export (once studyapp.analysis.measures is in the tree), and its
wiring with stand-ins for load and measures (always)."""

from __future__ import annotations

import html
import re
import subprocess
import sys
import types
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

pytest.importorskip("matplotlib")

from studyapp.analysis.model import Analysis, Chart, Figure, NotAvailable, Section, Table
from studyapp.analysis.report import md_text, n_line
from studyapp.server.cli import cli

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "export"


def items(analysis: Analysis, kind: type) -> list:
    return [i for s in analysis.sections for i in s.items if isinstance(i, kind)]


def figure_block(text: str, key: str) -> str:
    match = re.search(rf'<div class="figure" id="{re.escape(html.escape(key))}">(.*?)</div></div>', text, re.S)
    assert match, key
    return match.group(1)


# -- on the example export, with the real analysis ---------------------------------------------------------------


@pytest.fixture(scope="module")
def example_analysis() -> Analysis:
    pytest.importorskip("studyapp.analysis.measures")
    from studyapp.analysis.load import load_export
    from studyapp.analysis.measures import analyze

    return analyze(load_export(EXAMPLE), seed=0)


def test_report_command_writes_one_self_contained_html_file(example_analysis: Analysis, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    result = CliRunner().invoke(cli, ["report", str(EXAMPLE), "--out", str(out), "--seed", "0"])
    assert result.exit_code == 0, result.output
    assert f"Report: {out}" in result.output
    text = out.read_text(encoding="utf-8")
    # One file: beside it only the tables' CSV folder (and none when there is no table).
    assert {p.name for p in tmp_path.iterdir()} <= {"report.html", "report_tables"}
    charts = [c for c in items(example_analysis, Chart) if not c.frame.empty]
    assert charts, "the example export should give at least one chart"
    assert text.count('src="data:image/png;base64,') == len(charts)
    assert "http://" not in text and "https://" not in text
    for figure in items(example_analysis, Figure):
        assert n_line(figure.n_items, figure.n_participants) in figure_block(text, figure.key), figure.key
    for na in items(example_analysis, NotAvailable):
        assert html.escape(str(na)) in text
    for table in items(example_analysis, Table):
        csv = tmp_path / "report_tables" / f"{table.key}.csv"
        assert csv.exists(), table.key
        assert len(pd.read_csv(csv)) == len(table.frame), table.key
        assert str(csv) in result.output


def test_report_command_writes_markdown_with_png_charts(example_analysis: Analysis, tmp_path: Path) -> None:
    out = tmp_path / "study.md"
    result = CliRunner().invoke(cli, ["report", str(EXAMPLE), "--out", str(out), "--format", "md"])
    assert result.exit_code == 0, result.output
    text = out.read_text(encoding="utf-8")
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert len(links) == len([c for c in items(example_analysis, Chart) if not c.frame.empty])
    for link in links:
        assert (tmp_path / link).read_bytes().startswith(b"\x89PNG"), link
    lines = text.splitlines()
    for figure in items(example_analysis, Figure):
        mine = [line for line in lines if line.startswith(f"- **{md_text(figure.label)}**:")]
        assert mine and any(n_line(figure.n_items, figure.n_participants) in line for line in mine), figure.key
    for table in items(example_analysis, Table):
        assert (tmp_path / "study_tables" / f"{table.key}.csv").exists(), table.key


def test_report_command_on_a_folder_that_is_no_export_says_why(tmp_path: Path) -> None:
    pytest.importorskip("studyapp.analysis.measures")
    result = CliRunner().invoke(cli, ["report", str(tmp_path / "missing"), "--out", str(tmp_path / "r.html")])
    assert result.exit_code == 1
    assert result.output.startswith("Error: ")
    assert "Traceback" not in result.output
    assert not (tmp_path / "r.html").exists()


# -- the command's wiring, with stand-ins for load and measures ---------------------------------------------------


class FakeExportError(Exception):
    pass


@pytest.fixture
def stand_ins(monkeypatch: pytest.MonkeyPatch) -> dict:
    calls: dict = {}

    def load_export(path: Path) -> object:
        if not Path(path).is_dir():
            raise FakeExportError(f"{path} is not an export folder (no participants file)")
        calls["path"] = Path(path)
        return "the export"

    def analyze(export: object, *, seed: int = 0, bootstrap: int = 2000) -> Analysis:
        calls["analyze"] = (export, seed)
        frame = pd.DataFrame({"participant_id": ["<script>p</script>"], "rated": [2]})
        return Analysis("Stand-in", [Section("s", "Preference", [
            Figure("mean_rating", "Mean rating", 3.5, 2, 1, (3.0, 4.0)),
            Table("per_participant", "Per participant", frame, 2, 1),
            Chart("ratings", "Ratings", "hist", pd.DataFrame({"rating": [3, 4]}), "rating", ("rating",), n_items=2,
                  n_participants=1),
        ])], source=str(calls["path"]))

    load = types.ModuleType("studyapp.analysis.load")
    load.ExportError, load.load_export = FakeExportError, load_export  # type: ignore[attr-defined]
    measures = types.ModuleType("studyapp.analysis.measures")
    measures.analyze = analyze  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "studyapp.analysis.load", load)
    monkeypatch.setitem(sys.modules, "studyapp.analysis.measures", measures)
    return calls


def test_report_command_loads_analyzes_and_prints_what_it_wrote(stand_ins: dict, tmp_path: Path) -> None:
    out = tmp_path / "r" / "study.md"  # the format follows the suffix; missing folders are made
    result = CliRunner().invoke(cli, ["report", str(EXAMPLE), "--out", str(out), "--seed", "7"])
    assert result.exit_code == 0, result.output
    assert stand_ins["path"] == EXAMPLE
    assert stand_ins["analyze"] == ("the export", 7)
    csv, png = tmp_path / "r" / "study_tables" / "per_participant.csv", tmp_path / "r" / "study_charts" / "ratings.png"
    assert result.output.splitlines() == [f"Report: {out}", "Tables (1 CSV files):", f"  {csv}",
                                          "Charts (1 PNG files):", f"  {png}"]
    assert "n = 2 items, 1 participant." in out.read_text(encoding="utf-8")
    assert png.exists() and csv.exists()


def test_report_command_turns_an_export_error_into_a_message(stand_ins: dict, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["report", str(tmp_path / "nothing"), "--out", str(tmp_path / "r.html")])
    assert result.exit_code == 1
    assert result.output == f"Error: {tmp_path / 'nothing'} is not an export folder (no participants file)\n"
    assert "analyze" not in stand_ins
    assert list(tmp_path.iterdir()) == []


def test_report_command_says_when_it_cannot_write(stand_ins: dict, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x", encoding="utf-8")
    result = CliRunner().invoke(cli, ["report", str(EXAMPLE), "--out", str(blocker / "r.html")])
    assert result.exit_code == 1
    assert result.output.startswith("Error: cannot write the report:")
    assert "Traceback" not in result.output


def test_the_server_command_line_starts_without_the_analysis() -> None:
    code = ("import sys, studyapp.server.cli; "
            "print(sorted(m for m in sys.modules if m.startswith(('matplotlib', 'studyapp.analysis', 'scipy'))))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60,
                            cwd=Path(__file__).resolve().parents[2])
    assert loaded.stdout.strip() == "[]"
