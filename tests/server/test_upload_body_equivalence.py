"""POST /v1/events reads its body with read_upload (one pass in pydantic-core for a well-formed upload); for any
body it must answer exactly as FastAPI's own reading of an ``EventBatch`` body parameter did: the same events, or
the same errors in the same order relative to the token check.

Two small apps side by side, one with FastAPI's ``body: EventBatch``, one with read_upload, each behind the same
token dependency, get the same random bodies (well-formed, broken JSON, wrong shapes, odd numbers and text, other
content types and encodings, no token). Called in-process through httpx's ASGI transport: thousands of bodies in
seconds; the real server's answers to malformed bodies are tested live in test_api.py and test_field_validation.py.
"""

from __future__ import annotations

import asyncio
import json
import random
from typing import Annotated

import httpx
from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from studyapp.server.app import _UPLOAD, MAX_BATCH, EventBatch, Upload, read_upload

BODIES = 3000


def _token(authorization: Annotated[str | None, Header()] = None) -> str:
    if authorization != "Bearer ok":
        raise HTTPException(401, "no token")
    return "p1"


def _answers(app: FastAPI) -> FastAPI:
    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> PlainTextResponse:
        # What the server's own handler reads of each error (studyapp/server/app.py, on_validation_error).
        seen = [(e.get("type"), tuple(e.get("loc", ())), e.get("msg"), isinstance(e.get("input"), bytes))
                for e in exc.errors()]
        return PlainTextResponse(repr(seen), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> PlainTextResponse:
        return PlainTextResponse(repr(exc.detail), status_code=exc.status_code)

    return app


def fastapi_reading() -> FastAPI:
    app = FastAPI()

    @app.post("/v1/events")
    def upload(body: EventBatch, participant: Annotated[str, Depends(_token)]) -> PlainTextResponse:
        return PlainTextResponse(repr([(e.event_id, e.kind, e.payload) for e in body.events]))

    return _answers(app)


def read_upload_reading() -> FastAPI:
    app = FastAPI()

    @app.post("/v1/events")
    def upload(body: Annotated[Upload, Depends(read_upload)],
               participant: Annotated[str, Depends(_token)]) -> PlainTextResponse:
        if body.errors:
            raise RequestValidationError(body.errors)
        return PlainTextResponse(repr(body.events))

    return _answers(app)


# -- random bodies --------------------------------------------------------------------------------------------------

VALUES = ['"text"', '"Mag \\u00c4pfel"', '"\\ud800"', '"\\udc00x"', '"\\u0000"', '"caf\u00e9"', "1", "-0", "0.1",
          "1e400", "-1e400", "NaN", "Infinity", "123456789012345678901234567890", "5e-324", "true", "null", "[]",
          '{"a": [1, {"b": null}]}', '"2026-11-25T10:00:00+00:00"', "1.0", "1E5"]
EVENT_IDS = ['"e1"', '"a.b:c-d_e"', '"has space"', '"-starts-with-dash"', '"' + "x" * 128 + '"',
             '"' + "x" * 129 + '"', '""', "7", "null", '"\\u00e9t\\u00e9"', '"e1\\n"']
KINDS = ['"message"', '"consent"', '"' + "k" * 64 + '"', '"' + "k" * 65 + '"', '""', "3", "null", '"\\ud800"',
         '"\\u00e9"']
CONTENT_TYPES = ["application/json"] * 8 + ["application/json; charset=utf-8", "application/vnd.study+json",
                                             "text/plain", None, "APPLICATION/JSON",
                                             "application/x-www-form-urlencoded"]


def _payload(rng: random.Random) -> str:
    if rng.random() < 0.05:
        return rng.choice(["[]", '"x"', "null", "1"])
    fields = [f'"f{i}": {rng.choice(VALUES)}' for i in range(rng.randint(0, 4))]
    if rng.random() < 0.05:
        fields.append('"f0": 2')  # a repeated key: the last one counts
    return "{" + ", ".join(fields) + "}"


def _event(rng: random.Random, i: int) -> str:
    fields = {"event_id": f'"e{i}"', "kind": '"message"', "payload": _payload(rng)}
    if rng.random() < 0.1:
        fields["event_id"] = rng.choice(EVENT_IDS)
    if rng.random() < 0.1:
        fields["kind"] = rng.choice(KINDS)
    if rng.random() < 0.03:
        del fields[rng.choice(list(fields))]
    if rng.random() < 0.03:
        fields["extra"] = "1"
    if rng.random() < 0.02:
        return rng.choice(["[]", '"event"', "null", "1"])
    return "{" + ", ".join(f'"{k}": {v}' for k, v in fields.items()) + "}"


def random_body(rng: random.Random) -> tuple[bytes, str | None, bool]:
    """(body, content type, whether the token is sent)."""
    roll = rng.random()
    if roll < 0.01:
        n = rng.choice([0, MAX_BATCH + 1])
    else:
        n = rng.randint(1, 6)
    text = '{"events": [' + ", ".join(_event(rng, i) for i in range(n)) + "]}"
    if rng.random() < 0.03:
        text = text[:-1] + ', "extra": 1}'
    if rng.random() < 0.05:
        text = rng.choice(["[]", "null", '"events"', "1", '{"events": {}}', '{"events": null}', "{}"])
    body = text.encode()
    mangle = rng.random()
    if mangle < 0.03:
        body = body[: rng.randint(0, len(body))]  # cut short, or empty
    elif mangle < 0.04:
        body = b"\xef\xbb\xbf" + body  # a UTF-8 byte order mark
    elif mangle < 0.05:
        body = text.encode("utf-16")
    elif mangle < 0.06:
        body = body.replace(b'"message"', b'"m\xff"')  # not UTF-8
    elif mangle < 0.065:
        body = b"[" * 5000 + b"]" * 5000  # nested deeper than the parsers go
    elif mangle < 0.07:
        body = body.replace(b'"message"', b'"m\x01"')  # a raw control character in a string
    return body, rng.choice(CONTENT_TYPES), rng.random() > 0.05


async def _compare(bodies: list[tuple[bytes, str | None, bool]]) -> dict[int, int]:
    statuses: dict[int, int] = {}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=fastapi_reading()), base_url="http://ref") as ref, \
            httpx.AsyncClient(transport=httpx.ASGITransport(app=read_upload_reading()), base_url="http://new") as new:
        for body, content_type, token in bodies:
            headers = {"Authorization": "Bearer ok"} if token else {}
            if content_type is not None:
                headers["Content-Type"] = content_type
            expected = await ref.post("/v1/events", content=body, headers=headers)
            got = await new.post("/v1/events", content=body, headers=headers)
            assert (got.status_code, got.text) == (expected.status_code, expected.text), (body[:300], content_type)
            statuses[expected.status_code] = statuses.get(expected.status_code, 0) + 1
    return statuses


def test_read_upload_answers_every_body_as_fastapi_reads_an_event_batch() -> None:
    rng = random.Random(20261130)
    statuses = asyncio.run(_compare([random_body(rng) for _ in range(BODIES)]))
    # Accepted uploads, refused fields, unreadable bodies and missing tokens all came up.
    assert all(statuses.get(code, 0) > 20 for code in (200, 400, 401, 422)), statuses


def test_a_well_formed_upload_is_read_in_one_pass() -> None:
    """The common upload never needs FastAPI's reading: pydantic-core accepts it as it is."""
    body = json.dumps({"events": [{"event_id": "e1", "kind": "message", "payload": {"content": "x", "n": 1.5}}]})
    events = asyncio.run(_compare([(body.encode(), "application/json", True)]))
    assert events == {200: 1}
    assert _UPLOAD.validate_json(body)["events"][0]["payload"] == {"content": "x", "n": 1.5}


def test_the_one_pass_reading_refuses_what_eventbatch_refuses() -> None:
    """Every body the one-pass reading accepts, EventBatch accepts with the same events (the other way round is
    what the comparison above shows through the answers)."""
    rng = random.Random(11)
    accepted = 0
    for _ in range(BODIES):
        body, _, _ = random_body(rng)
        try:
            fast = _UPLOAD.validate_json(body)
        except ValidationError:
            continue
        accepted += 1
        batch = EventBatch.model_validate(json.loads(body))
        assert repr([(e["event_id"], e["kind"], e["payload"]) for e in fast["events"]]) == \
            repr([(e.event_id, e.kind, e.payload) for e in batch.events])
    assert accepted > BODIES // 10
