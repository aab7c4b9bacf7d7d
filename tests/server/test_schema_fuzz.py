"""Fuzzing the OpenAPI schema with schemathesis: no 5xx, every answer matches the documented schema.

Runs the app in-process (ASGI) so hundreds of generated requests take seconds; real tokens are
attached where an endpoint needs them, so the fuzzer reaches past authentication.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings

from studyapp.server.app import create_app
from tests.server import live as f

_tmp = Path(tempfile.mkdtemp(prefix="studyapp-fuzz-"))
storage, researcher_token = f.new_storage(_tmp / "server.db")
# Large enough for the biggest batch the schema allows, so the size limit (tested live) does not mask
# the validation answers the fuzzer checks.
app = create_app(storage, max_body_bytes=4 * 1024 * 1024)
schema = schemathesis.openapi.from_asgi("/openapi.json", app)

PARTICIPANT_PATHS = {"/v1/events", "/v1/withdraw"}
RESEARCHER_PATHS = {"/v1/participants", "/v1/export", "/v1/export/{record_type}"}


def _participant_token() -> str:
    code = storage.create_codes(1)[0]
    enrolled = storage.enroll(code)
    assert enrolled is not None
    pid, token = enrolled
    # Consent to everything, so generated events get as far as validation.
    storage.store_events(pid, [(f"consent-{pid}", "consent", f.consent()["payload"])])
    return token


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case: schemathesis.Case) -> None:
    path = case.operation.path
    headers: dict[str, str] = {}
    if path in PARTICIPANT_PATHS:
        headers["Authorization"] = f"Bearer {_participant_token()}"
    elif path in RESEARCHER_PATHS:
        headers["Authorization"] = f"Bearer {researcher_token}"
    if path == "/v1/enroll" and case.body and isinstance(case.body, dict) and case.body.get("code") == "VALID":
        case.body["code"] = storage.create_codes(1)[0]
    case.call_and_validate(headers=headers)
