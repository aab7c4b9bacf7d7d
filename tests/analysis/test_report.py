"""The report renderer on hand-built analyses: what each item shows, escaping, the CSVs and PNGs beside it, and an
HTML file that needs no network."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("matplotlib")

from studyapp.analysis import report as rep
from studyapp.analysis.model import Analysis, Chart, Figure, NotAvailable, Section, Table
from studyapp.analysis.report import write_report

PNG = b"\x89PNG\r\n\x1a\n"
NOW = datetime(2026, 12, 3, 14, 30, tzinfo=UTC)
EVIL = "<script>alert('p')</script>"


def analysis() -> Analysis:
    per_participant = pd.DataFrame({
        "participant_id": [EVIL, "p-2", "p-3"], "comparisons": [4, 3, 5], "mean_rating": [3.25, 4.0, 2.8],
        "model": ["gpt-4o-mini", "a|b *c*", None],
    })
    by_model = pd.DataFrame({"rated": [7, 5]}, index=pd.Index(["gpt-4o-mini", "judge$x"], name="model"))
    ratings = pd.DataFrame({"rating": [1, 3, 3, 4, 4, 4, 5, 5]})
    per_day = pd.DataFrame({"study_day": [1, 2, 3], "share_selected": [0.2, 0.35, 0.3]})
    arms = pd.DataFrame({"arm": ["generic", "personalized"], "kept": [3, 5], "judge": [4, 4]})
    return Analysis(
        title="Study <b>pilot</b>",
        source="/data/export-2026-12",
        notes=["1 withdrawn participant excluded"],
        sections=[
            Section("preference", "Stage 3: preference", intro="Ratings of the comparisons.\n\nOne per comparison.",
                    items=[
                        Figure("preference.mean_rating", "Mean rating", 3.41666, 12, 3, (3.0123, 3.8), "bootstrap"),
                        Figure("preference.not_preferred_share", "Personalized answer not preferred", 0.41667, 12, 3,
                               (0.2, 0.65)),
                        Figure("preference.judge_agreement", "Judge agreement (kappa)", None, 0, 0),
                        Table("preference.per_participant", "Per participant", per_participant, 12, 3),
                        Chart("preference.ratings", "Ratings", "hist", ratings, "rating", ("rating",), "rating",
                              n_items=8, n_participants=3),
                        Chart("preference.arms", "Kept answers by arm", "bar", arms, "arm", ("kept", "judge"),
                              n_items=8, n_participants=1),
                    ]),
            Section("selection", "Stage 2: selection", items=[
                NotAvailable("selection.recall", "Recall", "relevance_labels.ask_probability"),
                Table("selection.by_model", "Rated comparisons by selector model", by_model, 12, 3),
                Chart("selection.per_day", "Selected share by study day", "line", per_day, "study_day",
                      ("share_selected",), n_items=30, n_participants=3),
            ]),
        ],
    )


def figure_block(text: str, key: str) -> str:
    match = re.search(rf'<div class="figure" id="{re.escape(key)}">(.*?)</div></div>', text, re.S)
    assert match, key
    return match.group(1)


@pytest.fixture
def html_report(tmp_path: Path) -> tuple[rep.ReportFiles, str]:
    files = write_report(analysis(), tmp_path / "out" / "study.html", now=NOW)
    return files, files.report.read_text(encoding="utf-8")


def test_each_figure_shows_its_value_ci_and_what_it_rests_on(html_report) -> None:
    _, text = html_report
    mean = figure_block(text, "preference.mean_rating")
    assert ">3.42<" in mean
    assert "95% CI 3.01 to 3.80" in mean
    assert "n = 12 items, 3 participants" in mean
    assert "bootstrap" in mean
    share = figure_block(text, "preference.not_preferred_share")
    assert ">41.7%<" in share
    assert "95% CI 20.0% to 65.0%" in share
    assert "n = 12 items, 3 participants" in share
    empty = figure_block(text, "preference.judge_agreement")
    assert "n = 0 items, 0 participants" in empty
    assert "95% CI" not in empty


def test_sections_come_in_order_with_intro_notes_source_and_time(html_report) -> None:
    _, text = html_report
    assert text.index("Stage 3: preference") < text.index("Stage 2: selection")
    assert "<p>Ratings of the comparisons.</p><p>One per comparison.</p>" in text
    # The notes come before the first section.
    assert text.index("1 withdrawn participant excluded") < text.index("<section")
    assert "/data/export-2026-12" in text
    assert "2026-12-03 14:30 UTC" in text


def test_not_available_says_which_column_it_needs(html_report, tmp_path: Path) -> None:
    _, text = html_report
    assert re.search(r'<span class="label">Recall</span>: not available in this export \(needs '
                     r"relevance_labels.ask_probability\)", text)
    md = write_report(analysis(), tmp_path / "r.md", "md", now=NOW).report.read_text(encoding="utf-8")
    assert "- **Recall**: *not available in this export (needs relevance\\_labels.ask\\_probability)*" in md


def test_text_from_the_data_is_escaped(html_report, tmp_path: Path) -> None:
    _, text = html_report
    assert "<script" not in text
    assert "&lt;script&gt;alert(" in text
    assert "<b>pilot</b>" not in text and "Study &lt;b&gt;pilot&lt;/b&gt;" in text
    md = write_report(analysis(), tmp_path / "r.md", "md", now=NOW).report.read_text(encoding="utf-8")
    assert "<script" not in md and "<b>" not in md
    assert "&lt;script&gt;" in md
    # A pipe in a cell stays in its cell; asterisks stay text.
    assert r"a\|b \*c\*" in md


def test_every_table_is_a_csv_equal_to_it(html_report) -> None:
    files, text = html_report
    tables = {t.key: t for s in analysis().sections for t in s.items if isinstance(t, Table)}
    assert set(files.tables) == set(tables)
    folder = files.report.parent / "study_tables"
    assert {p.name for p in folder.iterdir()} == {"preference.per_participant.csv", "selection.by_model.csv"}
    per = pd.read_csv(files.tables["preference.per_participant"], keep_default_na=False, na_values=[""])
    pd.testing.assert_frame_equal(per, tables["preference.per_participant"].frame)
    by_model = pd.read_csv(files.tables["selection.by_model"], index_col="model")
    pd.testing.assert_frame_equal(by_model, tables["selection.by_model"].frame)
    # The report names the file; the table's index is shown as a column of it.
    assert 'href="study_tables/preference.per_participant.csv"' in text
    assert "judge$x" in text


def test_html_is_one_file_that_needs_no_network(html_report) -> None:
    files, text = html_report
    assert sorted(p.name for p in files.report.parent.iterdir()) == ["study.html", "study_tables"]
    assert files.charts == {}
    # Every chart is an embedded PNG; nothing refers to anything outside the file but the CSVs beside it.
    assert text.count('src="data:image/png;base64,') == 3
    assert "http://" not in text and "https://" not in text
    targets = re.findall(r"(?:src|href)\s*=\s*[\"']([^\"']*)", text)
    assert len(targets) == 3 + 2 + 2  # the charts, the table of contents, the CSVs
    assert all(t.startswith(("data:image/png;base64,", "#", "study_tables/")) for t in targets), targets
    assert "url(" not in text and "@import" not in text and "<script" not in text and "<link" not in text
    assert "default-src 'none'" in text


def test_markdown_links_charts_as_png_files_beside_it(tmp_path: Path) -> None:
    files = write_report(analysis(), tmp_path / "report.md", "md", now=NOW)
    text = files.report.read_text(encoding="utf-8")
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert links == ["report_charts/preference.ratings.png", "report_charts/preference.arms.png",
                     "report_charts/selection.per_day.png"]
    for link in links:
        assert (tmp_path / link).read_bytes().startswith(PNG)
    assert sorted(files.charts) == ["preference.arms", "preference.ratings", "selection.per_day"]
    assert "- **Mean rating**: 3.42 (95% CI 3.01 to 3.80); n = 12 items, 3 participants. bootstrap" in text
    assert "- **Personalized answer not preferred**: 41.7% (95% CI 20.0% to 65.0%); n = 12 items, 3 participants." \
        in text
    assert "| model | rated |" in text  # the index is a column
    assert (tmp_path / "report_tables" / "selection.by_model.csv").exists()


def test_a_long_table_is_cut_in_the_report_but_whole_in_the_csv(tmp_path: Path) -> None:
    frame = pd.DataFrame({"participant_id": [f"p-{i:04d}" for i in range(rep.MAX_TABLE_ROWS + 50)]})
    a = Analysis("t", [Section("s", "S", [Table("big", "Big", frame, len(frame), len(frame))])])
    files = write_report(a, tmp_path / "r.html", now=NOW)
    text = files.report.read_text(encoding="utf-8")
    assert f"p-{rep.MAX_TABLE_ROWS - 1:04d}" in text and f"p-{rep.MAX_TABLE_ROWS:04d}" not in text
    assert f"The first {rep.MAX_TABLE_ROWS} of {len(frame)} rows" in text
    assert len(pd.read_csv(files.tables["big"])) == len(frame)


def test_files_of_an_earlier_report_do_not_stay_and_equal_keys_do_not_collide(tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    (tmp_path / "r_tables").mkdir()
    (tmp_path / "r_tables" / "gone.csv").write_text("a\n1\n")
    one, two = pd.DataFrame({"a": [1]}), pd.DataFrame({"a": [2]})
    a = Analysis("t", [Section("s", "S", [Table("../x y", "One", one, 1, 1), Table("../x y", "Two", two, 1, 1)])])
    write_report(a, out, now=NOW)
    assert sorted(p.name for p in (tmp_path / "r_tables").iterdir()) == ["x_y-2.csv", "x_y.csv"]
    assert pd.read_csv(tmp_path / "r_tables" / "x_y-2.csv")["a"].tolist() == [2]


def test_a_folder_as_out_gets_report_html_and_an_unknown_format_is_refused(tmp_path: Path) -> None:
    files = write_report(Analysis("t", []), tmp_path, now=NOW)
    assert files.report == tmp_path / "report.html"
    assert files.report.exists()
    with pytest.raises(ValueError, match="unknown report format 'pdf'"):
        write_report(Analysis("t", []), tmp_path / "r.pdf", "pdf")


def test_a_chart_without_rows_says_so_and_an_unknown_kind_is_an_error(tmp_path: Path) -> None:
    empty = Chart("c", "Nothing", "bar", pd.DataFrame({"x": [], "y": []}), "x", ("y",))
    text = write_report(Analysis("t", [Section("s", "S", [empty])]), tmp_path / "r.html").report.read_text()
    assert "No data to chart." in text and "data:image/png" not in text
    odd = Chart("c", "Pie", "pie", pd.DataFrame({"x": [1]}), "x", ("x",))
    with pytest.raises(ValueError, match="unknown kind 'pie'"):
        rep.chart_png(odd)


@pytest.mark.parametrize(("value", "shown"), [
    (3, "3"), (1234567.0, "1,234,567"), (3.41666, "3.42"), (153.6, "154"), (0.012345, "0.0123"), (None, "–"),
    (float("nan"), "–"), ("text", "text"),
])
def test_numbers_are_rounded_for_reading(value, shown) -> None:
    assert rep.format_number(value) == shown


@pytest.mark.parametrize(("key", "label", "value", "share"), [
    ("acceptance", "Acceptance", 0.7, True),
    ("selection_rate", "Selection rate", 0.3, True),
    ("mean_rating", "Mean rating", 0.9, False),  # "rating" is not "rate"
    ("kappa", "Cohen's kappa", 0.4, False),
    ("precision", "Precision", 1.2, False),  # out of [0, 1]: not shown as a percentage
])
def test_shares_are_known_by_their_words(key, label, value, share) -> None:
    assert rep.is_share(Figure(key, label, value, 1, 1)) is share
