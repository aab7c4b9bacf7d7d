"""The study's questions on the server: question_answer records are checked, stored under their consent category
and exported as the question_answers file, on both storage backends."""

from __future__ import annotations

from pathlib import Path

import pytest

from studyapp.contract import ContractError, check_fields
from studyapp.server.export import export
from tests.server import live as f
from tests.server.live import LiveServer


def test_answers_skips_and_unanswered_questions_are_stored_and_exported(live: LiveServer, tmp_path: Path) -> None:
    _, token = live.enroll_consented()
    answered = f.question_answer()
    choice = f.question_answer(question_id="felt_understood", question_type="choice",
                               question_when="after_comparison", answer_number=None, answer_option="Neither",
                               message_id=None, comparison_id="cmp1", ask_probability=None)
    text = f.question_answer(question_id="what_was_assumed", question_type="text", question_when="after_comparison",
                             answer_number=None, answer_text="That <PERSON_1> is my sister.",
                             replaced_entities={"PERSON": 1}, message_id=None, comparison_id="cmp1",
                             ask_probability=None)
    skipped, unanswered = f.question_answer("skipped"), f.question_answer("unanswered")
    data = live.upload(token, [answered, choice, text, skipped, unanswered]).json()
    assert [r["status"] for r in data["results"]] == ["accepted"] * 5, data

    import pyarrow.parquet as pq

    export(live.storage, tmp_path / "out", "parquet", researcher="test")
    rows = {r["answer_id"]: r for r in pq.read_table(tmp_path / "out" / "question_answers.parquet").to_pylist()}
    assert len(rows) == 5
    row = rows[answered["payload"]["answer_id"]]
    assert (row["status"], row["answer_number"], row["ask_probability"], row["study_day"], row["utc_offset_min"]) \
        == ("answered", 4, 0.5, 2, -300)
    # The participant's local time, with its offset, as the app sent it.
    assert row["asked_at"] == "2026-11-21T19:30:00.000000-05:00" and row["contract_version"] is None
    assert rows[choice["payload"]["answer_id"]]["answer_option"] == "Neither"
    assert rows[choice["payload"]["answer_id"]]["comparison_id"] == "cmp1"
    assert rows[text["payload"]["answer_id"]]["answer_text"] == "That <PERSON_1> is my sister."
    assert rows[text["payload"]["answer_id"]]["replaced_entities"] == '{"PERSON": 1}'
    assert {rows[e["payload"]["answer_id"]]["status"] for e in (skipped, unanswered)} == {"skipped", "unanswered"}
    assert rows[unanswered["payload"]["answer_id"]]["answered_at"] is None
    schema = pq.read_schema(tmp_path / "out" / "question_answers.parquet")
    assert str(schema.field("answer_number").type) == "int64" and str(schema.field("ask_probability").type) == "double"


def test_a_later_event_of_the_same_answer_replaces_the_earlier_one(live: LiveServer) -> None:
    _, token = live.enroll_consented()
    first = f.question_answer("unanswered")
    again = f.question_answer("unanswered", answer_id=first["payload"]["answer_id"], study_day=3)
    assert [r["status"] for r in live.upload(token, [first, again]).json()["results"]] == ["accepted", "accepted"]
    assert live.count_records("question_answer") == 1


def test_answers_need_their_consent_category(live: LiveServer) -> None:
    _, token = live.enroll()
    others = [c for c in f.ALL_CATEGORIES if c != "question_answers"]
    data = live.upload(token, [f.consent(others), f.question_answer()]).json()
    assert [r["status"] for r in data["results"]] == ["accepted", "rejected"]
    assert "not consented" in data["results"][1]["reason"]


BAD = [
    ("status", "maybe", "must be one of answered, skipped, unanswered"),
    ("question_type", "slider", "must be one of likert, choice, yes_no, text"),
    ("question_when", "hourly", "must be one of after_comparison, after_turn, daily, weekly, at_end"),
    ("answer_number", -1, "whole number of 0 or more"),
    ("answer_number", 2.5, "whole number of 0 or more"),
    ("asked_at", "tonight", "ISO-8601 time"),
    ("answer_id", "", "non-empty id"),
    ("ask_probability", 0, "must be more than 0"),
]


@pytest.mark.parametrize(("field", "value", "message"), BAD, ids=[f"{b[0]}={b[1]!r}" for b in BAD])
def test_a_bad_answer_is_refused_naming_the_field(live: LiveServer, field: str, value: object, message: str) -> None:
    payload = {**f.question_answer()["payload"], field: value}
    with pytest.raises(ContractError, match=message):
        check_fields("question_answer", payload, require_offset=True)
    _, token = live.enroll_consented()
    data = live.upload(token, [f.event("question_answer", payload)]).json()
    assert data["results"][0]["status"] == "rejected" and f"'{field}'" in data["results"][0]["reason"]


def test_the_contracts_quick_path_agrees_with_the_full_check() -> None:
    payload = f.question_answer()["payload"]
    checked = check_fields("question_answer", payload, require_offset=True)
    assert checked == payload
    # A required field left out, and a field of another kind, are named.
    with pytest.raises(ContractError, match=r"missing required field.*asked_at"):
        check_fields("question_answer", {k: v for k, v in payload.items() if k != "asked_at"})
    with pytest.raises(ContractError, match=r"does not allow field.*rating"):
        check_fields("question_answer", {**payload, "rating": 3})
    # The app's own check wants the offset: a local time without it could not be placed in the participant's day.
    with pytest.raises(ContractError, match="asked_at"):
        check_fields("question_answer", {**payload, "asked_at": "2026-11-21T19:30:00"}, require_offset=True)
