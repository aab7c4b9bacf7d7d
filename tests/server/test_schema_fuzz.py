"""Fuzzing the OpenAPI schema with schemathesis: no 5xx, every answer matches the documented schema.

Runs the app in-process (ASGI) so hundreds of generated requests take seconds; real tokens are
attached where an endpoint needs them, so the fuzzer reaches past authentication. The server database
is made per test run in pytest's tmp_path (a lazy schema: built from a fixture, not at import).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.schemas import BaseSchema

from studyapp.server.app import create_app
from studyapp.server.auth import FailureThrottle
from studyapp.server.storage import Storage
from tests.server import live as f


@dataclass
class FuzzServer:
    storage: Storage
    researcher_token: str

    def participant_token(self) -> str:
        """A fresh enrollment (a withdrawal case must not end the next case's participant)."""
        code = self.storage.create_codes(1)[0]
        enrolled = self.storage.enroll(code)
        assert enrolled is not None
        pid, token = enrolled
        # Consent to everything, so generated events get as far as validation.
        self.storage.store_events(pid, [(f"consent-{pid}", "consent", f.consent()["payload"])])
        return token


@pytest.fixture
def fuzz_server(server_db: Path | str) -> Iterator[FuzzServer]:
    storage, researcher_token = f.new_storage(server_db)
    yield FuzzServer(storage, researcher_token)
    storage.close()


@pytest.fixture
def api_schema(fuzz_server: FuzzServer) -> BaseSchema:
    # Large enough for the biggest batch the schema allows, so the size limit (tested live) does not mask
    # the validation answers the fuzzer checks.
    # The fuzzer sends hundreds of wrong tokens from one address on purpose: the throttle (tested live in
    # test_auth_throttle.py) would answer them all 429 and hide the answers checked here.
    app = create_app(fuzz_server.storage, max_body_bytes=4 * 1024 * 1024,
                     auth_throttle=FailureThrottle(max_failures=10**9, window_s=1.0))
    return schemathesis.openapi.from_asgi("/openapi.json", app)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case: schemathesis.Case, fuzz_server: FuzzServer) -> None:
    # The token each operation needs is read from its documented security, so a new endpoint behind a
    # token is fuzzed past its authentication without anyone keeping a list of paths.
    schemes = {name for requirement in case.operation.definition.raw.get("security", []) for name in requirement}
    assert schemes <= {"ParticipantToken", "ResearcherToken"}, f"no token for {schemes} in this test"
    headers: dict[str, str] = {}
    if "ParticipantToken" in schemes:
        headers["Authorization"] = f"Bearer {fuzz_server.participant_token()}"
    elif "ResearcherToken" in schemes:
        headers["Authorization"] = f"Bearer {fuzz_server.researcher_token}"
    body = case.body
    if case.operation.path == "/v1/enroll" and isinstance(body, dict) and body.get("code") == "VALID":
        body["code"] = fuzz_server.storage.create_codes(1)[0]
    response = case.call_and_validate(headers=headers)
    # Negative cases drop or mangle the header on purpose; every valid request must get past the token check.
    if headers and case.meta is not None and case.meta.generation.mode is GenerationMode.POSITIVE:
        assert response.status_code != 401, f"{case.operation.label}: the fuzzer did not get past authentication"
