"""The privacy commands: scrub, terms and consent, run through click on a real data dir."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from studyapp.cli import cli
from studyapp.privacy.anonymize import Anonymizer
from studyapp.privacy.consent import ConsentService
from studyapp.store.db import open_database
from studyapp.store.privacy import PrivacyStore
from studyapp.study.current import save_enrollment
from tests.privacy.conftest import CONSENT_TEXT, make_protocol


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner(env={"STUDYAPP_DATA_DIR": None})


def test_scrub_without_data_dir_numbers_placeholders_for_the_run(runner: CliRunner) -> None:
    text = "Maria Lopez wrote from maria@example.org\nno details here\nMaria Lopez again, call +1 415-555-0132\n"
    result = runner.invoke(cli, ["privacy", "scrub"], input=text)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "<PERSON_1> wrote from <EMAIL_ADDRESS_1>",
        "no details here",
        "<PERSON_1> again, call <PHONE_NUMBER_1>",
    ]
    assert "NER active" in result.stderr


def test_scrub_pattern_only_says_so(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["privacy", "scrub", "--no-ner"], input="Maria Lopez, maria@example.org\n")
    assert result.exit_code == 0
    assert result.stdout == "Maria Lopez, <EMAIL_ADDRESS_1>\n"
    assert "NER not active" in result.stderr and "Only pattern recognizers" in result.stderr


def test_scrub_with_data_dir_uses_the_participants_mapping_and_terms(runner: CliRunner, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    db = open_database(data / "studyapp.db")
    Anonymizer(db).anonymize("I met Maria Lopez and then John Smith.")
    john = PrivacyStore(db).mapping()[("PERSON", "john smith")]
    db.close()
    added = runner.invoke(cli, ["privacy", "terms", "add", "--data-dir", str(data), "Brightwave", "Oak  Hill"])
    assert added.exit_code == 0, added.output
    assert "Added: Brightwave" in added.output and "Added: Oak Hill" in added.output
    result = runner.invoke(cli, ["privacy", "scrub", "--data-dir", str(data)],
                           input="John Smith works at Brightwave near oak hill\n")
    assert result.exit_code == 0, result.output
    db = open_database(data / "studyapp.db")
    mapping = PrivacyStore(db).mapping()
    db.close()
    brightwave, oak_hill = mapping[("TERM", "brightwave")], mapping[("TERM", "oak hill")]
    assert brightwave != oak_hill
    assert result.stdout == f"{john} works at {brightwave} near {oak_hill}\n"
    # The group's --data-dir works too.
    again = runner.invoke(cli, ["--data-dir", str(data), "privacy", "scrub"], input="John Smith\n")
    assert again.stdout == f"{john}\n"


def test_terms_list_and_remove(runner: CliRunner, tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    empty = runner.invoke(cli, ["privacy", "terms", "list", "--data-dir", data])
    assert empty.exit_code == 0 and "No always-remove terms yet" in empty.stderr
    runner.invoke(cli, ["privacy", "terms", "add", "--data-dir", data, "Brightwave", "Springfield"])
    assert runner.invoke(cli, ["privacy", "terms", "list", "--data-dir", data]).stdout == "Brightwave\nSpringfield\n"
    removed = runner.invoke(cli, ["privacy", "terms", "remove", "--data-dir", data, "Springfield", "Nowhere"])
    assert removed.exit_code == 1
    assert "Removed: Springfield" in removed.output
    assert "Not in your terms: Nowhere. Your terms: Brightwave" in removed.output
    assert "Traceback" not in removed.output


def test_consent_needs_an_enrolled_study(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(cli, ["consent", "--data-dir", str(tmp_path / "data"), "--accept", "ratings"])
    assert result.exit_code == 1
    assert "not enrolled in a study" in result.output


def test_consent_shows_the_text_and_records_choices(runner: CliRunner, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    db = open_database(data / "studyapp.db")
    protocol = make_protocol(required=("ratings",), optional=("attributes", "conversation_text"))
    save_enrollment(db, protocol, participant_id="p-1")
    args = ["consent", "--data-dir", str(data)]

    shown = runner.invoke(cli, [*args, "--show"])
    assert shown.exit_code == 0
    assert CONSENT_TEXT.strip() in shown.output
    assert "ratings (required): About ratings." in shown.output
    assert ConsentService(db).history("s1") == []

    refused = runner.invoke(cli, [*args, "--accept", "attributes"])
    assert refused.exit_code == 1
    assert "requires ratings to take part" in refused.output
    assert ConsentService(db).history("s1") == []

    nothing = runner.invoke(cli, args)
    assert nothing.exit_code == 2 and "--accept CATEGORY" in nothing.output

    accepted = runner.invoke(cli, [*args, "--accept", "ratings,attributes"])
    assert accepted.exit_code == 0, accepted.output
    assert "Recorded: consent version 1" in accepted.output
    current = ConsentService(db).current("s1")
    assert current is not None and current.categories == {"ratings", "attributes"}
    assert current.sha256 == protocol.current_consent.sha256

    changed = runner.invoke(cli, [*args, "--accept", "ratings", "--accept", "conversation_text"])
    assert changed.exit_code == 0
    assert [r.action for r in ConsentService(db).history("s1")] == ["grant", "update"]
    assert ConsentService(db).current("s1").categories == {"ratings", "conversation_text"}  # type: ignore[union-attr]
    db.close()


def test_consent_takes_always_remove_terms_and_rescrubs_waiting_items(runner: CliRunner, tmp_path: Path) -> None:
    from studyapp.privacy.collect import Collector
    from studyapp.store.outbox import OutboxStore
    from tests.privacy.test_collect import message

    data = tmp_path / "data"
    data.mkdir()
    db = open_database(data / "studyapp.db")
    protocol = make_protocol(review_uploads=True)
    save_enrollment(db, protocol, participant_id="p-1")
    args = ["consent", "--data-dir", str(data)]
    first = runner.invoke(cli, [*args, "--accept", "ratings,conversation_text", "--always-remove", "Oak Hill",
                                "--always-remove", "  "])
    assert first.exit_code == 0, first.output
    assert "none yet (add with --always-remove TERM)" in first.output
    assert "Always removed from now on: Oak Hill" in first.output
    assert PrivacyStore(db).terms() == ["Oak Hill"]
    waiting = Collector(db, protocol, Anonymizer(db), ConsentService(db)).collect(
        "message", message("I moved to Oak Hill and work at Brightwave"))
    assert waiting is not None
    assert OutboxStore(db).get(waiting).payload["content"] == "I moved to <TERM_1> and work at Brightwave"  # type: ignore[union-attr]

    # A term to stop removing must be one of the participant's: said before anything is recorded.
    wrong = runner.invoke(cli, [*args, "--accept", "ratings,conversation_text", "--stop-removing", "Nowhere"])
    assert wrong.exit_code == 2
    assert "not among your always-remove terms: Nowhere. Your terms: Oak Hill" in wrong.output
    assert len(ConsentService(db).history("s1")) == 1

    changed = runner.invoke(cli, [*args, "--accept", "ratings,conversation_text", "--always-remove", "Brightwave",
                                  "--stop-removing", "Oak Hill"])
    assert changed.exit_code == 0, changed.output
    assert "Always removed from what you share (optional; your name, family, town, employer...): Oak Hill" \
        in changed.output
    assert "No longer removed: Oak Hill" in changed.output
    assert "Re-scrubbed 1 item waiting to be sent." in changed.output
    assert PrivacyStore(db).terms() == ["Brightwave"]
    assert [r.action for r in ConsentService(db).history("s1")] == ["grant", "update"]
    event = OutboxStore(db).get(waiting)
    assert event is not None and event.payload["content"] == "I moved to <TERM_1> and work at <TERM_2>"
    assert event.payload["replaced_entities"] == {"TERM": 2}

    # A refused choice stores no term.
    refused = runner.invoke(cli, [*args, "--accept", "attributes", "--always-remove", "Jonas Becker"])
    assert refused.exit_code == 1 and "requires ratings" in refused.output
    assert PrivacyStore(db).terms() == ["Brightwave"]
    db.close()
