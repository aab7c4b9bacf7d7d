"""Apps enrolling in a study with conditions: each stores only its own condition's protocol, and keeps it when the
study publishes a new version."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from studyapp.store.db import open_database
from studyapp.store.studies import StudyStore
from studyapp.study.current import current_study
from studyapp.study.protocol import parse_protocol
from studyapp.sync.enroll import enroll
from studyapp.sync.protocol import refresh_protocol
from tests.server.live import LiveServer, serve
from tests.server.test_conditions import CONDITIONS, protocol_text, start
from tests.support.keyring import MemoryKeyring

PAIRS = CONDITIONS.replace("block_size = 4", "block_size = 2")


@pytest.fixture
def conditions_live(tmp_path: Path) -> Iterator[LiveServer]:
    storage, token = start(tmp_path / "server.db", protocol_text(PAIRS))
    with serve(storage) as base_url:
        yield LiveServer(base_url, storage, token)
    storage.close()


async def test_two_apps_run_their_own_conditions_and_keep_them_across_versions(
        conditions_live: LiveServer, tmp_path: Path, memory_keyring: MemoryKeyring) -> None:
    server = conditions_live
    installs = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        db = open_database(tmp_path / name / "studyapp.db")
        enrollment = await enroll(db, server.base_url, server.code())
        # Two installs on one machine share its keyring: each keeps its own token as on its own computer.
        installs.append((db, enrollment.participant_id, dict(memory_keyring.passwords)))
    assigned = {str(p): str(c) for p, c in server.sql("SELECT id, condition FROM participants")}
    assert sorted(assigned.values()) == ["memory_off", "memory_on"]  # one block of two: one each
    for db, participant_id, _ in installs:
        stored = StudyStore(db).current()
        assert stored is not None and "conditions" not in stored.protocol
        assert "memory_o" not in json.dumps(stored.protocol)  # neither name: this study does not reveal them
        protocol = current_study(db).protocol
        assert protocol.personalization.memory_in_replies == (assigned[participant_id] == "memory_on")
        assert protocol.condition is None
    version_2 = protocol_text(PAIRS.replace('personalization.memory = "off"',
                                            'personalization.memory = "off"\ndisplay.show_memory_use = false'),
                              version="2")
    new = parse_protocol(version_2)
    server.storage.update_protocol(study_id=new.id, title=new.title, version="2", protocol=version_2,
                                   protocol_data=new.to_dict())
    for db, participant_id, keyring in installs:
        memory_keyring.passwords = dict(keyring)
        refreshed = await refresh_protocol(db)
        assert refreshed is not None and refreshed.version == "2"
        off = assigned[participant_id] == "memory_off"
        protocol = current_study(db).protocol
        assert protocol.personalization.memory_in_replies is not off
        assert protocol.display.show_memory_use is not off
        db.close()
