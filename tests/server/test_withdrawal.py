"""Withdrawal leaves nothing of the participant on the server but the tombstone (privacy invariant 5)."""

from __future__ import annotations

import logging
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.server import live as f
from tests.server.live import LiveServer
from tests.support.net import free_port, wait_until_http_ok
from tests.support.postgres import Cluster


def rows_mentioning(live: LiveServer, needle: str) -> dict[str, int]:
    """Per table, how many rows hold ``needle`` in any column (checked table by table, column by column)."""
    found: dict[str, int] = {}
    for table, rows in live.table_rows().items():
        n = sum(1 for row in rows if any(needle in str(value) for value in row))
        if n:
            found[table] = n
    return found


def table_counts(live: LiveServer) -> dict[str, int]:
    return {t: len(rows) for t, rows in live.table_rows().items()}


def test_withdrawal_deletes_every_row_and_keeps_a_tombstone(live: LiveServer) -> None:
    a_id, a_token = live.enroll()
    b_id, b_token = live.enroll()
    live.upload(a_token, [*f.one_of_each(), f.message(content="A-only-marker")])
    b_events = [*f.one_of_each(), f.message(content="B-only-marker")]
    live.upload(b_token, b_events)
    b_before = rows_mentioning(live, b_id)
    assert b_before["participants"] == 1 and b_before["events"] == len(b_events)
    counts_before = table_counts(live)

    response = httpx.post(f"{live.base_url}/v1/withdraw", headers={"Authorization": f"Bearer {a_token}"})
    assert response.status_code == 200
    assert response.json()["status"] == "confirmed"

    # Table by table: the participant id remains only in the tombstone; A's text is gone everywhere.
    assert rows_mentioning(live, a_id) == {"tombstones": 1}
    assert rows_mentioning(live, "A-only-marker") == {}
    # B is untouched, row for row.
    assert rows_mentioning(live, b_id) == b_before
    assert rows_mentioning(live, "B-only-marker") == {"events": 1}
    counts_after = table_counts(live)
    assert counts_after["events"] == counts_before["events"] - len(f.one_of_each()) - 1
    assert counts_after["participants"] == counts_before["participants"] - 1
    assert counts_after["tombstones"] == counts_before["tombstones"] + 1


def test_withdrawal_is_idempotent_and_the_token_writes_nothing_more(live: LiveServer) -> None:
    p_id, token = live.enroll()
    live.upload(token, f.one_of_each())
    first = httpx.post(f"{live.base_url}/v1/withdraw", headers={"Authorization": f"Bearer {token}"}).json()
    second = httpx.post(f"{live.base_url}/v1/withdraw", headers={"Authorization": f"Bearer {token}"}).json()
    assert first == second
    assert first["participant_id"] == p_id
    response = live.upload(token, [f.consent()])
    assert response.status_code == 410
    assert "withdrawn" in response.json()["detail"]
    assert live.storage.count_events() == 0


@pytest.mark.sqlite_only("the bytes of the SQLite file and its WAL")
def test_withdrawal_leaves_no_trace_in_the_database_files_while_the_server_runs(tmp_path: Path) -> None:
    """The bytes of the database file and its WAL, not only what SQL shows: deleted rows must not linger in free
    pages or in WAL frames. The server runs in its own process, so this one holds no connection to the file and
    may read it as plain bytes."""
    db = tmp_path / "server.db"
    storage, researcher_token = f.new_storage(db)
    codes = storage.create_codes(2)
    storage.close()
    marker = f"withdrawn-participant-text-{uuid.uuid4().hex}"
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "studyapp.server.cli", "serve", "--db", str(db),
                             "--port", str(port)], stderr=subprocess.PIPE)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_http_ok(f"{base}/health", timeout=30, alive=lambda: proc.poll() is None)
        server = LiveServer(base, storage, researcher_token)
        a = httpx.post(f"{base}/v1/enroll", json={"code": codes[0]}).json()
        b = httpx.post(f"{base}/v1/enroll", json={"code": codes[1]}).json()
        a_events = [f.consent(), f.message(content=marker), f.attribute(text=marker), f.comparison(comment=marker),
                    f.message(role=marker)]  # the last is rejected: its reason quotes the value
        assert server.upload(a["token"], a_events).json()["accepted"] == 4
        assert server.upload(b["token"], [f.consent(), f.message(content="B stays")]).json()["accepted"] == 2
        # Every read path the researchers use, while A's records exist: none may keep an old snapshot open.
        assert httpx.get(f"{base}/v1/participants", headers=server.researcher()).status_code == 200
        assert marker in httpx.get(f"{base}/v1/export/messages", headers=server.researcher()).text
        assert httpx.get(f"{base}/v1/export", headers=server.researcher()).status_code == 200
        with httpx.Client(base_url=base, timeout=60) as browser:  # the first page imports the analysis
            assert browser.post("/dashboard/login", data={"token": researcher_token}).status_code in (200, 303)
            assert browser.get("/dashboard").status_code == 200

        assert httpx.post(f"{base}/v1/withdraw", headers={"Authorization": f"Bearer {a['token']}"}).status_code == 200

        raw = b"".join(p.read_bytes() for p in (db, db.with_name(db.name + "-wal")) if p.exists())
        assert marker.encode() not in raw
        # The participant id remains only in the tombstone: its row and its primary-key index entry.
        assert raw.count(a["participant_id"].encode()) == 2
        assert b["participant_id"].encode() in raw and b"B stays" in raw
    finally:
        proc.terminate()
        proc.wait(10)



def test_on_postgresql_vacuum_full_leaves_no_trace_in_the_table_files(pg_cluster: Cluster, pg_url: str) -> None:
    """PostgreSQL's equivalent of the file test above: a DELETE leaves dead row versions in the table files until
    VACUUM (privacy invariant 5 says so); after ``VACUUM FULL`` the files of the study's database hold none of the
    withdrawn participant's text, and the other participant's still (the right files were read)."""
    storage, researcher_token = f.new_storage(pg_url)
    marker = f"withdrawn-participant-text-{uuid.uuid4().hex}"
    try:
        with f.serve(storage) as base:
            server = LiveServer(base, storage, researcher_token)
            a_id, a_token = server.enroll()
            _, b_token = server.enroll()
            assert server.upload(a_token, [f.consent(), f.message(content=marker), f.attribute(text=marker),
                                           f.message(role=marker)]).json()["accepted"] == 3
            assert server.upload(b_token, [f.consent(), f.message(content="B stays")]).json()["accepted"] == 2
            assert httpx.post(f"{base}/v1/withdraw", headers={"Authorization": f"Bearer {a_token}"}).is_success
            assert rows_mentioning(server, marker) == {}
            assert rows_mentioning(server, a_id) == {"tombstones": 1}
    finally:
        storage.close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("VACUUM FULL")
        conn.execute("CHECKPOINT")  # the rewritten tables reach their files, the old files are removed
        oid = conn.execute("SELECT oid FROM pg_database WHERE datname = current_database()").fetchone()[0]
    # Read after the storage's connections are closed; the cluster's files are read through the file system only.
    raw = b"".join(path.read_bytes() for path in (pg_cluster.data_dir / "base" / str(oid)).iterdir()
                   if path.is_file())
    assert marker.encode() not in raw
    assert b"B stays" in raw


@pytest.mark.sqlite_only("SQLite's WAL checkpoint")
def test_a_reader_in_the_way_of_the_checkpoint_is_reported_and_the_checkpoint_retried(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A reader that keeps an old snapshot (here another connection in a read transaction) stops the WAL from being
    emptied: the withdrawal is still confirmed, the log says what stays behind, and the next write retries."""
    db = tmp_path / "server.db"
    storage, _ = f.new_storage(db)
    wal = db.with_name(db.name + "-wal")
    a_code, b_code = storage.create_codes(2)
    a = storage.enroll(a_code)
    b = storage.enroll(b_code)
    assert a is not None and b is not None
    storage.store_events(a[0], [(e["event_id"], e["kind"], e["payload"]) for e in (f.consent(), f.message())])
    reader = sqlite3.connect(db, isolation_level=None)
    try:
        reader.execute("BEGIN")
        assert reader.execute("SELECT count(*) FROM events").fetchone()[0] == 2  # the snapshot is taken here
        with caplog.at_level(logging.WARNING, logger="studyapp.server.storage"):
            assert storage.withdraw(a[1]) is not None
        assert "could not be checkpointed" in caplog.text and a[0] in caplog.text
        assert wal.stat().st_size > 0  # stat only: the file is never opened here
        reader.execute("COMMIT")
    finally:
        reader.close()
    storage.store_events(b[0], [(e["event_id"], e["kind"], e["payload"]) for e in (f.consent(),)])
    assert wal.stat().st_size == 0
    assert storage.checkpoint(reason="a test") is True
    storage.close()


@pytest.mark.sqlite_only("SQLite's WAL checkpoint")
def test_the_checkpoint_owed_is_done_when_the_export_in_the_way_ends(tmp_path: Path) -> None:
    """An export (a snapshot) running during a withdrawal keeps the WAL from being emptied; when it ends, the owed
    checkpoint runs then, without waiting for a write that may never come (the study's last withdrawal)."""
    db = tmp_path / "server.db"
    storage, _ = f.new_storage(db)
    wal = db.with_name(db.name + "-wal")
    code, = storage.create_codes(1)
    a = storage.enroll(code)
    assert a is not None
    storage.store_events(a[0], [(e["event_id"], e["kind"], e["payload"]) for e in (f.consent(), f.message())])
    snapshot = storage.snapshot()
    try:
        assert snapshot.count_records("message") == 1  # the export's snapshot holds the participant's message
        assert storage.withdraw(a[1]) is not None
        assert wal.stat().st_size > 0  # stat only: the file is never opened here
    finally:
        snapshot.close()
    assert wal.stat().st_size == 0
    assert storage.count_events() == 0
    storage.close()
