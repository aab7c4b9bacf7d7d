"""A new protocol version reaches enrolled apps at their next sync; a new consent text asks again first."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlite_utils import Database

from studyapp.privacy.consent import ConsentService
from studyapp.server.cli import cli as server_cli
from studyapp.server.storage import StorageError
from studyapp.store.studies import StudyStore
from studyapp.study.protocol import parse_protocol, protocol_from_dict
from studyapp.sync.background import BackgroundSync
from studyapp.sync.protocol import refresh_protocol
from tests.server import live as f
from tests.server.live import LiveServer
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
                                             str(live.storage.path)])
    assert result.exit_code == 0, result.output
    assert "version 1 -> 2" in result.output
    assert live.storage.study()["version"] == "2"  # type: ignore[index]
