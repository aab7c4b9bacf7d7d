"""Invariant 4 in this part: secrets held in the keyring never reach a file under the data dir."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from click.testing import CliRunner

from studyapp import secrets
from studyapp.cli import cli
from studyapp.privacy.anonymize import Anonymizer
from studyapp.privacy.collect import Collector
from studyapp.privacy.consent import ConsentService
from studyapp.privacy.review import ReviewService
from studyapp.store.db import open_database
from studyapp.study.current import save_enrollment
from tests.privacy.conftest import make_protocol
from tests.privacy.scan import scan_for_secrets
from tests.privacy.test_collect import message
from tests.support.keyring import MemoryKeyring, memory_keyring  # noqa: F401

TOKEN = "stp_9f8e7d6c5b4a39281706f5e4d3c2b1a0"
API_KEY = "sk-test-4242424242424242424242424242"


def test_scan_finds_secrets_in_any_encoding(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "config.toml").write_text(f'token = "{TOKEN}"\n')
    (tmp_path / "log.txt").write_bytes(("key: " + API_KEY).encode("utf-16-le"))
    (tmp_path / "blob.bin").write_bytes(base64.b64encode(b"xy" + TOKEN.encode()))
    (tmp_path / "clean.txt").write_text("nothing here")
    leaks = scan_for_secrets(tmp_path, {"token": TOKEN, "api key": API_KEY})
    found = {(leak.path.name, leak.secret, leak.encoding[:6]) for leak in leaks}
    assert found == {("config.toml", "token", "utf-8"), ("log.txt", "api key", "utf-16"),
                     ("blob.bin", "token", "base64")}
    with pytest.raises(ValueError, match="shorter than 8"):
        scan_for_secrets(tmp_path, ["abc"])


def test_no_secret_reaches_the_data_dir_in_a_privacy_session(tmp_path: Path, memory_keyring: MemoryKeyring) -> None:
    data = tmp_path / "data"
    data.mkdir()
    protocol = make_protocol(review_uploads=True)
    secrets.set_participant_token(protocol.id, TOKEN)
    secrets.set_api_key("default", API_KEY)
    db = open_database(data / "studyapp.db")
    save_enrollment(db, protocol, participant_id="p-1")
    runner = CliRunner(env={"STUDYAPP_DATA_DIR": str(data)})
    assert runner.invoke(cli, ["consent", "--accept", "ratings,conversation_text"]).exit_code == 0
    assert runner.invoke(cli, ["privacy", "terms", "add", "Brightwave"]).exit_code == 0
    assert runner.invoke(cli, ["privacy", "scrub"], input="Maria Lopez works at Brightwave\n").exit_code == 0
    anonymizer = Anonymizer(db)
    collector = Collector(db, protocol, anonymizer, ConsentService(db))
    for text in ("Maria Lopez says hi", "call +1 415-555-0132", "a plain message"):
        assert collector.collect("message", message(text)) is not None
    review = ReviewService(db, protocol, anonymizer)
    review.approve_all()
    review.add_term("Lopez")
    ConsentService(db).withdraw(protocol.id)
    db.close()
    # The secrets were really in use (so the scan below is meaningful) ...
    assert memory_keyring.passwords[("studyapp", f"participant_token:{protocol.id}")] == TOKEN
    assert secrets.get_api_key("default") == API_KEY
    # ... and none of them is in any file under the data dir.
    assert list(data.iterdir())
    assert scan_for_secrets(data, {"participant token": TOKEN, "api key": API_KEY}) == []
