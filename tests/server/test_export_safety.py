"""Exports that cannot be spoiled: by one odd event, by a failure midway, by spreadsheet formulas, by symlinks.

Every export is written into a hidden folder and moved into place only when every file is complete, with
``schema.json`` (files, columns, types, contract version, the snapshot's row counts) last; CSV text cells that a
spreadsheet would run as a formula are neutralized; ``--out`` never writes through a symlink.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from click.testing import CliRunner

from studyapp.contract import ContractError, check_fields
from studyapp.events import CONTRACT_VERSION
from studyapp.server import export
from studyapp.server.cli import cli
from studyapp.server.pg_storage import PgSnapshot
from studyapp.server.storage import Snapshot
from tests.server import live as f
from tests.server.export_check import check_folder, parse_body, read_rows
from tests.server.live import LiveServer

LONE_SURROGATE = "lone \ud800 surrogate"


def run_export(live: LiveServer, fmt: str, out: Path) -> object:
    return CliRunner().invoke(cli, ["export", "--format", fmt, "--out", str(out), "--db", live.db_arg,
                                    "--researcher", "dr-test"])


def upload_raw(live: LiveServer, token: str, events: list[dict]) -> httpx.Response:
    # json.dumps escapes the lone surrogate (\ud800): valid JSON text, as any client may send it.
    return httpx.post(f"{live.base_url}/v1/events", content=json.dumps({"events": events}).encode("ascii"),
                      headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})


# -- one odd event ------------------------------------------------------------------------------------------------


def test_the_contract_refuses_text_that_is_not_unicode() -> None:
    good = f.attribute("a1")["payload"]
    for field, value in (("text", LONE_SURROGATE), ("reason", "\udfff"), ("attribute_id", "a\ud800")):
        with pytest.raises(ContractError, match=f"'{field}'") as caught:
            check_fields("attribute", good | {field: value})
        assert "surrogate" in str(caught.value)
    with pytest.raises(ContractError, match="'parameters'"):
        check_fields("comparison", f.comparison("c1")["payload"] | {"parameters": {"note": LONE_SURROGATE}})
    assert check_fields("attribute", good | {"text": "Mag Äpfel 🍎"})["text"] == "Mag Äpfel 🍎"


def test_the_server_rejects_a_lone_surrogate_and_keeps_the_rest_of_the_batch(live: LiveServer) -> None:
    _, token = live.enroll()
    odd = f.attribute("a-odd", text=LONE_SURROGATE)
    response = upload_raw(live, token, [f.consent(), odd, f.attribute("a-fine")])
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["accepted", "rejected", "accepted"]
    assert "'text'" in results[1]["reason"] and "surrogate" in results[1]["reason"]
    assert [p["attribute_id"] for _, p in live.storage.records("attribute")] == ["a-fine"]


def test_a_stored_lone_surrogate_does_not_stop_the_parquet_export(live: LiveServer, tmp_path: Path) -> None:
    participant_id, token = live.enroll()
    live.upload(token, [f.consent(), f.attribute("a-before"), f.message()])
    # A record stored before the contract refused such text (written as the server stored it then: JSON, escaped).
    payload = f.attribute("a-odd", text=LONE_SURROGATE)["payload"]
    with live.storage.write() as conn:
        conn.execute("INSERT INTO events (event_id, participant_id, kind, record_key, day, payload, received_at) "
                     "VALUES ('legacy-1', ?, 'attribute', 'a-odd', '2026-11-20', ?, '2026-11-20T10:00:00+00:00')",
                     [participant_id, json.dumps(payload)])
    for fmt in export.FORMATS:
        out = tmp_path / fmt
        result = run_export(live, fmt, out)
        assert result.exit_code == 0, result.output
        check_folder(out, fmt, live.storage)
        texts = {r["attribute_id"]: r["text"] for r in read_rows(out / f"attributes.{fmt}", fmt)}
        # JSONL keeps the exact text (as an escape); CSV and Parquet, which must be UTF-8, hold U+FFFD in its place.
        assert texts["a-odd"] == (LONE_SURROGATE if fmt == "jsonl" else "lone \ufffd surrogate")
        assert len(read_rows(out / f"messages.{fmt}", fmt)) == 1


def test_an_export_that_fails_midway_leaves_nothing_that_looks_complete(live: LiveServer, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    _, token = live.enroll()
    live.upload(token, [*f.one_of_each()])
    out = tmp_path / "out"
    assert run_export(live, "parquet", out).exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    live.upload(token, [f.comparison(), f.attribute()])
    real = export.WRITERS["parquet"]

    def disk_full(path: Path, rt: export.RecordType, source, tick) -> int:  # type: ignore[no-untyped-def]
        if rt.name == "comparisons":
            path.write_bytes(b"PAR1 half a file")
            raise OSError(28, "No space left on device")
        return real(path, rt, source, tick)

    monkeypatch.setitem(export.WRITERS, "parquet", disk_full)
    logged = len(live.storage.export_log())
    with caplog.at_level(logging.ERROR, logger="studyapp"):
        result = run_export(live, "parquet", out)
    assert result.exit_code == 1
    assert "No space left on device" in result.output and "Traceback" not in result.output
    assert "nothing was written" in result.output
    # The earlier export is untouched and no half-written file or folder is left beside it.
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [r for r in caplog.records if "export" in r.getMessage() and "No space left" in r.getMessage()]
    assert len(live.storage.export_log()) == logged


# -- formulas in CSV ----------------------------------------------------------------------------------------------

FORMULAS = ["=HYPERLINK(\"http://x.example\",\"click\")", "+1+2", "-2+3", "@SUM(A1:A2)", "\tindented",
            "\rreturn", "plain text", "nul\x00inside"]


def test_csv_text_cells_never_open_as_formulas_but_numbers_stay_numbers(live: LiveServer, tmp_path: Path) -> None:
    _, token = live.enroll()
    messages = [f.message(content=text) for text in FORMULAS]
    cmp = f.comparison("cmp-west", utc_offset_min=-300, comment="=1+1")
    assert live.upload(token, [f.consent(), *messages, cmp]).json()["accepted"] == len(messages) + 2
    safe = ["'=HYPERLINK(\"http://x.example\",\"click\")", "'+1+2", "'-2+3", "'@SUM(A1:A2)", "'\tindented",
            "'\rreturn", "plain text", "nul\ufffdinside"]
    for fmt in export.FORMATS:
        out = tmp_path / fmt
        assert run_export(live, fmt, out).exit_code == 0
        contents = [m["content"] for m in read_rows(out / f"messages.{fmt}", fmt)]
        comparison = read_rows(out / f"comparisons.{fmt}", fmt)[0]
        assert contents == (safe if fmt == "csv" else FORMULAS), fmt
        assert comparison["comment"] == ("'=1+1" if fmt == "csv" else "=1+1")
        assert str(comparison["utc_offset_min"]) == "-300"
    response = httpx.get(f"{live.base_url}/v1/export/messages", params={"format": "csv"}, headers=live.researcher())
    assert [m["content"] for m in parse_body(response.content, "csv")] == safe
    response = httpx.get(f"{live.base_url}/v1/export/messages", params={"format": "jsonl"}, headers=live.researcher())
    assert [m["content"] for m in parse_body(response.content, "jsonl")] == FORMULAS


# -- schema.json and symlinks -------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", export.FORMATS)
def test_every_export_describes_its_files_in_schema_json(live: LiveServer, tmp_path: Path, fmt: str) -> None:
    _, token = live.enroll()
    live.upload(token, [f.consent(), f.message(), f.message()])
    out = tmp_path / "out"
    assert run_export(live, fmt, out).exit_code == 0
    schema = json.loads((out / "schema.json").read_text(encoding="utf-8"))
    assert schema["contract_version"] == CONTRACT_VERSION
    assert schema["study_id"] == f.STUDY_ID
    by_type = {entry["record_type"]: entry for entry in schema["files"]}
    for rt in export.RECORD_TYPES:
        entry = by_type[rt.name]
        assert entry["file"] == f"{rt.name}.{fmt}"
        assert [c["name"] for c in entry["columns"]] == export.column_names(rt)
        assert entry["columns"][2]["type"] == export.TYPE_NAMES[rt.columns[0][1]]
    # An empty JSONL file has no lines to show its columns: schema.json names them.
    assert by_type["memory_views"]["rows"] == 0
    assert [c["name"] for c in by_type["memory_views"]["columns"]][-1] == "contract_version"
    assert {c["name"]: c["type"] for c in by_type["attributes"]["columns"]}["confidence"] == "float"
    assert by_type["messages"]["rows"] == 2
    check_folder(out, fmt, live.storage)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["schema.json", *(f"{name}.{fmt}" for name in export.RECORD_TYPE_NAMES)])


def test_export_refuses_to_write_through_a_symlink(live: LiveServer, tmp_path: Path) -> None:
    _, token = live.enroll()
    live.upload(token, [f.consent(), f.message()])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me", encoding="utf-8")
    linked = tmp_path / "linked-out"
    linked.symlink_to(elsewhere, target_is_directory=True)
    result = run_export(live, "csv", linked)
    assert result.exit_code == 1
    assert "symlink" in result.output and str(linked) in result.output and "Traceback" not in result.output
    assert list(elsewhere.iterdir()) == []
    out = tmp_path / "out"
    out.mkdir()
    (out / "messages.csv").symlink_to(victim)
    for fmt, planted in (("csv", "messages.csv"), ("csv", "schema.json")):
        if planted == "schema.json":
            (out / "messages.csv").unlink()
            (out / "schema.json").symlink_to(victim)
        result = run_export(live, fmt, out)
        assert result.exit_code == 1
        assert "symlink" in result.output and planted in result.output
        assert victim.read_text(encoding="utf-8") == "keep me"
        assert sorted(os.listdir(out)) == [planted]


def test_an_http_export_that_fails_midway_breaks_the_connection_and_is_not_logged(
        live: LiveServer, monkeypatch: pytest.MonkeyPatch) -> None:
    _, token = live.enroll()
    live.upload(token, [f.consent(), *(f.message(content="x" * 2000) for _ in range(60))])
    real_rows = export.rows
    # The backend's own error for a failing read.
    error = (sqlite3.OperationalError("disk I/O error") if live.backend == "sqlite"
             else psycopg.OperationalError("could not read block 0 in file \"base/1/2\": I/O error"))

    def failing(reader, rt, study_id):  # type: ignore[no-untyped-def]
        for i, row in enumerate(real_rows(reader, rt, study_id)):
            if i == 50:  # past the first chunk: the client has had a 200 and part of the body
                raise error
            yield row

    monkeypatch.setattr(export, "rows", failing)
    logged = len(live.storage.export_log())
    received = b""
    with pytest.raises(httpx.RemoteProtocolError):  # the error comes while the body is read
        with httpx.stream("GET", f"{live.base_url}/v1/export/messages", params={"format": "csv"},
                          headers=live.researcher()) as response:
            assert response.status_code == 200
            for data in response.iter_bytes():
                received += data
    assert received.count(b"\n") < 60
    assert len(live.storage.export_log()) == logged


def snapshot_closed(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """An event set when an export's snapshot is closed."""
    released = threading.Event()
    for snapshot_class in (Snapshot, PgSnapshot):  # one per backend
        def close(self: Snapshot | PgSnapshot, real_close: Any = snapshot_class.close) -> None:
            real_close(self)
            released.set()

        monkeypatch.setattr(snapshot_class, "close", close)
    return released


def test_a_client_that_goes_away_midway_releases_the_snapshot(live: LiveServer,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    participant_id, token = live.enroll()
    live.upload(token, [f.consent()])
    # Far more than the sockets buffer between the server and the client: the export cannot end on its own.
    live.storage.bulk_insert_events(participant_id, ((e["event_id"], e["kind"], e["payload"]) for e in
                                                     (f.message(content="y" * 4000) for _ in range(8000))))
    released = snapshot_closed(monkeypatch)
    logged = len(live.storage.export_log())
    with httpx.stream("GET", f"{live.base_url}/v1/export/messages", params={"format": "jsonl"},
                      headers=live.researcher()) as response:
        assert response.status_code == 200
        assert next(response.iter_bytes())
    # The connection is closed with most of the body unread; a long read transaction would keep the WAL growing.
    assert released.wait(30), "the export's snapshot was not released after the client went away"
    assert len(live.storage.export_log()) == logged


async def test_a_client_gone_before_the_first_byte_still_releases_the_snapshot(server_db: Path | str,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    # The body generator never starts when sending the headers already fails, so its own clean-up cannot be
    # what closes the snapshot. The ASGI app is called directly: the failing send is the injected fault.
    from studyapp.server.app import create_app

    storage, token = f.new_storage(server_db)
    released = snapshot_closed(monkeypatch)
    messages = iter([{"type": "http.request", "body": b"", "more_body": False}])

    async def receive() -> dict[str, object]:
        return next(messages, {"type": "http.disconnect"})

    async def send(message: dict[str, object]) -> None:
        if message["type"] == "http.response.start":
            raise OSError("connection reset by peer")

    scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
             "method": "GET", "scheme": "http", "path": "/v1/export/messages", "raw_path": b"/v1/export/messages",
             "query_string": b"format=jsonl", "root_path": "", "client": ("127.0.0.1", 50000),
             "server": ("127.0.0.1", 80), "headers": [(b"host", b"127.0.0.1"),
                                                      (b"authorization", f"Bearer {token}".encode())]}
    with pytest.raises(OSError):
        await create_app(storage)(scope, receive, send)
    assert released.wait(10), "the export's snapshot was left for garbage collection"
