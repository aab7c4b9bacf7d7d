"""The server's storage on both backends: SQLite (a file) and PostgreSQL (a real throwaway cluster, see
tests/support/postgres.py). The same tests run on each; the first ones are about PostgreSQL's own migrations."""

from __future__ import annotations

import functools
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psycopg
import pytest

from studyapp.migrations import server_pg
from studyapp.server import export
from studyapp.server.backend import open_storage
from studyapp.server.ingest import ParticipantGone, StorageError
from studyapp.server.pg_storage import PgStorage, shown
from studyapp.server.storage import Storage
from studyapp.study.protocol import parse_protocol
from tests.server import live as f
from tests.support.net import free_port

T = TypeVar("T")
TABLES = {"study", "researcher_tokens", "enrollment_codes", "participants", "events", "tombstones", "export_log",
          "rejections", "gateway_models", "gateway_limits", "gateway_usage", "gateway_rate", "allocation",
          "allocation_slots"}


def init(storage: Storage | PgStorage) -> str:
    protocol = parse_protocol(f.PROTOCOL, source="test")
    return storage.init_study(study_id=protocol.id, title=protocol.title, version=protocol.version,
                              protocol=f.PROTOCOL, protocol_data=protocol.to_dict())


@pytest.fixture(params=["sqlite", "postgresql"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage | PgStorage]:
    """A migrated storage holding the test study, on each backend."""
    target: str | Path = (tmp_path / "server.db" if request.param == "sqlite"
                          else request.getfixturevalue("pg_url"))
    opened = open_storage(target)
    init(opened)
    yield opened
    opened.close()


def rows(events: list[dict[str, Any]]) -> list[tuple[str, str, Any]]:
    return [(e["event_id"], e["kind"], e["payload"]) for e in events]


def enrolled(storage: Storage | PgStorage) -> tuple[str, str]:
    found = storage.enroll(storage.create_codes(1)[0])
    assert found is not None
    return found


def together(*calls: Callable[[], T]) -> list[T]:
    """Run the calls on threads of their own, released at the same moment; their results in order (a call's
    exception is raised here)."""
    start = threading.Barrier(len(calls))

    def run(call: Callable[[], T]) -> T:
        start.wait()
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        futures = [pool.submit(run, call) for call in calls]
        return [future.result() for future in futures]


# -- PostgreSQL migrations ----------------------------------------------------------------------------------------


def test_a_blank_database_is_migrated_to_the_servers_schema(pg_url: str) -> None:
    storage = PgStorage(pg_url)
    try:
        assert set(storage.table_names()) == TABLES | {server_pg.TABLE}
        with psycopg.connect(pg_url) as conn:
            applied = server_pg.applied(conn)
            unique = {(table, tuple(columns)) for table, columns in conn.execute(
                """
                SELECT c.conrelid::regclass::text,
                       array_agg(a.attname::text ORDER BY array_position(c.conkey, a.attnum))
                FROM pg_constraint c JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY(c.conkey)
                WHERE c.contype IN ('u', 'p') AND c.connamespace = 'public'::regnamespace
                GROUP BY c.oid, c.conrelid
                """)}
        assert applied == [name for name, _ in server_pg.STEPS]
        # Exactly once rests on these keys (events.event_id above all); tokens and codes are found by their hash.
        assert {("events", ("event_id",)), ("events", ("n",)), ("participants", ("token_hash",)),
                ("participants", ("code_hash",)), ("tombstones", ("token_hash",)),
                ("researcher_tokens", ("token_hash",)), ("enrollment_codes", ("code_hash",)),
                ("rejections", ("participant_id", "kind", "reason")),
                ("allocation_slots", ("block", "position"))} <= unique
    finally:
        storage.close()
    # Opening it again applies nothing more.
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert server_pg.apply(conn) == []
        assert server_pg.applied(conn) == applied


def test_servers_starting_together_migrate_once(pg_url: str) -> None:
    for storage in together(*[lambda: PgStorage(pg_url)] * 3):
        storage.close()
    with psycopg.connect(pg_url) as conn:
        assert server_pg.applied(conn) == [name for name, _ in server_pg.STEPS]


def test_a_database_of_another_program_is_refused_and_left_alone(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE invoices (id INTEGER)")
    with pytest.raises(StorageError, match="belongs to another program"):
        PgStorage(pg_url)
    with psycopg.connect(pg_url) as conn:
        tables = [r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
    assert tables == ["invoices"]


def test_an_unreachable_database_is_named_without_its_password() -> None:
    url = f"postgresql://someone:s3cret@127.0.0.1:{free_port()}/study"
    with pytest.raises(StorageError, match="Cannot connect") as raised:
        PgStorage(url, connect_timeout=1)
    assert "s3cret" not in str(raised.value)
    assert f"postgresql://someone@127.0.0.1:{url.split(':')[3]}" in str(raised.value)


def test_a_password_given_as_a_parameter_is_not_shown_either() -> None:
    assert shown("postgresql://someone@db.example/study?password=s3cret&sslmode=require") == (
        "postgresql://someone@db.example/study")
    assert shown("postgresql://someone@db.example:5433/study") == "postgresql://someone@db.example:5433/study"


def test_the_url_chooses_the_backend(tmp_path: Path, pg_url: str) -> None:
    sqlite = open_storage(tmp_path / "server.db")
    postgres = open_storage(pg_url)
    try:
        assert isinstance(sqlite, Storage)
        assert isinstance(postgres, PgStorage)
    finally:
        sqlite.close()
        postgres.close()


# -- the same behaviour on both backends --------------------------------------------------------------------------


def test_the_study_is_created_once_and_its_protocol_updated(storage: Storage | PgStorage) -> None:
    assert storage.require_study()["id"] == f.STUDY_ID
    with pytest.raises(StorageError, match="already holds a study"):
        init(storage)
    protocol = parse_protocol(f.PROTOCOL.replace('version = "1"\nduration', 'version = "2"\nduration'),
                              source="test")
    replaced = storage.update_protocol(study_id=protocol.id, title=protocol.title, version="2",
                                       protocol=f.PROTOCOL, protocol_data=protocol.to_dict())
    assert replaced == "1"
    assert storage.require_study()["version"] == "2"
    with pytest.raises(StorageError, match="already at version"):
        storage.update_protocol(study_id=protocol.id, title=protocol.title, version="2", protocol=f.PROTOCOL,
                                protocol_data=protocol.to_dict())


def test_researcher_tokens(storage: Storage | PgStorage) -> None:
    token = storage.add_researcher("second")
    assert storage.researcher_for(token) == "second"
    assert storage.researcher_for(token + "x") is None


def test_a_code_enrolls_once_and_a_lost_reply_is_answered_again(storage: Storage | PgStorage) -> None:
    first, second = storage.create_codes(2)
    assert storage.code_counts() == {"total": 2, "used": 0, "unused": 2}
    participant_id, token = storage.enroll(first, claim="claim-1") or ("", "")
    assert storage.participant_for(token) == participant_id
    assert storage.enroll(first) is None  # used, and no claim
    assert storage.enroll(first, claim="another app") is None
    again = storage.enroll(first, claim="claim-1")
    assert again is not None and again[0] == participant_id and again[1] != token
    assert storage.participant_for(token) is None  # the first token was replaced
    assert storage.participant_for(again[1]) == participant_id
    assert storage.enroll("NOT-A-CODE") is None
    assert storage.code_counts() == {"total": 2, "used": 1, "unused": 1}
    other = storage.enroll(second)
    assert other is not None and other[0] != participant_id


def test_events_are_accepted_once_refused_with_a_reason_and_counted(storage: Storage | PgStorage) -> None:
    participant_id, _ = enrolled(storage)
    consent, message = f.consent(), f.message()
    unconsented = f.message()
    results = storage.store_events(participant_id, rows([unconsented]))
    assert [r.status for r in results] == ["rejected"]
    assert "not consented" in (results[0].reason or "")
    results = storage.store_events(participant_id, rows([consent, message, message]))
    assert [r.status for r in results] == ["accepted", "accepted", "duplicate"]
    again = storage.store_events(participant_id, rows([consent, message, unconsented]))
    assert [r.status for r in again] == ["duplicate", "duplicate", "accepted"]
    assert storage.count_events() == 3
    assert storage.event_ids(participant_id) == [consent["event_id"], message["event_id"],
                                                 unconsented["event_id"]]
    assert [(r["kind"], r["events"]) for r in storage.rejections()] == [("message", 1)]
    bad_consent = f.consent(sha256="0" * 64)
    assert storage.store_events(participant_id, rows([bad_consent]))[0].reason == (
        "consent_sha256 does not match the text of consent document version 1")


def test_an_event_id_of_another_participant_is_refused(storage: Storage | PgStorage) -> None:
    a, _ = enrolled(storage)
    b, _ = enrolled(storage)
    consent = f.consent()
    storage.store_events(a, rows([consent]))
    [result] = storage.store_events(b, rows([consent]))
    assert result.status == "rejected" and "already used by another record" in (result.reason or "")
    assert storage.event_ids(b) == []


def test_the_same_batch_from_two_threads_at_once_is_stored_once(storage: Storage | PgStorage) -> None:
    participant_id, _ = enrolled(storage)
    batch = rows([f.consent()] + [f.message() for _ in range(300)])
    answers = [[r.status for r in results]
               for results in together(*[lambda: storage.store_events(participant_id, batch)] * 2)]
    assert storage.count_events() == len(batch)
    assert storage.event_ids(participant_id) == [event_id for event_id, _, _ in batch]
    # One upload stored each event, the other was told it is a duplicate.
    per_event = [Counter(statuses) for statuses in zip(*answers, strict=True)]
    assert all(c == Counter({"accepted": 1, "duplicate": 1}) for c in per_event)


def test_two_participants_racing_for_the_same_ids_store_each_once(storage: Storage | PgStorage) -> None:
    participants = [enrolled(storage)[0] for _ in range(2)]
    for participant_id in participants:
        storage.store_events(participant_id, rows([f.consent()]))
    shared = rows([f.message() for _ in range(300)])
    a, b = together(*[functools.partial(storage.store_events, p, shared) for p in participants])
    assert storage.count_events() == 2 + len(shared)
    for one, other in zip(a, b, strict=True):
        assert sorted([one.status, other.status]) == ["accepted", "rejected"]
    taken = sum(r["events"] for r in storage.rejections())
    assert taken == len(shared)


def test_withdrawal_deletes_the_participants_rows_and_leaves_a_tombstone(storage: Storage | PgStorage) -> None:
    leaving, token = enrolled(storage)
    staying, _ = enrolled(storage)
    storage.store_events(leaving, rows([f.consent(), f.message(), f.message(content="x" * 3, day="not a day")]))
    storage.store_events(leaving, rows([f.event("nonsense", {})]))
    storage.store_events(staying, rows([f.consent(), f.message()]))
    assert storage.rejections()
    stone = storage.withdraw(token)
    assert stone is not None and stone["participant_id"] == leaving
    assert storage.event_ids(leaving) == []
    assert len(storage.event_ids(staying)) == 2
    assert storage.rejections() == []
    assert storage.participant_for(token) is None
    assert storage.tombstone_for(token) == stone
    assert storage.withdraw(token) == stone  # a repeated request (the reply was lost) answers the same
    with pytest.raises(ParticipantGone):
        storage.store_events(leaving, rows([f.message()]))
    assert storage.withdraw("unknown token") is None


def test_the_export_log(storage: Storage | PgStorage) -> None:
    storage.log_export(researcher="owner", via="cli", fmt="jsonl", record_types=["messages"], rows=3,
                       destination="out/")
    [entry] = storage.export_log()
    assert (entry["researcher"], entry["format"], entry["rows"], entry["record_types"]) == (
        "owner", "jsonl", 3, '["messages"]')


def test_bulk_insert_stores_checked_rows(storage: Storage | PgStorage) -> None:
    participant_id, _ = enrolled(storage)
    events = [f.message() for _ in range(50)]
    assert storage.bulk_insert_events(participant_id, [(e["event_id"], e["kind"], e["payload"]) for e in events]) == 50
    assert storage.event_ids(participant_id) == [e["event_id"] for e in events]


def test_a_snapshot_sees_the_database_as_it_was_at_its_first_read(storage: Storage | PgStorage) -> None:
    participant_id, _ = enrolled(storage)
    storage.store_events(participant_id, rows([f.consent(), f.message(), f.message()]))
    with storage.snapshot() as snapshot:
        last = snapshot.last_event
        storage.store_events(participant_id, rows([f.message()]))
        assert snapshot.count_records("message") == 2
        assert len(list(snapshot.records("message"))) == 2
        assert snapshot.data_version()[:2] == (last, 3)
        assert [r["participant_id"] for r in snapshot.participant_records()] == [participant_id]
    with storage.snapshot() as snapshot:
        assert snapshot.count_records("message") == 3
        assert snapshot.last_event > last


def test_a_snapshot_holds_exactly_the_events_up_to_its_last_event(storage: Storage | PgStorage,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """An export names its snapshot by its last event number: the events numbered up to it must all be in it. An
    upload that took its event numbers first but commits last must not leave a gap below a later upload's events
    (PostgreSQL has no process-wide write lock; event inserts take an advisory lock until commit)."""
    a_id, _ = enrolled(storage)
    b_id, _ = enrolled(storage)
    storage.store_events(a_id, rows([f.consent()]))
    storage.store_events(b_id, rows([f.consent()]))
    inserted, release = threading.Event(), threading.Event()
    real_insert = type(storage)._insert_events

    def insert_then_pause(self: Any, conn: Any, batch: list[Any]) -> Any:  # the fault: A's commit is held back
        result = real_insert(self, conn, batch)
        if batch[0][1] == a_id:
            inserted.set()
            assert release.wait(30)
        return result

    monkeypatch.setattr(type(storage), "_insert_events", insert_then_pause)

    def b_waits() -> bool:
        if not isinstance(storage, PgStorage):
            return True  # SQLite: A holds the process's write lock, B cannot write before A commits
        with psycopg.connect(storage.url) as conn:
            return conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                                ).fetchone()[0] > 0

    with ThreadPoolExecutor(2) as pool:
        a_upload = pool.submit(storage.store_events, a_id, rows([f.message()]))
        assert inserted.wait(30)
        b_upload = pool.submit(storage.store_events, b_id, rows([f.message()]))
        deadline = time.monotonic() + 30
        while not (b_upload.done() or b_waits()):  # B has committed, or waits for A
            assert time.monotonic() < deadline, "the second upload neither finished nor waited"
        with storage.snapshot() as snapshot:
            last = snapshot.last_event
            seen = snapshot.conn.execute("SELECT count(*) FROM events").fetchone()[0]
        release.set()
        assert [r.status for r in a_upload.result() + b_upload.result()] == ["accepted", "accepted"]
    with storage.snapshot() as snapshot:
        assert snapshot.conn.execute("SELECT count(*) FROM events WHERE n <= ?", [last]).fetchone()[0] == seen
        assert snapshot.count_records("message") == 2


def test_an_export_writes_every_record_and_is_logged(storage: Storage | PgStorage, tmp_path: Path) -> None:
    participant_id, _ = enrolled(storage)
    storage.store_events(participant_id, rows(f.one_of_each()))
    edited = f.attribute("a-edited", text="Likes hiking")
    storage.store_events(participant_id, rows([edited, f.attribute("a-edited", text="Likes climbing")]))
    leaving, token = enrolled(storage)
    storage.withdraw(token)
    counts = export.export(storage, tmp_path / "out", "jsonl", researcher="owner")
    assert counts["participants"] == 2  # one enrolled, one tombstone
    assert counts["messages"] == 1
    attributes = [json.loads(line) for line in (tmp_path / "out" / "attributes.jsonl").read_text().splitlines()]
    assert sorted(a["text"] for a in attributes) == ["Likes climbing", "Likes hiking"]  # the latest of each record
    assert leaving not in (tmp_path / "out" / "messages.jsonl").read_text()
    assert storage.export_log()[-1]["rows"] == sum(counts.values())


def test_the_researchers_overview(storage: Storage | PgStorage) -> None:
    participant_id, _ = enrolled(storage)
    gone, token = enrolled(storage)
    storage.store_events(participant_id, rows([
        f.consent(), f.message(day="2026-11-20"), f.message(day="2026-11-21"),
        f.comparison("c1", rating=None, day="2026-11-21"), f.comparison("c2", rating=3, day="2026-11-22")]))
    # c1 is rated later: the latest event of the record counts.
    storage.store_events(participant_id, rows([f.comparison("c1", rating=5, day="2026-11-22")]))
    storage.withdraw(token)
    overview = {r["participant_id"]: r for r in storage.compliance()}
    assert overview[participant_id]["events"] == 6
    assert overview[participant_id]["comparisons_rated"] == 2
    assert overview[participant_id]["days_active"] == 3
    assert overview[gone]["withdrawn_at"] is not None
    assert storage.rated_comparisons_by_day() == {participant_id: {"2026-11-22": 2}}
    last, events, tombstones = storage.data_version()
    assert (events, tombstones) == (6, 1) and last >= 6


def test_the_server_over_http(storage: Storage | PgStorage) -> None:
    token = storage.add_researcher("http")
    with f.serve(storage) as base_url:  # type: ignore[arg-type]  # either backend
        live = f.LiveServer(base_url, storage, token)  # type: ignore[arg-type]
        participant_id, participant_token = live.enroll()
        batch = [f.consent(), f.message()]
        assert [r["status"] for r in live.upload(participant_token, batch).json()["results"]] == ["accepted"] * 2
        assert [r["status"] for r in live.upload(participant_token, batch).json()["results"]] == ["duplicate"] * 2
        overview = httpx.get(f"{base_url}/v1/participants", headers=live.researcher()).json()
        assert [(p["participant_id"], p["events"]) for p in overview] == [(participant_id, 2)]
        exported = httpx.get(f"{base_url}/v1/export/messages", headers=live.researcher())
        assert exported.headers["X-Export-Rows"] == "1"
        assert [json.loads(line)["message_id"] for line in exported.text.splitlines()] == [
            batch[1]["payload"]["message_id"]]
        withdrawn = httpx.post(f"{base_url}/v1/withdraw", headers={"Authorization": f"Bearer {participant_token}"})
        assert withdrawn.json()["status"] == "confirmed"
        assert live.upload(participant_token, [f.message()]).status_code == 410
    assert storage.event_ids() == []


def test_a_consent_document_published_while_the_server_runs_is_accepted(storage: Storage | PgStorage) -> None:
    participant_id, _ = enrolled(storage)
    assert [r.status for r in storage.store_events(participant_id, rows([f.consent()]))] == ["accepted"]
    text = (f.PROTOCOL.replace('version = "1"\nduration', 'version = "2"\nduration')
            + '\n[[consent]]\nversion = "2"\ntitle = "Consent"\ntext = "You agree to take part, again."\n')
    protocol = parse_protocol(text, source="test")
    # Published through another storage object, as `studyapp-server update-protocol` does from its own process.
    other = open_storage(storage.path if isinstance(storage, Storage) else storage.url)
    try:
        other.update_protocol(study_id=protocol.id, title=protocol.title, version="2", protocol=text,
                              protocol_data=protocol.to_dict())
    finally:
        other.close()
    results = storage.store_events(participant_id, rows([f.consent(version="2",
                                                                   sha256=protocol.current_consent.sha256)]))
    assert [(r.status, r.reason) for r in results] == [("accepted", None)]


def test_postgresql_unavailable_answers_503_with_retry_after(pg_url: str, monkeypatch: pytest.MonkeyPatch,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    storage = open_storage(pg_url)
    init(storage)
    try:
        _, token = enrolled(storage)

        def unavailable(*args: Any, **kwargs: Any) -> Any:  # the injected fault: a failover mid-request
            raise psycopg.OperationalError("server closed the connection unexpectedly")

        monkeypatch.setattr(PgStorage, "store_events", unavailable)
        with f.serve(storage) as base_url:  # type: ignore[arg-type]
            response = f.LiveServer(base_url, storage, "").upload(token, [f.consent()])  # type: ignore[arg-type]
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "1"
        assert "unexpectedly" not in response.text  # the reason goes to the log, not to the client
        assert any("database unavailable" in r.getMessage() for r in caplog.records)
    finally:
        storage.close()
