"""Randomized conditions on the collection server: blocked allocation at enrollment from a recorded seed, the
participant's own protocol, the condition in every export file, on both backends and across worker processes."""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from studyapp.server.backend import open_storage
from studyapp.server.cli import cli
from studyapp.server.export import RECORD_TYPE_NAMES
from studyapp.study.conditions import block_order
from studyapp.study.protocol import parse_protocol
from tests.server import live as f
from tests.server.live import LiveServer, serve, serve_workers
from tests.server.test_dashboard import logged_in
from tests.server.test_pg_storage import together

SEED = 20261130
CONDITIONS = '''
[conditions]
block_size = 4

[conditions.memory_on]
description = "Replies use what the assistant learned."

[conditions.memory_off]
description = "Ordinary replies without it."
personalization.memory = "off"
'''
NAMES = ("memory_off", "memory_on")  # by name


def protocol_text(conditions: str = CONDITIONS, version: str = "1") -> str:
    return f.PROTOCOL.replace('version = "1"\nduration_days', f'version = "{version}"\nduration_days') + conditions


def start(target: Path | str, text: str, seed: int | None = SEED) -> tuple[object, str]:
    storage = open_storage(target)
    protocol = parse_protocol(text, source=str(target))
    token = storage.init_study(study_id=protocol.id, title=protocol.title, version=protocol.version,
                               protocol=text, protocol_data=protocol.to_dict(), seed=seed)
    return storage, token


@pytest.fixture
def conditions_server(server_db: Path | str) -> Iterator[LiveServer]:
    storage, token = start(server_db, protocol_text())
    with serve(storage) as base_url:
        yield LiveServer(base_url, storage, token)
    storage.close()


def enroll(server: LiveServer) -> dict:
    response = httpx.post(f"{server.base_url}/v1/enroll", json={"code": server.code()})
    assert response.status_code == 201, response.text
    return response.json()


def assignments(server: LiveServer) -> list[tuple[str, str, int, int]]:
    """(participant, condition, block, position) in enrollment order."""
    return [(str(p), str(c), int(b), int(n)) for p, c, b, n in server.sql(
        "SELECT id, condition, condition_block, condition_position FROM participants "
        "ORDER BY condition_block, condition_position")]


def test_enrollments_are_balanced_in_blocks_and_reproduced_from_the_recorded_seed(
        conditions_server: LiveServer) -> None:
    server = conditions_server
    for _ in range(12):
        enroll(server)
    rows = assignments(server)
    assert [(b, n) for _, _, b, n in rows] == [(b, n) for b in (1, 2, 3) for n in (1, 2, 3, 4)]
    for block in (1, 2, 3):
        assert Counter(c for _, c, b, _ in rows if b == block) == {"memory_on": 2, "memory_off": 2}
    # Reproduced from the seed alone, as an auditor would.
    assert server.storage.allocation()["seed"] == SEED
    assert [c for _, c, _, _ in rows] == [c for b in (1, 2, 3) for c in block_order(SEED, b, NAMES, 4)]
    result = CliRunner().invoke(cli, ["allocation", "--db", server.db_arg])
    assert result.exit_code == 0, result.output
    assert f"seed: {SEED}" in result.output
    assert "12 assignments: memory_off 6, memory_on 6" in result.output
    assert " NO" not in result.output and result.output.count(" yes") == 12
    # The researchers' table shows each participant's condition.
    result = CliRunner().invoke(cli, ["participants", "--db", server.db_arg])
    assert result.exit_code == 0, result.output
    for participant, condition, _, _ in rows:
        assert any(line.startswith(participant) and f"  {condition} " in line for line in result.output.splitlines())
    listed = httpx.get(f"{server.base_url}/v1/participants", headers=server.researcher()).json()
    assert {r["participant_id"]: r["condition"] for r in listed} == {p: c for p, c, _, _ in rows}
    with logged_in(server) as http:
        page = http.get("/dashboard").text
    assert '<b id="condition-memory_off">6</b>in condition memory_off' in page
    assert '<b id="condition-memory_on">6</b>in condition memory_on' in page


def test_enrollments_at_once_on_one_server_stay_balanced(conditions_server: LiveServer) -> None:
    server = conditions_server
    codes = server.storage.create_codes(8)
    together(*[lambda code=code: httpx.post(f"{server.base_url}/v1/enroll", json={"code": code},
                                            timeout=60).raise_for_status() for code in codes])
    rows = assignments(server)
    assert [(b, n) for _, _, b, n in rows] == [(b, n) for b in (1, 2) for n in (1, 2, 3, 4)]
    assert [c for _, c, _, _ in rows] == [c for b in (1, 2) for c in block_order(SEED, b, NAMES, 4)]


def test_a_lost_reply_repeated_keeps_the_one_assignment(conditions_server: LiveServer) -> None:
    server = conditions_server
    code = server.code()
    claim = "c" * 32
    first = httpx.post(f"{server.base_url}/v1/enroll", json={"code": code, "claim": claim}).json()
    again = httpx.post(f"{server.base_url}/v1/enroll", json={"code": code, "claim": claim}).json()
    assert first["participant_id"] == again["participant_id"]
    assert len(server.storage.allocation()["slots"]) == 1
    assert first["protocol_resolved"] == again["protocol_resolved"]


def test_the_participant_receives_only_their_conditions_protocol(conditions_server: LiveServer) -> None:
    server = conditions_server
    answers = [enroll(server) for _ in range(4)]
    conditions = dict((p, c) for p, c, _, _ in assignments(server))
    for answer in answers:
        own = conditions[answer["participant_id"]]
        other = next(n for n in NAMES if n != own)
        resolved = answer["protocol_resolved"]
        assert "conditions" not in resolved and "condition" not in resolved
        # Nothing in the answer names any condition: the text is the participant's protocol too.
        assert own not in json.dumps(answer) and other not in json.dumps(answer)
        assert json.loads(answer["protocol"]) == resolved
        assert (resolved.get("personalization", {}).get("memory", "on") == "off") == (own == "memory_off")
        again = httpx.get(f"{server.base_url}/v1/protocol",
                          headers={"Authorization": f"Bearer {answer['token']}"}).json()
        assert again["protocol_resolved"] == resolved and other not in json.dumps(again)


def test_a_study_that_reveals_conditions_names_the_participants_own(server_db: Path | str) -> None:
    storage, token = start(server_db, protocol_text(CONDITIONS.replace("block_size = 4", "block_size = 2\n"
                                                                                         "reveal = true")))
    with serve(storage) as base_url:
        server = LiveServer(base_url, storage, token)
        answers = [enroll(server) for _ in range(2)]
    storage.close()
    named = sorted(a["protocol_resolved"]["condition"] for a in answers)
    assert named == ["memory_off", "memory_on"]
    for answer in answers:
        other = next(n for n in NAMES if n != answer["protocol_resolved"]["condition"])
        assert other not in json.dumps(answer) and "conditions" not in answer["protocol_resolved"]


def test_participants_enrolled_before_the_study_had_conditions_have_none(server_db: Path | str,
                                                                        tmp_path: Path) -> None:
    storage, token = start(server_db, protocol_text(conditions=""), seed=None)
    seed = storage.allocation()["seed"]
    assert seed is not None  # made at init, for a protocol that adds conditions later
    with serve(storage) as base_url:
        server = LiveServer(base_url, storage, token)
        early = enroll(server)
        assert storage.allocation()["slots"] == []
        text = protocol_text(version="2")
        protocol = parse_protocol(text)
        storage.update_protocol(study_id=protocol.id, title=protocol.title, version="2", protocol=text,
                                protocol_data=protocol.to_dict())
        later = enroll(server)
        early_now = httpx.get(f"{base_url}/v1/protocol",
                              headers={"Authorization": f"Bearer {early['token']}"}).json()
        # The study's own settings, without the conditions it now has.
        assert early_now["version"] == "2" and "conditions" not in early_now["protocol_resolved"]
        assert "memory_o" not in json.dumps(early_now)
        server.upload(later["token"], [f.consent(), f.message()]).raise_for_status()
        server.upload(early["token"], [f.consent(), f.message()]).raise_for_status()
        out = tmp_path / "export"
        result = CliRunner().invoke(cli, ["export", "--format", "csv", "--out", str(out), "--db", server.db_arg])
        assert result.exit_code == 0, result.output
    storage.close()
    later_condition = block_order(seed, 1, NAMES, 4)[0]
    for name in RECORD_TYPE_NAMES:
        with (out / f"{name}.csv").open(newline="", encoding="utf-8") as file:
            reader = csv.reader(file)
            header = next(reader)
            assert header[:3] == ["study_id", "participant_id", "condition"], name
            rows = {row[1]: row[2] for row in reader}
        if name in ("participants", "messages", "consents"):
            assert rows == {early["participant_id"]: "", later["participant_id"]: later_condition}, name
    schema = json.loads((out / "schema.json").read_text())
    assert all(file["columns"][2] == {"name": "condition", "type": "string"} for file in schema["files"])


def test_a_withdrawal_keeps_the_allocation_but_not_the_link(conditions_server: LiveServer) -> None:
    server = conditions_server
    answers = [enroll(server) for _ in range(3)]
    gone = answers[1]
    response = httpx.post(f"{server.base_url}/v1/withdraw", headers={"Authorization": f"Bearer {gone['token']}"})
    assert response.status_code == 200
    assert len(server.storage.allocation()["slots"]) == 3  # the block's balance is still auditable
    assert gone["participant_id"] not in "".join(str(row) for row in server.sql("SELECT * FROM allocation_slots"))
    enroll(server)  # the next enrollment takes the fourth slot of the block, not the withdrawn one's
    slots = server.storage.allocation()["slots"]
    assert [(s["block"], s["position"]) for s in slots] == [(1, 1), (1, 2), (1, 3), (1, 4)]
    assert Counter(s["condition"] for s in slots) == {"memory_on": 2, "memory_off": 2}
    rows = {r["participant_id"]: r["condition"] for r in server.storage.compliance()}
    assert rows[gone["participant_id"]] is None


def test_concurrent_enrollments_on_several_workers_stay_balanced(pg_url: str) -> None:
    storage, _ = start(pg_url, protocol_text())
    codes = storage.create_codes(24)
    storage.close()
    with serve_workers(pg_url, workers=2) as server:
        def enroll_with(code: str) -> tuple[str, str]:
            response = httpx.post(f"{server.base_url}/v1/enroll", json={"code": code}, timeout=60)
            assert response.status_code == 201, response.text
            return response.json()["participant_id"], response.headers["X-Studyapp-Worker"]

        answers = together(*[lambda code=code: enroll_with(code) for code in codes])
    assert len({worker for _, worker in answers}) == 2  # both processes allocated
    storage = open_storage(pg_url)
    try:
        slots = storage.allocation()["slots"]
        assert [(s["block"], s["position"]) for s in slots] == [(b, n) for b in range(1, 7) for n in range(1, 5)]
        for block in range(1, 7):
            assert Counter(s["condition"] for s in slots if s["block"] == block) == {"memory_on": 2, "memory_off": 2}
        assert [s["condition"] for s in slots] == [c for b in range(1, 7) for c in block_order(SEED, b, NAMES, 4)]
        enrolled = {r["participant_id"]: r["condition"] for r in storage.compliance()}
        assert set(enrolled) == {p for p, _ in answers} and Counter(enrolled.values()) == {"memory_on": 12,
                                                                                           "memory_off": 12}
    finally:
        storage.close()


def test_a_protocol_with_other_conditions_starts_a_new_block(server_db: Path | str) -> None:
    storage, _ = start(server_db, protocol_text())
    try:
        first = [storage.enroll(code) for code in storage.create_codes(2)]
        three = CONDITIONS.replace("block_size = 4", "block_size = 3") + "\n[conditions.pinned]\n"
        text = protocol_text(three, version="2")
        protocol = parse_protocol(text)
        storage.update_protocol(study_id=protocol.id, title=protocol.title, version="2", protocol=text,
                                protocol_data=protocol.to_dict())
        later = [storage.enroll(code) for code in storage.create_codes(3)]
        assert all(first) and all(later)
        slots = storage.allocation()["slots"]
        # The first block keeps its two slots; the new scheme fills a block of its own, balanced.
        assert [(s["block"], s["position"], s["block_size"]) for s in slots] == [
            (1, 1, 4), (1, 2, 4), (2, 1, 3), (2, 2, 3), (2, 3, 3)]
        assert sorted(s["condition"] for s in slots[2:]) == ["memory_off", "memory_on", "pinned"]
        assert [s["condition"] for s in slots[2:]] == block_order(SEED, 2, ("memory_off", "memory_on", "pinned"), 3)
    finally:
        storage.close()


def test_init_records_the_seed_it_is_given_or_makes_one(tmp_path: Path) -> None:
    study = tmp_path / "study.toml"
    study.write_text(protocol_text(), encoding="utf-8")
    db = tmp_path / "given.db"
    result = CliRunner().invoke(cli, ["init", "--protocol", str(study), "--db", str(db), "--seed", "7"])
    assert result.exit_code == 0, result.output
    assert "allocation seed 7 (recorded;" in result.output
    result = CliRunner().invoke(cli, ["allocation", "--db", str(db)])
    assert result.exit_code == 0 and "seed: 7" in result.output
    assert "No participant has been assigned a condition." in result.output
    made = tmp_path / "made.db"
    result = CliRunner().invoke(cli, ["init", "--protocol", str(study), "--db", str(made)])
    assert result.exit_code == 0, result.output
    storage = open_storage(made)
    try:
        seed = storage.allocation()["seed"]
    finally:
        storage.close()
    assert isinstance(seed, int) and f"allocation seed {seed} " in result.output
    result = CliRunner().invoke(cli, ["init", "--protocol", str(study), "--db", str(tmp_path / "x.db"),
                                      "--seed", "-1"])
    assert result.exit_code == 2 and "Invalid value for '--seed'" in result.output
    assert "Traceback" not in result.output


def test_a_condition_that_cannot_be_built_is_a_clear_503_never_the_studys_own_settings(
        conditions_server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> None:
    from studyapp.study.protocol import Protocol, ProtocolError

    def broken(self: Protocol, name: str) -> Protocol:  # the fault: a stored condition that no longer lays over
        raise ProtocolError("the stored protocol", [f"conditions.{name}.comparisons: out of range"])

    monkeypatch.setattr(Protocol, "for_condition", broken)
    response = httpx.post(f"{conditions_server.base_url}/v1/enroll", json={"code": conditions_server.code()})
    assert response.status_code == 503, response.text
    assert "must publish a corrected protocol" in response.json()["detail"]
    monkeypatch.undo()
    assert enroll(conditions_server)["protocol_resolved"]  # the next enrollment is served as before
