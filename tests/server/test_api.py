"""The collection server over real HTTP (uvicorn on 127.0.0.1): enrollment, upload, access control, limits."""

from __future__ import annotations

import json

import httpx

from tests.server import live as f
from tests.server.live import LiveServer


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_health_names_the_study(live: LiveServer) -> None:
    data = httpx.get(f"{live.base_url}/health").json()
    assert data["status"] == "ok"
    assert data["study_id"] == f.STUDY_ID


def test_enroll_returns_token_and_protocol_and_code_is_one_time(live: LiveServer) -> None:
    code = live.code()
    response = httpx.post(f"{live.base_url}/v1/enroll", json={"code": code})
    assert response.status_code == 201
    data = response.json()
    assert data["protocol"] == f.PROTOCOL
    assert data["protocol_resolved"]["study"]["id"] == f.STUDY_ID
    assert data["study_id"] == f.STUDY_ID
    # The token is stored only as a hash.
    dump = live.dump()
    assert data["token"] not in dump
    assert code not in dump
    again = httpx.post(f"{live.base_url}/v1/enroll", json={"code": code})
    assert again.status_code == 403
    assert "already used" in again.json()["detail"]


def test_code_typed_in_lower_case_without_dashes_still_matches(live: LiveServer) -> None:
    code = live.code().replace("-", "").lower()
    assert httpx.post(f"{live.base_url}/v1/enroll", json={"code": code}).status_code == 201


def test_a_repeated_enrollment_needs_the_same_claim_and_no_upload_yet(live: LiveServer) -> None:
    code = live.code()
    claim = "c" * 32
    first = httpx.post(f"{live.base_url}/v1/enroll", json={"code": code, "claim": claim}).json()
    other = httpx.post(f"{live.base_url}/v1/enroll", json={"code": code, "claim": "d" * 32})
    assert other.status_code == 403
    again = httpx.post(f"{live.base_url}/v1/enroll", json={"code": code, "claim": claim}).json()
    assert again["participant_id"] == first["participant_id"]
    assert again["token"] != first["token"]
    assert live.upload(first["token"], [f.consent()]).status_code == 401  # replaced by the new token
    assert live.upload(again["token"], [f.consent()]).status_code == 200
    # Once the participant has uploaded, the code cannot be claimed again.
    assert httpx.post(f"{live.base_url}/v1/enroll", json={"code": code, "claim": claim}).status_code == 403


def test_unknown_code_is_refused(live: LiveServer) -> None:
    response = httpx.post(f"{live.base_url}/v1/enroll", json={"code": "NOPE-NOPE-NOPE"})
    assert response.status_code == 403


def test_upload_answers_per_event_and_a_bad_event_does_not_block_the_batch(live: LiveServer) -> None:
    _, token = live.enroll()
    good = f.one_of_each()
    bad = [f.message(role="robot"), f.event("nope", {}), f.attribute(extra_field=1),
           f.event("message", {"message_id": "m"}), f.comparison(rating=9)]
    response = live.upload(token, good + bad)
    assert response.status_code == 200
    data = response.json()
    statuses = [r["status"] for r in data["results"]]
    assert statuses == ["accepted"] * len(good) + ["rejected"] * len(bad)
    reasons = [r["reason"] for r in data["results"][len(good):]]
    assert "role" in reasons[0]
    assert "unknown kind" in reasons[1]
    assert "extra_field" in reasons[2]
    assert "missing required field" in reasons[3]
    assert "rating" in reasons[4]
    assert live.storage.count_events() == len(good)
    # The same batch again: every stored event is a duplicate, nothing is stored twice.
    again = live.upload(token, good).json()
    assert [r["status"] for r in again["results"]] == ["duplicate"] * len(good)
    assert live.storage.count_events() == len(good)


def test_duplicate_inside_one_batch_is_stored_once(live: LiveServer) -> None:
    _, token = live.enroll()
    msg = f.message()
    data = live.upload(token, [f.consent(), msg, msg]).json()
    assert [r["status"] for r in data["results"]] == ["accepted", "accepted", "duplicate"]
    assert live.storage.count_events() == 2


def test_events_of_a_category_not_consented_are_rejected(live: LiveServer) -> None:
    _, token = live.enroll()
    early = live.upload(token, [f.message()]).json()["results"][0]
    assert early["status"] == "rejected"
    assert "not consented" in early["reason"]
    data = live.upload(token, [f.consent(["ratings"]), f.comparison(), f.message()]).json()
    assert [r["status"] for r in data["results"]] == ["accepted", "accepted", "rejected"]
    assert "conversation_text" in data["results"][2]["reason"]
    # After a withdrawal of consent nothing of any category is accepted.
    data = live.upload(token, [f.consent([], action="withdraw"), f.comparison()]).json()
    assert [r["status"] for r in data["results"]] == ["accepted", "rejected"]


def test_consent_records_must_match_the_study(live: LiveServer) -> None:
    _, token = live.enroll()
    data = live.upload(token, [f.consent(["ratings", "location_history"]), f.consent(version="9"),
                               f.consent(sha256="00" * 32), f.consent([], action="withdraw", version="",
                                                                        sha256="")]).json()
    statuses = [(r["status"], r["reason"]) for r in data["results"]]
    assert statuses[0][0] == "rejected" and "location_history" in statuses[0][1]
    assert statuses[1][0] == "rejected" and "not a consent document" in statuses[1][1]
    assert statuses[2][0] == "rejected" and "does not match the text" in statuses[2][1]
    assert statuses[3] == ("accepted", None)  # a withdrawal is never refused


def test_a_participant_cannot_touch_another_participants_records(live: LiveServer) -> None:
    a_id, a_token = live.enroll()
    b_id, b_token = live.enroll()
    a_event = f.message(content="A's text")
    assert live.upload(a_token, [f.consent(), a_event]).json()["accepted"] == 2
    # B re-sending A's event id is refused (not "duplicate": it is not B's record) and changes nothing.
    forged = dict(a_event, payload={**a_event["payload"], "content": "overwritten by B"})
    result = live.upload(b_token, [f.consent(), forged]).json()["results"][1]
    assert result["status"] == "rejected"
    assert "another record" in result["reason"]
    rows = list(live.storage.records("message"))
    assert rows == [(a_id, a_event["payload"])]
    # A participant token opens no researcher endpoint.
    for path in ("/v1/participants", "/v1/export", "/v1/export/messages"):
        assert httpx.get(live.base_url + path, headers=bearer(a_token)).status_code == 401
    # B's withdrawal deletes B only.
    assert httpx.post(f"{live.base_url}/v1/withdraw", headers=bearer(b_token)).json()["participant_id"] == b_id
    assert live.storage.event_ids(a_id) == [e for e in live.storage.event_ids() if e]
    assert len(live.storage.event_ids(a_id)) == 2


def test_missing_or_unknown_tokens_get_401(live: LiveServer) -> None:
    assert live.upload("not-a-token", [f.consent()]).status_code == 401
    response = httpx.post(f"{live.base_url}/v1/events", json={"events": [f.consent()]})
    assert response.status_code == 401
    assert "Bearer" in response.json()["detail"]
    assert httpx.post(f"{live.base_url}/v1/withdraw").status_code == 401
    assert httpx.get(f"{live.base_url}/v1/participants").status_code == 401
    assert httpx.get(f"{live.base_url}/v1/export/messages").status_code == 401


def test_malformed_bodies_get_400_or_422_naming_the_field(live: LiveServer) -> None:
    _, token = live.enroll()
    response = httpx.post(f"{live.base_url}/v1/events", content=b"{not json", headers=bearer(token))
    assert response.status_code == 400
    response = live.upload(token, [{"event_id": "has space", "kind": "message", "payload": {}}])
    assert response.status_code == 422
    assert "events.0.event_id" in response.json()["detail"]
    response = httpx.post(f"{live.base_url}/v1/events", json={"events": []}, headers=bearer(token))
    assert response.status_code == 422
    assert live.storage.count_events() == 0


def test_untrusted_text_never_breaks_an_answer(live: LiveServer) -> None:
    _, token = live.enroll()
    # A lone surrogate and control characters, in a rejected field and in stored text.
    body = ('{"events": [{"event_id": "x1", "kind": "\\ud800", "payload": {}}, '
            '{"event_id": "x2", "kind": "consent", "payload": {"\\ud800": 1}}]}')
    response = httpx.post(f"{live.base_url}/v1/events", content=body.encode(),
                          headers={**bearer(token), "Content-Type": "application/json"})
    # The JSON parser refuses lone surrogates: a clear 422, never a 500.
    assert response.status_code == 422
    assert "Invalid request" in response.json()["detail"]
    # Control characters and odd unicode are ordinary text: stored and answered.
    odd = f.message(content="\x00\x1b[31m \u202e \U0001F600")
    data = live.upload(token, [f.consent(), odd, f.event("\u202e\x00", {})]).json()
    assert [r["status"] for r in data["results"]] == ["accepted", "accepted", "rejected"]
    assert next(iter(live.storage.records("message")))[1]["content"] == odd["payload"]["content"]


def test_body_over_the_limit_gets_413(tmp_path) -> None:
    storage, token = f.new_storage(tmp_path / "s.db")
    with f.serve(storage, max_body_bytes=4096) as base_url:
        server = LiveServer(base_url, storage, token)
        _, p_token = server.enroll()
        response = server.upload(p_token, [f.consent(), f.message(content="x" * 10_000)])
        assert response.status_code == 413
        assert "limit of 4096 bytes" in response.json()["detail"]
        assert storage.count_events() == 0


def test_export_over_http_is_researcher_only_and_logged(live: LiveServer) -> None:
    p_id, token = live.enroll()
    live.upload(token, f.one_of_each())
    listing = httpx.get(f"{live.base_url}/v1/export", headers=live.researcher()).json()
    assert {e["record_type"]: e["rows"] for e in listing}["messages"] == 1
    response = httpx.get(f"{live.base_url}/v1/export/messages", headers=live.researcher())
    assert response.status_code == 200
    rows = [json.loads(line) for line in response.text.splitlines()]
    assert rows[0]["participant_id"] == p_id
    assert rows[0]["study_id"] == f.STUDY_ID
    csv_text = httpx.get(f"{live.base_url}/v1/export/attributes?format=csv", headers=live.researcher()).text
    assert csv_text.splitlines()[0].startswith("study_id,participant_id,condition,attribute_id,text")
    assert httpx.get(f"{live.base_url}/v1/export/nope", headers=live.researcher()).status_code == 404
    log = live.storage.export_log()
    assert [(e["researcher"], e["via"], e["format"]) for e in log] == [("owner", "http", "jsonl"),
                                                                       ("owner", "http", "csv")]


def test_compliance_table(live: LiveServer) -> None:
    a_id, a_token = live.enroll()
    b_id, b_token = live.enroll()
    cmp_id = "cmp-shown-then-rated"
    live.upload(a_token, [f.consent(), f.message(day="2026-11-20"), f.message(day="2026-11-22"),
                          f.comparison(cmp_id, rating=None), f.comparison(cmp_id, rating=5), f.comparison(rating=None)])
    httpx.post(f"{live.base_url}/v1/withdraw", headers=bearer(b_token))
    rows = {r["participant_id"]: r for r in httpx.get(f"{live.base_url}/v1/participants",
                                                      headers=live.researcher()).json()}
    assert rows[a_id]["comparisons_rated"] == 1
    assert rows[a_id]["days_active"] == 3  # the 20th (consent, message), 21st (comparisons), 22nd
    assert rows[a_id]["last_upload_at"] is not None
    assert rows[a_id]["withdrawn_at"] is None
    assert rows[b_id]["withdrawn_at"] is not None
    assert rows[b_id]["enrolled_at"] is None
