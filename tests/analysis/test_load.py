"""Reading an export folder: the same frames and dtypes from every format, older exports keep what they lack
absent, withdrawn participants are left out, and a folder that is not a readable export says so plainly."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from studyapp.analysis.load import ExportError, from_frames, load_export
from studyapp.server.export import FORMATS, RECORD_TYPE_NAMES, column_names, record_type
from tests.analysis.builder import StudyBuilder, since_2, typed, write

EXPECTED_DTYPES = {"string": "string", "float64": "float64", "int64": "Int64", "bool": "boolean",
                   "list<string>": "object"}


def small_study() -> StudyBuilder:
    b = StudyBuilder()
    b.participant("p1")
    b.participant("p2")
    c1 = b.comparison("p1", day=1, rating=4, side="right")
    b.comparison("p2", day=2, state="failed", memory=None, selected=None)
    b.relevance("p1", c1, selected=True, status="yes")
    b.relevance("p1", c1, selected=False, status="not_sure", probability=0.5)
    b.label("p1", "makes_sense", day=1, age_s=30.0, confidence=0.8)
    b.verdict("p1", c1, "judge", "left", 5)
    b.verdict("p1", c1, "judge", "right", None, status="unreadable")
    b.message("p2", day=1)
    return b


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_reads_into_the_contracts_dtypes(tmp_path: Path, fmt: str) -> None:
    export = load_export(write(tmp_path / fmt, small_study().frames(), fmt))
    assert export.format == fmt and set(export.frames) == set(RECORD_TYPE_NAMES)
    for name, frame in export.frames.items():
        rt = record_type(name)
        # A study without conditions: the condition column only where a study has them.
        assert list(frame.columns) == [c for c in column_names(rt) if c != "condition"]
        kinds = {"study_id": "string", "participant_id": "string", **dict(rt.columns)}
        assert {c: str(frame[c].dtype) for c in frame.columns} == {c: EXPECTED_DTYPES[k] for c, k in kinds.items()}
    comparisons = export["comparisons"]
    assert comparisons["rating"].tolist() == [4, pd.NA]
    assert comparisons["rating_shown"].tolist() == [4, pd.NA]
    assert comparisons["skipped"].tolist() == [False, False]
    assert comparisons["state"].tolist() == ["rated", "failed"]
    assert export["relevance_labels"]["human_relevant"].tolist() == [True, pd.NA]
    assert export["relevance_labels"]["ask_probability"].tolist() == [1.0, 0.5]
    assert export["participants"]["categories"].tolist() == [["ratings", "attribute_labels"]] * 2
    assert export["comparisons"]["comment"].isna().all()  # empty is empty in every format


def test_the_three_formats_give_equal_frames_also_for_empty_files(tmp_path: Path) -> None:
    b = small_study()
    frames = b.frames()
    frames["memory_views"] = typed("memory_views", [])  # no rows: JSONL has no columns to read, CSV a header
    loaded = {fmt: load_export(write(tmp_path / fmt, frames, fmt)) for fmt in FORMATS}
    for name in RECORD_TYPE_NAMES:
        for fmt in ("csv", "parquet"):
            pd.testing.assert_frame_equal(loaded["jsonl"][name], loaded[fmt][name], obj=f"{name}.{fmt}")
    # Rows held already (the live dashboard) normalize the same way.
    held = from_frames({name: pd.DataFrame(frame.astype(object).where(frame.notna(), None).to_dict("records"),
                                           columns=frame.columns) for name, frame in frames.items()})
    for name in RECORD_TYPE_NAMES:
        pd.testing.assert_frame_equal(loaded["jsonl"][name], held[name], obj=f"{name} from frames")


def test_rows_from_the_server_as_dicts_are_normalized_like_a_file() -> None:
    # What studyapp.server.export.rows yields: plain Python values, None for empty.
    rows = [{"study_id": "s", "participant_id": "p1", "comparison_id": "c1", "rating": 4, "skipped": False,
             "study_day": 3, "state": "rated", "time_to_rate_ms": 1200, "parameters": '{"temperature": 0.7}'},
            {"study_id": "s", "participant_id": "p1", "comparison_id": "c2", "rating": None, "skipped": True,
             "study_day": None, "state": "skipped", "time_to_rate_ms": None, "parameters": None}]
    export = from_frames({"comparisons": pd.DataFrame(rows), "participants": pd.DataFrame()})
    c = export["comparisons"]
    assert str(c["rating"].dtype) == "Int64" and c["rating"].tolist() == [4, pd.NA]
    assert str(c["skipped"].dtype) == "boolean" and c["skipped"].tolist() == [False, True]
    assert str(c["time_to_rate_ms"].dtype) == "float64"
    assert export.source == "live database" and export.format == "frames"
    # No rows: the contract's columns, without condition (which only a study with conditions has).
    assert list(export["participants"].columns) == [c for c in column_names(record_type("participants"))
                                                    if c != "condition"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_an_older_export_keeps_absent_columns_absent_and_missing_names_them(tmp_path: Path, fmt: str) -> None:
    export = load_export(write(tmp_path / fmt, small_study().frames(older=True), fmt))
    assert "selections" not in export and "memory_views" not in export
    assert "state" not in export["comparisons"].columns
    assert set(export["comparisons"].columns) == set(column_names(record_type("comparisons"))) - since_2()[
        "comparisons"] - {"condition"}
    assert export.missing("comparisons", "rating", "state") == "comparisons.state"
    assert export.missing("comparisons", "rating", "study_day") is None
    assert export.missing("selections", "selected") == "selections.selected"
    assert export.missing("relevance_labels", "human_relevant", "ask_probability") == \
        "relevance_labels.ask_probability"


def test_missing_tells_an_empty_column_from_a_file_without_rows(tmp_path: Path) -> None:
    b = StudyBuilder()
    b.participant("p1")
    b.label("p1", "maybe", day=1)  # age_s and confidence not recorded (an app before they were sent)
    export = load_export(write(tmp_path, b.frames(), "csv"))
    assert export.missing("attribute_labels", "label", "age_s") == "attribute_labels.age_s"
    # No comparisons at all: nothing to compute on, which is not a column the export lacks.
    assert len(export["comparisons"]) == 0
    assert export.missing("comparisons", "rating", "state", "study_day") is None


@pytest.mark.parametrize("fmt", FORMATS)
def test_withdrawn_participants_are_left_out_of_every_frame(tmp_path: Path, fmt: str) -> None:
    b = small_study()
    b.participant("gone", withdrawn=True)
    b.comparison("gone", day=1, rating=5)  # the server deletes these at withdrawal; left out all the same
    b.label("gone", "maybe", day=1)
    export = load_export(write(tmp_path, b.frames(), fmt))
    assert export.withdrawn == 1
    assert any("1 withdrawn participant" in note for note in export.notes)
    for name, frame in export.frames.items():
        assert "gone" not in set(frame["participant_id"]), name
    assert export.participant_ids() == ["p1", "p2"]


# -- folders that are not a readable export -------------------------------------------------------------------------


def test_a_missing_or_empty_folder_says_what_to_point_to(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="is not a folder"):
        load_export(tmp_path / "nowhere")
    (tmp_path / "README.md").write_text("not an export")
    (tmp_path / "notes.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ExportError, match=r"holds no export files .*comparisons\.csv.*--out"):
        load_export(tmp_path)


def test_mixed_formats_are_refused_with_what_to_do(tmp_path: Path) -> None:
    frames = small_study().frames()
    write(tmp_path, {k: v for k, v in frames.items() if k != "comparisons"}, "csv")
    write(tmp_path, {"comparisons": frames["comparisons"]}, "parquet")
    others = len(frames) - 1
    with pytest.raises(ExportError, match=rf"mixes export formats: csv \({others} files\), parquet \(1 files\).*"
                                          r"empty folder") as error:
        load_export(tmp_path)
    assert "Traceback" not in str(error.value)


def test_a_corrupt_parquet_file_is_named(tmp_path: Path) -> None:
    write(tmp_path, small_study().frames(), "parquet")
    (tmp_path / "comparisons.parquet").write_bytes(b"PAR1 this is not really parquet")
    with pytest.raises(ExportError, match=r"comparisons\.parquet could not be read: it is not a Parquet file.*"
                                          r"export it again"):
        load_export(tmp_path)


def test_a_cut_csv_file_is_named(tmp_path: Path) -> None:
    write(tmp_path, small_study().frames(), "csv")
    path = tmp_path / "comparisons.csv"
    path.write_text(path.read_text() + 'x,y,"an unclosed quote\n')
    with pytest.raises(ExportError, match=r"comparisons\.csv could not be read: it is not valid CSV"):
        load_export(tmp_path)


def test_an_edited_csv_cell_names_the_file_column_and_value(tmp_path: Path) -> None:
    write(tmp_path, small_study().frames(), "csv")
    path = tmp_path / "comparisons.csv"
    edited = pd.read_csv(path, dtype=str, keep_default_na=False)
    edited.loc[0, "study_day"] = "three"
    edited.to_csv(path, index=False)
    with pytest.raises(ExportError, match=r"comparisons\.csv, column study_day: 'three' is not a number"):
        load_export(tmp_path)


def test_an_empty_csv_file_and_a_bad_jsonl_line_are_named(tmp_path: Path) -> None:
    write(tmp_path / "csv", small_study().frames(), "csv")
    (tmp_path / "csv" / "judge_verdicts.csv").write_text("")
    with pytest.raises(ExportError, match=r"judge_verdicts\.csv could not be read: it is empty"):
        load_export(tmp_path / "csv")
    write(tmp_path / "jsonl", small_study().frames(), "jsonl")
    path = tmp_path / "jsonl" / "relevance_labels.jsonl"
    path.write_text(path.read_text() + '{"participant_id": "p1", "comparison_id"\n')
    with pytest.raises(ExportError, match=r"relevance_labels\.jsonl could not be read: line 3 is not JSON"):
        load_export(tmp_path / "jsonl")


def test_a_file_that_is_no_export_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "comparisons.csv").write_text("name,score\nann,3\n")
    with pytest.raises(ExportError, match=r"comparisons\.csv has no participant_id column"):
        load_export(tmp_path)
