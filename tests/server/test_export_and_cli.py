"""`studyapp-server` commands and the export contract, read back with pyarrow, csv and json."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from studyapp.server import export
from studyapp.server.cli import cli
from studyapp.server.storage import Storage
from tests.server import live as f
from tests.server.export_check import read_rows as read
from tests.server.live import LiveServer
from tests.support.net import free_port, wait_until_http_ok


def columns(path: Path, fmt: str) -> list[str]:
    if fmt == "parquet":
        return pq.read_schema(path).names
    if fmt == "csv":
        return path.read_text(encoding="utf-8").splitlines()[0].split(",")
    return list(read(path, fmt)[0])


@pytest.fixture
def filled(live: LiveServer) -> tuple[LiveServer, str, str]:
    a_id, a_token = live.enroll()
    b_id, b_token = live.enroll()
    live.upload(a_token, [*f.one_of_each(), f.label_dismissal(), f.comparison("cmp-x", rating=None),
                          f.comparison("cmp-x", rating=2),
                          f.message(content='Quotes " and, commas\nand lines'), f.question_answer()])
    live.upload(b_token, [f.consent(["ratings"]), f.comparison(rating=5),
                          f.judge_verdict(side="left", rating=4), f.judge_verdict(side="right", rating=3)])
    return live, a_id, b_id


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_export_writes_the_contract(filled: tuple[LiveServer, str, str], tmp_path: Path, fmt: str) -> None:
    live, a_id, b_id = filled
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["export", "--format", fmt, "--out", str(out), "--db", live.db_arg,
                                      "--researcher", "dr-test"])
    assert result.exit_code == 0, result.output
    # Every file of the export contract (docs/ARCHITECTURE.md section 8; tests/project/test_export_docs.py keeps the
    # docs equal to export.RECORD_TYPES), with exactly its columns, in order, whatever the format, and schema.json.
    assert sorted(p.name for p in out.iterdir()) == sorted(export.file_names(fmt))
    for rt in export.RECORD_TYPES:
        path = out / f"{rt.name}.{fmt}"
        rows = read(path, fmt)
        # The fixture sends no schedule decision, selection or memory view; every other file has rows to check.
        assert rows or rt.name in ("schedule_decisions", "selections", "memory_views"), rt.name
        if fmt == "jsonl":
            assert all(list(row) == export.column_names(rt) for row in rows), rt.name
        else:
            assert columns(path, fmt) == export.column_names(rt), rt.name
        for row in rows:
            assert row["study_id"] == f.STUDY_ID
            assert row["participant_id"] in (a_id, b_id)
    comparisons = read(out / f"comparisons.{fmt}", fmt)
    # The comparison shown, then rated, appears once, in its rated version.
    by_id = {r["comparison_id"]: r for r in comparisons}
    assert len(comparisons) == 3
    assert str(by_id["cmp-x"]["rating"]) == "2"
    # A judge rates each pair in both orders: both verdicts are kept.
    verdicts = [r for r in read(out / f"judge_verdicts.{fmt}", fmt) if r["participant_id"] == b_id]
    assert sorted((r["personalized_side"], str(r["rating"])) for r in verdicts) == [("left", "4"), ("right", "3")]
    messages = read(out / f"messages.{fmt}", fmt)
    assert 'Quotes " and, commas\nand lines' in [m["content"] for m in messages]
    participants = {r["participant_id"]: r for r in read(out / f"participants.{fmt}", fmt)}
    assert set(participants) == {a_id, b_id}
    if fmt == "parquet":
        assert participants[b_id]["categories"] == ["ratings"]
        assert comparisons[0]["skipped"] is False
        assert isinstance(read(out / "attributes.parquet", fmt)[0]["confidence"], float)
    log = live.storage.export_log()
    assert log[-1]["researcher"] == "dr-test"
    assert log[-1]["format"] == fmt
    assert log[-1]["via"] == "cli"


def test_an_older_apps_labels_export_with_the_new_columns_empty(live: LiveServer, tmp_path: Path) -> None:
    _, token = live.enroll()
    new = f.event("attribute_label", {"attribute_id": "a2", "label": "maybe", "labeled_at": "2026-11-22T10:00:00+00:00",
                                      "source": "memory_screen", "attribute_text": "Likes <PERSON_1>",
                                      "confidence": 0.5, "age_s": 3600})
    answers = live.upload(token, [f.consent(), f.attribute_label("a1"), new]).json()["results"]
    assert [a["status"] for a in answers] == ["accepted"] * 3
    out = tmp_path / "out"
    for fmt in ("csv", "parquet"):
        result = CliRunner().invoke(cli, ["export", "--format", fmt, "--out", str(out), "--db", live.db_arg])
        assert result.exit_code == 0, result.output
        rows = {r["attribute_id"]: r for r in read(out / f"attribute_labels.{fmt}", fmt)}
        empty = "" if fmt == "csv" else None
        assert [rows["a1"][c] for c in ("source", "attribute_text", "confidence", "age_s")] == [empty] * 4
        assert rows["a1"]["label"] == "makes_sense"
        assert (rows["a2"]["source"], rows["a2"]["attribute_text"]) == ("memory_screen", "Likes <PERSON_1>")
        assert float(rows["a2"]["age_s"]) == 3600.0


# The comparison fields for analysis without joins (all optional: older apps did not send them).
COMPARISON_CONTEXT = {"prompt_message_id": "m1", "shown_at": "2026-11-22T11:00:30+00:00", "rating_shown": 2,
                      "memory_size": 6, "selected_count": 2, "selector_model": "selector-1",
                      "selector_template": "select@2", "protocol_version": "1.2", "study_day": 3,
                      "utc_offset_min": -300}


def test_an_older_apps_comparison_exports_with_the_new_columns_empty(live: LiveServer, tmp_path: Path) -> None:
    _, token = live.enroll()
    answers = live.upload(token, [f.consent(), f.comparison("cmp-old"),
                                  f.comparison("cmp-new", day="2026-11-22", **COMPARISON_CONTEXT)]).json()["results"]
    assert [a["status"] for a in answers] == ["accepted"] * 3
    out = tmp_path / "out"
    for fmt in ("csv", "parquet"):
        result = CliRunner().invoke(cli, ["export", "--format", fmt, "--out", str(out), "--db", live.db_arg])
        assert result.exit_code == 0, result.output
        names = columns(out / f"comparisons.{fmt}", fmt)
        start = names.index("prompt_message_id")
        assert names[start:start + len(COMPARISON_CONTEXT)] == list(COMPARISON_CONTEXT)
        rows = {r["comparison_id"]: r for r in read(out / f"comparisons.{fmt}", fmt)}
        empty = "" if fmt == "csv" else None
        assert [rows["cmp-old"][c] for c in COMPARISON_CONTEXT] == [empty] * len(COMPARISON_CONTEXT)
        assert str(rows["cmp-old"]["rating"]) == "4"
        expected = COMPARISON_CONTEXT if fmt == "parquet" else {k: str(v) for k, v in COMPARISON_CONTEXT.items()}
        assert {c: rows["cmp-new"][c] for c in COMPARISON_CONTEXT} == expected


def test_the_server_refuses_comparison_context_outside_the_contract() -> None:
    from studyapp.server.validation import Rejected, check_event

    good = f.comparison("cmp1", **COMPARISON_CONTEXT)["payload"]
    assert check_event("e1", "comparison", good).payload["utc_offset_min"] == -300
    assert check_event("e1", "comparison", good | {"utc_offset_min": 840, "memory_size": 0}).record_key == "cmp1"
    for bad, field in ((good | {"prompt_message_id": ""}, "prompt_message_id"),
                       (good | {"shown_at": "yesterday"}, "shown_at"), (good | {"shown_at": 5}, "shown_at"),
                       (good | {"rating_shown": 6}, "rating_shown"), (good | {"rating_shown": True}, "rating_shown"),
                       (good | {"memory_size": -1}, "memory_size"), (good | {"selected_count": 1.5}, "selected_count"),
                       (good | {"study_day": "3"}, "study_day"), (good | {"utc_offset_min": 841}, "utc_offset_min"),
                       (good | {"utc_offset_min": -845}, "utc_offset_min"),
                       (good | {"utc_offset_min": 60.5}, "utc_offset_min"),
                       (good | {"selector_model": 3}, "selector_model"),
                       (good | {"protocol_version": 1.2}, "protocol_version"),
                       (good | {"selector_template": ["select"]}, "selector_template")):
        with pytest.raises(Rejected, match=field):
            check_event("e1", "comparison", bad)


def test_empty_parquet_files_still_carry_the_columns(live: LiveServer, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["export", "--format", "parquet", "--out", str(out),
                                      "--db", live.db_arg])
    assert result.exit_code == 0, result.output
    for rt in export.RECORD_TYPES:
        schema = pq.read_schema(out / f"{rt.name}.parquet")
        assert schema.names == export.column_names(rt), rt.name
        assert schema.equals(export.parquet_schema(rt), check_metadata=False), rt.name
    assert pq.read_table(out / "messages.parquet").num_rows == 0


def test_init_codes_and_participants_commands(tmp_path: Path) -> None:
    runner = CliRunner()
    protocol = tmp_path / "study.toml"
    protocol.write_text(f.PROTOCOL, encoding="utf-8")
    db = str(tmp_path / "server.db")
    result = runner.invoke(cli, ["init", "--protocol", str(protocol), "--db", db])
    assert result.exit_code == 0, result.output
    token = result.output.strip().splitlines()[-1]
    storage = Storage(db)
    assert storage.researcher_for(token) == "owner"
    again = runner.invoke(cli, ["init", "--protocol", str(protocol), "--db", db])
    assert again.exit_code != 0
    assert "already holds a study" in again.output
    result = runner.invoke(cli, ["codes", "create", "--n", "3", "--db", db])
    codes = result.output.split()
    assert len(codes) == 3 and len(set(codes)) == 3
    assert storage.enroll(codes[0]) is not None
    result = runner.invoke(cli, ["participants", "--db", db])
    assert result.exit_code == 0
    assert "1 participants; codes: 1 used, 2 unused" in result.output
    as_json = json.loads(runner.invoke(cli, ["participants", "--json", "--db", db]).output)
    assert len(as_json) == 1


def test_init_with_a_broken_protocol_names_the_problem(tmp_path: Path) -> None:
    protocol = tmp_path / "study.toml"
    protocol.write_text("[study]\nid = 'x'\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["init", "--protocol", str(protocol), "--db", str(tmp_path / "s.db")])
    assert result.exit_code == 1
    assert "duration_days" in result.output
    assert "Traceback" not in result.output


def test_commands_refuse_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    bad = tmp_path / "notes.db"
    bad.write_text("my notes", encoding="utf-8")
    result = CliRunner().invoke(cli, ["participants", "--db", str(bad)])
    assert result.exit_code == 1
    assert "not a SQLite database" in result.output
    assert bad.read_text(encoding="utf-8") == "my notes"


def test_codes_before_init_say_what_to_do(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["codes", "create", "--db", str(tmp_path / "s.db")])
    assert result.exit_code == 1
    assert "studyapp-server init" in result.output


def test_serve_command_runs_the_api(tmp_path: Path) -> None:
    storage, _ = f.new_storage(tmp_path / "s.db")
    storage.close()
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "studyapp.server.cli", "serve", "--db", str(tmp_path / "s.db"),
                             "--port", str(port)], stderr=subprocess.PIPE)
    try:
        response = wait_until_http_ok(f"http://127.0.0.1:{port}/health", timeout=30,
                                      alive=lambda: proc.poll() is None)
        assert response.json()["study_id"] == f.STUDY_ID
        assert httpx.get(f"http://127.0.0.1:{port}/openapi.json").json()["info"]["title"]
    finally:
        proc.terminate()
        proc.wait(10)


def test_serve_on_an_ipv6_host_takes_ipv4_connections_too() -> None:
    import socket

    from studyapp.server.cli import _listen

    if not socket.has_ipv6:
        pytest.skip("this machine has no IPv6")
    server = _listen("::", 0)
    try:
        server.listen(1)
        port = server.getsockname()[1]
        # The system's dual-stack default, as uvicorn's own socket had it: `--host ::` is not IPv6 only.
        assert server.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 0
        with socket.create_connection(("127.0.0.1", port), timeout=10):
            accepted, _ = server.accept()
            accepted.close()
    finally:
        server.close()
