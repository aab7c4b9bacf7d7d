"""Hostile values in uploaded fields: times that are not times (or lie in the future or before 2000), values outside
the contract's closed sets, and bodies that are not JSON at all. Each is refused with a reason naming the field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from studyapp.contract import ContractError, check_fields
from studyapp.privacy.collect import CollectError, check_payload
from tests.server import live as f
from tests.server.live import LiveServer


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


NEXT_WEEK = (datetime.now(UTC) + timedelta(days=7)).isoformat()
HOSTILE = [
    ("labeled_at", f.attribute_label(), "banana"),
    ("created_at", f.attribute(), "9999-99-99 not a date"),
    ("updated_at", f.attribute(), ""),
    ("created_at", f.message(), NEXT_WEEK),
    ("status", f.attribute(), "<script>"),
    ("status", f.message(), "deleted"),  # an attribute's status, not a message's
    ("origin", f.attribute(), "anything"),
    # ISO-8601, but no calendar date where days active are read from (the first ten characters).
    ("created_at", f.message(), "2026-W48-1T10:00:00+00:00"),
    ("created_at", f.message(), "2026-333T10:00:00+00:00"),
    ("labeled_at", f.attribute_label(), "20261121T100000+0000"),
    # Before 2000-01-01: a reset device clock or a made-up time, with and without an offset.
    ("created_at", f.message(), "0001-01-01T00:00:00+00:00"),
    ("created_at", f.attribute(), "0001-01-01T00:00:00-14:00"),
    ("labeled_at", f.attribute_label(), "1970-01-01T00:00:00"),
    ("created_at", f.message(), "2000-01-01T00:30:00+01:00"),  # 1999-12-31T23:30 UTC
    # Control characters in an id: PostgreSQL cannot store a NUL in text, and no app makes one.
    ("attribute_id", f.attribute(), "a\x00b"),
    ("message_id", f.message(), "m1\nX-Injected: 1"),
]


@pytest.mark.parametrize(("field", "template", "value"), HOSTILE, ids=[f"{h[0]}={h[2]!r}" for h in HOSTILE])
def test_a_hostile_field_value_is_rejected_naming_the_field(live: LiveServer, field: str, template: dict,
                                                            value: str) -> None:
    _, token = live.enroll()
    bad = f.event(template["kind"], {**template["payload"], field: value})
    data = live.upload(token, [f.consent(), bad]).json()
    assert [r["status"] for r in data["results"]] == ["accepted", "rejected"], data
    assert f"'{field}'" in data["results"][1]["reason"]
    assert live.storage.count_events() == 1


def test_times_without_offset_from_older_apps_still_pass_but_must_parse() -> None:
    payload = f.attribute_label()["payload"]
    assert check_fields("attribute_label", {**payload, "labeled_at": "2026-11-21T10:00:00"})["labeled_at"]
    with pytest.raises(ContractError, match="labeled_at"):
        check_fields("attribute_label", {**payload, "labeled_at": "2026-11-21T10:00:00"}, require_offset=True)
    # A clock a few hours ahead (a participant's wrong time zone) is within the skew allowed.
    soon = (datetime.now(UTC) + timedelta(hours=6)).isoformat()
    assert check_fields("attribute_label", {**payload, "labeled_at": soon})["labeled_at"] == soon
    # SQLite's own format, and a date alone, as older apps may have written them.
    for old in ("2026-11-21 10:00:00", "2026-11-21"):
        assert check_fields("attribute_label", {**payload, "labeled_at": old})["labeled_at"] == old


def test_a_time_before_2000_is_refused_the_same_by_the_server_and_the_app(live: LiveServer) -> None:
    payload = f.message()["payload"]
    for old in ("0001-01-01T00:00:00+00:00", "1999-12-31T23:59:59+00:00", "1970-01-01"):
        with pytest.raises(ContractError, match=r"'created_at' lies before 2000-01-01 .*check the device's clock"):
            check_fields("message", {**payload, "created_at": old})
    # The first instant of 2000 (UTC) is a time like any other.
    for first in ("2000-01-01T00:00:00+00:00", "2000-01-01T01:00:00+01:00"):
        assert check_fields("message", {**payload, "created_at": first}, require_offset=True)["created_at"] == first
    # The participant's app runs the same check before queueing: such a record never leaves the machine.
    with pytest.raises(CollectError, match="'created_at' lies before 2000-01-01"):
        check_payload("message", {**payload, "created_at": "0001-01-01T00:00:00+00:00"})
    # The server refuses it with that reason, stores nothing of it and counts it among the rejections.
    _, token = live.enroll()
    data = live.upload(token, [f.consent(), f.message(day="0001-01-01"), f.message(day="2000-01-01")]).json()
    assert [r["status"] for r in data["results"]] == ["accepted", "rejected", "accepted"], data
    assert data["results"][1]["reason"] == ("field 'created_at' lies before 2000-01-01 "
                                            '("0001-01-01T10:00:00+00:00"): check the device\'s clock and date')
    assert live.sql("SELECT min(day) FROM events WHERE kind = 'message'") == [("2000-01-01",)]
    assert live.storage.count_events() == 2


def test_the_valid_closed_set_values_pass() -> None:
    for status in ("complete", "interrupted", "error"):
        assert check_fields("message", {**f.message()["payload"], "status": status})["status"] == status
    for status in ("active", "deleted"):
        for origin in ("model", "participant"):
            checked = check_fields("attribute", {**f.attribute()["payload"], "status": status, "origin": origin})
            assert (checked["status"], checked["origin"]) == (status, origin)


@pytest.mark.parametrize("body", [b"{{{", b"{not json", b'{"events": [', b"\xff\xfe", b""])
def test_a_body_that_is_not_json_gets_400_with_a_clear_message(live: LiveServer, body: bytes) -> None:
    _, token = live.enroll()
    response = httpx.post(f"{live.base_url}/v1/events", content=body,
                          headers={**bearer(token), "Content-Type": "application/json"})
    assert response.status_code == 400, response.text
    assert "JSON" in response.json()["detail"]
    enroll = httpx.post(f"{live.base_url}/v1/enroll", content=b"{{{", headers={"Content-Type": "application/json"})
    assert enroll.status_code == 400
    assert live.storage.count_events() == 0


@pytest.mark.parametrize("value", ["ab" * 32 + "\n", "ab" * 32 + " ", "\n" + "ab" * 32, "AB" * 32])
def test_a_sha256_is_exactly_64_lowercase_hex_characters(value: str) -> None:
    verdict = {"comparison_id": "c1", "judge_model": "judge", "personalized_side": "left", "rating": 4}
    assert check_fields("judge_verdict", {**verdict, "context_sha256": "ab" * 32})["context_sha256"] == "ab" * 32
    with pytest.raises(ContractError, match="field 'context_sha256' must be a sha256 in lowercase hex"):
        check_fields("judge_verdict", {**verdict, "context_sha256": value})
