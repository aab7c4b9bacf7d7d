"""A new protocol version reaches enrolled apps at their next sync; a new consent text asks again first."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from sqlite_utils import Database

from studyapp.privacy.consent import ConsentService
from studyapp.server.cli import cli as server_cli
from studyapp.server.storage import Storage, StorageError
from studyapp.store.studies import StudyStore
from studyapp.study.protocol import parse_protocol, protocol_from_dict
from studyapp.sync.background import BackgroundSync
from studyapp.sync.enroll import EnrollError, enroll
from studyapp.sync.protocol import refresh_protocol
from studyapp.sync.server_client import MAX_ANSWER_BYTES, SyncError
from tests.server import live as f
from tests.server.live import LiveServer, serve
from tests.sync.helpers import enroll_and_consent

VERSION_2 = f.PROTOCOL.replace('version = "1"\nduration_days', 'version = "2"\nduration_days').replace(
    '''text = "You agree to take part."
''', '''text = "You agree to take part."

[[consent]]
version = "2"
title = "Consent, revised"
text = "You agree to take part, and to the new analysis of your ratings."
''')


def publish(live: LiveServer, text: str) -> None:
    protocol = parse_protocol(text)
    live.storage.update_protocol(study_id=protocol.id, title=protocol.title, version=protocol.version,
                                 protocol=text, protocol_data=protocol.to_dict())


async def test_a_new_version_is_stored_and_its_new_consent_stops_collection_until_agreed(
    live: LiveServer, client_db: Database
) -> None:
    await enroll_and_consent(client_db, live)
    assert await refresh_protocol(client_db) is None  # nothing new yet
    publish(live, VERSION_2)
    protocol = await refresh_protocol(client_db)
    assert protocol is not None and protocol.version == "2" and protocol.current_consent.version == "2"
    stored = protocol_from_dict(StudyStore(client_db).current().protocol)  # type: ignore[union-attr]
    assert stored.version == "2"
    consent = ConsentService(client_db)
    assert consent.needs_reconsent(stored)
    consent.grant(stored, f.ALL_CATEGORIES)
    assert not consent.needs_reconsent(stored)
    assert await refresh_protocol(client_db) is None


async def test_the_background_sync_reports_a_new_version(live: LiveServer, client_db: Database) -> None:
    await enroll_and_consent(client_db, live)
    background = BackgroundSync(client_db)
    assert not (await background.sync_once()).protocol_changed
    publish(live, VERSION_2)
    round_ = await background.sync_once()
    assert round_.protocol_changed and round_.error is None


def test_publishing_checks_the_study_and_the_version(live: LiveServer, tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="already at version"):
        publish(live, f.PROTOCOL)
    with pytest.raises(StorageError, match="holds study"):
        publish(live, VERSION_2.replace('id = "sync-test-2026"', 'id = "another-study"'))
    path = tmp_path / "v2.toml"
    path.write_text(VERSION_2)
    result = CliRunner().invoke(server_cli, ["update-protocol", "--protocol", str(path), "--db",
                                             live.db_arg])
    assert result.exit_code == 0, result.output
    assert "version 1 -> 2" in result.output
    assert live.storage.study()["version"] == "2"  # type: ignore[index]


# A hostile or broken server: the app never reads a file it names, nor an answer without end -----------------


def hostile_protocol(secret: Path, version: str) -> dict:
    """The study's protocol as a server could send it: the consent names a file on the participant's machine."""
    data = parse_protocol(f.PROTOCOL).to_dict()
    data["study"]["version"] = version
    data["consent"] = [{"version": "1", "title": "Consent", "file": str(secret)}]
    return data


async def test_a_protocol_naming_a_local_file_is_refused_and_the_file_never_read(
        live: LiveServer, client_db: Database, tmp_path: Path) -> None:
    await enroll_and_consent(client_db, live)
    before = StudyStore(client_db).current().protocol  # type: ignore[union-attr]
    secret = tmp_path / "private-notes.txt"
    secret.write_text("The participant's private notes.", encoding="utf-8")
    live.storage.update_protocol(study_id=f.STUDY_ID, title="Sync test study", version="2", protocol=f.PROTOCOL,
                                 protocol_data=hostile_protocol(secret, "2"))
    with pytest.raises(SyncError, match="must carry its consent texts inline") as info:
        await refresh_protocol(client_db)
    assert "private notes" not in str(info.value)
    stored = StudyStore(client_db).current().protocol  # type: ignore[union-attr]
    assert stored == before  # the protocol in use is kept
    assert "private notes" not in json.dumps(stored)
    # /dev/zero named the same way is refused just as fast: nothing is read.
    live.storage.update_protocol(study_id=f.STUDY_ID, title="Sync test study", version="3", protocol=f.PROTOCOL,
                                 protocol_data=hostile_protocol(Path("/dev/zero"), "3"))
    with pytest.raises(SyncError, match="inline"):
        await refresh_protocol(client_db)


async def test_enrolling_with_a_server_whose_protocol_names_a_file_fails_clearly(
        tmp_path: Path, client_db: Database) -> None:
    secret = tmp_path / "private-notes.txt"
    secret.write_text("The participant's private notes.", encoding="utf-8")
    storage = Storage(tmp_path / "hostile.db")
    storage.init_study(study_id=f.STUDY_ID, title="Hostile", version="1", protocol=f.PROTOCOL,
                       protocol_data=hostile_protocol(secret, "1"))
    code = storage.create_codes(1)[0]
    with serve(storage) as base_url:
        with pytest.raises(EnrollError, match="inline") as info:
            await enroll(client_db, base_url, code)
    storage.close()
    assert "private notes" not in str(info.value)
    assert StudyStore(client_db).current() is None


class Endless(httpx.AsyncByteStream):
    """An answer that never ends (a server streaming /dev/zero); counts what it has handed out."""

    def __init__(self) -> None:
        self.sent = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        chunk = b"0" * 65536
        while True:
            self.sent += len(chunk)
            yield chunk


async def test_an_endless_protocol_answer_is_cut_off_at_the_limit(live: LiveServer, client_db: Database) -> None:
    await enroll_and_consent(client_db, live)
    streams: list[Endless] = []

    def handler(request: httpx.Request) -> httpx.Response:
        streams.append(Endless())
        return httpx.Response(200, headers={"Content-Type": "application/json"}, stream=streams[-1])

    with pytest.raises(SyncError, match="more than 1 MiB"):
        await refresh_protocol(client_db, transport=httpx.MockTransport(handler))
    [stream] = streams
    assert MAX_ANSWER_BYTES["protocol"] < stream.sent <= MAX_ANSWER_BYTES["protocol"] + 2 * 65536
    # A declared length over the limit is refused before anything is read.
    declared = httpx.MockTransport(lambda request: httpx.Response(
        200, headers={"Content-Length": str(50 * 2**20)}, stream=Endless()))
    with pytest.raises(SyncError, match="more than 1 MiB"):
        await refresh_protocol(client_db, transport=declared)
