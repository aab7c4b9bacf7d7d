"""`studyapp-server` on PostgreSQL (a real throwaway cluster, tests/support/postgres.py): --db takes a URL,
`serve --workers N` runs several worker processes, and `migrate-to-postgres` moves a pilot's SQLite database."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from click.testing import CliRunner

from studyapp.server import export
from studyapp.server.backend import open_storage
from studyapp.server.cli import cli
from studyapp.server.ingest import dumps
from studyapp.server.pg_storage import PgStorage
from studyapp.server.storage import Storage
from studyapp.study.protocol import parse_protocol
from tests.server import live as f
from tests.server.live import LiveServer
from tests.support.net import free_port, wait_until_http_ok


def write_protocol(tmp_path: Path) -> Path:
    protocol = tmp_path / "study.toml"
    protocol.write_text(f.PROTOCOL, encoding="utf-8")
    return protocol


# -- --db takes a URL ---------------------------------------------------------------------------------------------


def test_every_command_runs_on_a_postgres_url(pg_url: str, tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["init", "--protocol", str(write_protocol(tmp_path)), "--db", pg_url])
    assert result.exit_code == 0, result.output
    token = result.output.strip().splitlines()[-1]
    codes = runner.invoke(cli, ["codes", "create", "--n", "2", "--db", pg_url]).output.split()
    assert len(set(codes)) == 2
    # The URL reaches the storage as a URL (a path type would have made it 'postgresql:/postgres@...').
    storage = open_storage(pg_url)
    try:
        assert isinstance(storage, PgStorage)
        assert storage.researcher_for(token) == "owner"
        found = storage.enroll(codes[0])
        assert found is not None
        storage.store_events(found[0], [(e["event_id"], e["kind"], e["payload"]) for e in (f.consent(), f.message())])
    finally:
        storage.close()
    result = runner.invoke(cli, ["participants", "--db", pg_url])
    assert result.exit_code == 0, result.output
    assert "1 participants; codes: 1 used, 1 unused" in result.output
    result = runner.invoke(cli, ["researchers", "add", "--name", "second", "--db", pg_url])
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    result = runner.invoke(cli, ["export", "--format", "jsonl", "--out", str(out), "--db", pg_url,
                                 "--researcher", "dr-pg"])
    assert result.exit_code == 0, result.output
    assert len((out / "messages.jsonl").read_text().splitlines()) == 1


def test_the_database_url_may_come_from_the_environment(pg_url: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["init", "--protocol", str(write_protocol(tmp_path))],
                                env={"STUDYAPP_SERVER_DB": pg_url})
    assert result.exit_code == 0, result.output
    assert f.STUDY_ID in result.output


def test_an_unreachable_database_is_named_without_its_password() -> None:
    port = free_port()
    for url in (f"postgresql://someone:s3cret@127.0.0.1:{port}/study",
                f"postgresql://someone@127.0.0.1:{port}/study?password=s3cret"):
        result = CliRunner().invoke(cli, ["participants", "--db", url])
        assert result.exit_code == 1
        assert f"Cannot connect to the PostgreSQL database postgresql://someone@127.0.0.1:{port}/study" in result.output
        assert "Connection refused" in result.output  # libpq's own reason
        assert "s3cret" not in result.output
        assert "Traceback" not in result.output


def test_a_refused_login_says_why(pg_cluster: Any) -> None:
    url = f"postgresql://postgres:s3cret@127.0.0.1:{pg_cluster.port}/no_such_database"
    result = CliRunner().invoke(cli, ["participants", "--db", url])
    assert result.exit_code == 1
    assert 'database "no_such_database" does not exist' in result.output
    assert "s3cret" not in result.output


def test_another_kind_of_url_is_refused_by_name(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["participants", "--db", "mysql://someone@db/study"])
    assert result.exit_code == 2
    assert "mysql:// is not a database this server speaks" in result.output
    assert not Path("mysql:").exists()


# -- serve --workers ----------------------------------------------------------------------------------------------


def test_sqlite_is_served_by_one_worker_and_says_why(tmp_path: Path) -> None:
    storage, _ = f.new_storage(tmp_path / "server.db")
    storage.close()
    result = CliRunner().invoke(cli, ["serve", "--workers", "2", "--db", str(tmp_path / "server.db")])
    assert result.exit_code == 1
    assert "needs a PostgreSQL --db: a SQLite database is one file with one write lock" in result.output


def parent_of(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def test_two_workers_on_postgres_store_every_event_once(pg_url: str) -> None:
    storage = open_storage(pg_url)
    protocol = parse_protocol(f.PROTOCOL, source="test")
    researcher = storage.init_study(study_id=protocol.id, title=protocol.title, version=protocol.version,
                                    protocol=f.PROTOCOL, protocol_data=protocol.to_dict())
    codes = storage.create_codes(8)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    # The URL goes in the environment, as the docs advise. It carries a password (the test cluster trusts every
    # login and ignores it) that no worker's command line and no message may show.
    with_password = pg_url.replace("postgres@", "postgres:s3cret@", 1)
    proc = subprocess.Popen([sys.executable, "-m", "studyapp.server.cli", "serve", "--workers", "2",
                             "--port", str(port)], env={**os.environ, "STUDYAPP_SERVER_DB": with_password},
                            stderr=subprocess.PIPE)
    workers: Counter[str] = Counter()

    def answered(response: httpx.Response) -> httpx.Response:
        workers[response.headers["X-Studyapp-Worker"]] += 1
        return response

    def participant(code: str) -> list[str]:
        """Enroll, then upload 5 batches, each sent twice (a retried upload): the ids it sent."""
        enrolled = answered(httpx.post(f"{base}/v1/enroll", json={"code": code})).json()
        headers = {"Authorization": f"Bearer {enrolled['token']}"}
        sent: list[str] = []
        batches = [[f.consent()]] + [[f.message() for _ in range(40)] for _ in range(4)]
        for batch in batches:
            for _ in range(2):
                response = answered(httpx.post(f"{base}/v1/events", json={"events": batch}, headers=headers))
                assert response.status_code == 200, response.text
            sent += [e["event_id"] for e in batch]
        return sent

    try:
        wait_until_http_ok(f"{base}/health", timeout=60, alive=lambda: proc.poll() is None)
        with ThreadPoolExecutor(8) as pool:
            sent = [event_id for ids in pool.map(participant, codes) for event_id in ids]
        # More requests, only while one worker has not been seen yet (the kernel hands connections to whichever
        # worker accepts first); bounded, and every request is one more answer to count.
        with ThreadPoolExecutor(8) as pool:
            for _ in range(50):
                if len(workers) >= 2:
                    break
                list(pool.map(lambda _: answered(httpx.get(f"{base}/health")), range(16)))
        assert len(workers) == 2, workers
        # Both are worker processes of this server.
        assert {parent_of(int(pid)) for pid in workers} == {proc.pid}
        for pid in [*workers, proc.pid]:
            assert b"s3cret" not in Path(f"/proc/{pid}/cmdline").read_bytes()
        overview = httpx.get(f"{base}/v1/participants", headers={"Authorization": f"Bearer {researcher}"}).json()
        assert sum(p["events"] for p in overview) == len(sent)
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=30)
    assert len(sent) == 8 * 161
    assert sorted(storage.event_ids()) == sorted(sent)  # every event stored, none twice
    assert storage.count_events() == len(set(sent))
    storage.close()
    assert b"Traceback" not in stderr and b"s3cret" not in stderr
    assert pg_url.split("@")[1] in stderr.decode()  # it says where it serves from


# -- migrate-to-postgres -------------------------------------------------------------------------------------------


def filled_pilot(live: LiveServer) -> None:
    """A pilot's database, filled through the real HTTP app: participants with every kind of record, an edited
    record, a withdrawal, rejections, an export, unused codes, and one payload stored before the contract refused
    lone surrogates."""
    a_id, a_token = live.enroll()
    _, b_token = live.enroll()
    _, gone_token = live.enroll()
    live.code()
    live.upload(a_token, [*f.one_of_each(), f.comparison("cmp-x", rating=None), f.comparison("cmp-x", rating=2),
                          f.message(content="Grüße, 東京 and emoji \U0001f600")])
    live.upload(b_token, [f.consent(["ratings"]), f.comparison(rating=5), f.message()])  # the message: refused
    live.upload(gone_token, [f.consent(), f.message()])
    assert httpx.post(f"{live.base_url}/v1/withdraw", headers={"Authorization": f"Bearer {gone_token}"}).is_success
    exported = httpx.get(f"{live.base_url}/v1/export/messages", headers=live.researcher())
    assert exported.is_success
    old = f.message(content="broken \ud800 text")
    with live.storage.write() as conn:
        conn.execute("INSERT INTO events (event_id, participant_id, kind, record_key, day, payload, received_at) "
                     "VALUES (?, ?, 'message', ?, '2026-11-20', ?, '2026-11-20T10:00:00+00:00')",
                     [old["event_id"], a_id, old["payload"]["message_id"], dumps(old["payload"])])


def export_files(storage: Storage | PgStorage, out: Path) -> dict[str, str]:
    export.export(storage, out, "csv", researcher="check", via="cli")
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(out.iterdir()) if p.name != export.SCHEMA_FILE}


@pytest.mark.sqlite_only("the pilot to move is a SQLite database")
def test_a_pilot_moves_to_postgres_and_exports_the_same_rows(live: LiveServer, pg_url: str, tmp_path: Path) -> None:
    filled_pilot(live)
    assert live.storage.rejections()
    source = live.storage.path
    before = export_files(live.storage, tmp_path / "sqlite-export")
    with live.storage.snapshot() as snap:
        counts = {t: snap.conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                  for t in ("study", "researcher_tokens", "enrollment_codes", "participants", "events", "tombstones",
                            "export_log", "rejections")}
    assert all(counts.values()), counts
    result = CliRunner().invoke(cli, ["migrate-to-postgres", "--from", str(source), "--to", pg_url])
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line.split() for line in result.output.splitlines() if line.split()}
    for table, n in counts.items():
        assert lines[table][1:3] == [str(n), str(n)], lines[table]
        assert len(lines[table][3]) == 64
    assert "Payloads repaired (lone surrogate or NUL written as U+FFFD): 1" in result.output
    assert "every table's rows and checksum agree" in result.output

    moved = open_storage(pg_url)
    try:
        assert isinstance(moved, PgStorage)
        # The moved study goes on: the same export rows, and new events are numbered after the copied ones.
        assert export_files(moved, tmp_path / "pg-export") == before
        assert moved.compliance() == live.storage.compliance()
        assert moved.rejections() == live.storage.rejections()
        assert moved.researcher_for(live.researcher_token) == "owner"
        last = moved.data_version()[0]
        participant = next(r["participant_id"] for r in moved.compliance() if r["withdrawn_at"] is None)
        moved.store_events(participant, [(e["event_id"], e["kind"], e["payload"]) for e in [f.message()]])
        assert moved.data_version()[0] == last + 1
    finally:
        moved.close()

    not_postgres = CliRunner().invoke(cli, ["migrate-to-postgres", "--from", str(source), "--to",
                                            str(tmp_path / "other.db")])
    assert not_postgres.exit_code == 2 and "postgresql://" in not_postgres.output
    again = CliRunner().invoke(cli, ["migrate-to-postgres", "--from", str(source), "--to", pg_url])
    assert again.exit_code == 1
    assert "is not empty" in again.output and "createdb" in again.output


@pytest.mark.sqlite_only("the pilot to move is a SQLite database")
def test_a_copy_that_differs_fails_and_names_the_table(live: LiveServer, pg_url: str) -> None:
    filled_pilot(live)
    # A fault inside the target database: a trigger alters every copied export log row.
    PgStorage(pg_url).close()  # the schema, still empty
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE FUNCTION tamper() RETURNS trigger AS $$ BEGIN NEW.researcher := 'someone else'; "
                     "RETURN NEW; END $$ LANGUAGE plpgsql")
        conn.execute("CREATE TRIGGER tamper BEFORE INSERT ON export_log FOR EACH ROW EXECUTE FUNCTION tamper()")
    result = CliRunner().invoke(cli, ["migrate-to-postgres", "--from", str(live.storage.path), "--to", pg_url])
    assert result.exit_code == 1
    assert "MISMATCH" in result.output
    assert "export_log: 1 rows in SQLite, 1 in PostgreSQL; the rows' checksums differ" in result.output
    assert "Do not serve from the PostgreSQL database" in result.output
