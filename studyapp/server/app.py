"""The collection server's HTTP API (FastAPI): enrollment, event upload, withdrawal, researcher views.

Contract (docs/ARCHITECTURE.md section 9): a one-time code buys a participant id and a bearer token; the
token writes and deletes only its own records; every uploaded event carries a client-made
``event_id`` stored at most once, and each gets its own answer (accepted, duplicate, rejected with
the reason). Researcher endpoints need a researcher token and every export is logged; researchers' browsers
log in to the read-only page at /dashboard (dashboard.py) with the same token.

Robustness: bodies above the size limit get 413 before they are parsed; a body that is not JSON gets 400; every
body is validated (422 with a message per field); all JSON answers are ASCII-encoded, so no untrusted input can make
an answer fail to encode; a busy database answers 503 with Retry-After, never 500 (on PostgreSQL also an export
beyond the open snapshots a worker allows, at once, and a request that found no pooled connection in time).
"""

# No "from __future__ import annotations": FastAPI must see the dependency annotations of the
# endpoints defined inside create_app() as objects, not as strings naming local functions.
import email.message
import hashlib
import json
import logging
import os
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from typing_extensions import TypedDict  # pydantic reads typing's TypedDict only from Python 3.12 on

from studyapp import __version__
from studyapp.server import auth, dashboard, gateway
from studyapp.server import export as export_mod
from studyapp.server.ingest import StorageBusy
from studyapp.server.storage import NotInitialized, ParticipantGone, Storage
from studyapp.study.protocol import ProtocolError, protocol_from_dict

DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024
MAX_BATCH = 1000
EVENT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
MAX_KIND_LENGTH = 64
# Failed authentications (wrong participant or researcher token, wrong enrollment code) one client address may
# make within the window before it gets 429. An app with a stale token fails once per sync, far below this.
MAX_AUTH_FAILURES = 20
AUTH_FAILURE_WINDOW_S = 300.0

log = logging.getLogger(__name__)


class AsciiJSONResponse(JSONResponse):
    """JSON with non-ASCII escaped: any text (even a lone surrogate echoed from input) encodes."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")


# -- models ---------------------------------------------------------------------------------------


class Problem(BaseModel):
    detail: str = Field(description="What was wrong and what to do about it.")


class ValidationProblem(BaseModel):
    detail: str = Field(description="A summary naming every field that failed validation.")
    errors: list[str] = Field(description="One line per failed field: location and problem.")


class Health(BaseModel):
    status: Literal["ok"]
    study_id: str
    version: str = Field(description="studyapp version of the server.")


class ProtocolVersion(BaseModel):
    study_id: str
    version: str = Field(description="The protocol's [study] version.")
    protocol: str = Field(description="The study protocol, as the exact TOML text the researchers wrote; in a "
                                      "study with [conditions], protocol_resolved as JSON text (the TOML names "
                                      "every condition).")
    protocol_resolved: dict[str, Any] = Field(
        description="The same protocol validated, with consent texts inline (studyapp's Protocol.to_dict()); in a "
                    "study with [conditions], the participant's condition's settings laid over the study's, "
                    "without [conditions], naming the condition (condition) only when the study reveals it.")


class EnrollRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str = Field(min_length=1, max_length=64, description="The one-time enrollment code from the research team.",
                      examples=["ABCD-EFGH-JKLM"])
    claim: str | None = Field(
        default=None, min_length=16, max_length=128,
        description="A random value the app makes for this enrollment. Asking again with the same code and "
                    "claim (the first reply was lost) returns the same participant with a new token.")


class Enrollment(BaseModel):
    participant_id: str = Field(description="The participant's random id in this study.")
    token: str = Field(description="Bearer token for this participant; shown once, keep it in the keyring.")
    study_id: str
    protocol: str = Field(description="The study protocol, as the exact TOML text the researchers wrote; in a "
                                      "study with [conditions], protocol_resolved as JSON text (the TOML names "
                                      "every condition).")
    protocol_resolved: dict[str, Any] = Field(
        description="The same protocol validated, with consent texts inline (studyapp's Protocol.to_dict()); in a "
                    "study with [conditions], the participant's condition's settings laid over the study's, "
                    "without [conditions], naming the condition (condition) only when the study reveals it.")


class EventIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    event_id: str = Field(pattern=EVENT_ID_PATTERN, description="Client-made random id; the server stores it once.")
    kind: str = Field(max_length=MAX_KIND_LENGTH,
                      description="Event kind, see studyapp/events.py (message, attribute, ...).")
    payload: dict[str, Any] = Field(description="The record's fields, named as in the export contract.")


class EventBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    events: list[EventIn] = Field(min_length=1, max_length=MAX_BATCH,
                                  description=f"Up to {MAX_BATCH} events, stored in one transaction.")


# EventBatch's rules again, as typed dicts: pydantic-core reads an upload's JSON text and checks it in one pass (in
# Rust), without a model per event, at about half the cost of json.loads and EventBatch. Only a body that passes
# is read this way; any other goes the way FastAPI reads a body for EventBatch (read_upload), so every refusal is
# answered as before.
class _EventFields(TypedDict):
    __pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[misc]
    event_id: Annotated[str, Field(pattern=EVENT_ID_PATTERN)]
    kind: Annotated[str, Field(max_length=MAX_KIND_LENGTH)]
    payload: dict[str, Any]


class _BatchFields(TypedDict):
    __pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[misc]
    events: Annotated[list[_EventFields], Field(min_length=1, max_length=MAX_BATCH)]


_UPLOAD = TypeAdapter(_BatchFields)
UploadedEvent = tuple[str, str, dict[str, Any]]


@dataclass
class Upload:
    """An upload's events (event_id, kind, payload), or why its body is no EventBatch: the validation errors, which
    are answered only after the participant's token is checked (as FastAPI orders a body's errors)."""
    events: list[UploadedEvent]
    errors: list[dict[str, Any]]


def _is_json(content_type: str | None) -> bool:
    # FastAPI's test of a JSON body: application/json or application/*+json, parameters allowed.
    if not content_type:
        return False
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (subtype == "json" or subtype.endswith("+json"))


async def read_upload(request: Request) -> Upload:
    """The body of POST /v1/events, checked against EventBatch."""
    body = await request.body()
    if request.headers.get("content-type") == "application/json":  # what every app sends
        try:
            batch = _UPLOAD.validate_json(body)
        except ValidationError:
            pass  # read again below, to name what is wrong exactly as FastAPI would
        else:
            return Upload([(e["event_id"], e["kind"], e["payload"]) for e in batch["events"]], [])
    # Everything else, as FastAPI reads a JSON body parameter: a body that is not JSON text is refused at once
    # (before the token is checked), an empty one or one not sent as JSON is a missing or unreadable body.
    if not body:
        return Upload([], [{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}])
    received: Any = body
    if _is_json(request.headers.get("content-type")):
        try:
            received = json.loads(body)
        except json.JSONDecodeError as exc:
            raise RequestValidationError([{"type": "json_invalid", "loc": ("body", exc.pos), "msg": "JSON decode error",
                                           "input": {}, "ctx": {"error": exc.msg}}], body=exc.doc) from exc
        except Exception as exc:  # not UTF-8, nested too deep: FastAPI's answer to a body it cannot parse
            raise HTTPException(400, "There was an error parsing the body") from exc
    try:
        checked = EventBatch.model_validate(received, from_attributes=True)
    except ValidationError as exc:
        return Upload([], [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)])
    return Upload([(e.event_id, e.kind, e.payload) for e in checked.events], [])


# The request body POST /v1/events documents: read_upload reads it, so FastAPI does not (see create_app's openapi).
UPLOAD_BODY = {"required": True,
               "content": {"application/json": {"schema": {"$ref": "#/components/schemas/EventBatch"}}}}


class EventResult(BaseModel):
    event_id: str
    status: Literal["accepted", "duplicate", "rejected"] = Field(
        description="accepted: stored now; duplicate: stored before (safe to forget); rejected: see reason.")
    reason: str | None = Field(default=None, description="Why the event was rejected; null otherwise.")


class UploadResult(BaseModel):
    results: list[EventResult] = Field(description="One answer per event, in the order sent.")
    accepted: int
    duplicate: int
    rejected: int


class Withdrawal(BaseModel):
    status: Literal["confirmed"]
    participant_id: str
    withdrawn_at: str = Field(description="When every record of the participant was deleted (UTC).")


class ParticipantSummary(BaseModel):
    participant_id: str
    condition: str | None = Field(description="The condition the participant was assigned at enrollment; null in a "
                                              "study without conditions, for one enrolled before it had them, and "
                                              "for a withdrawn participant.")
    enrolled_at: str | None
    last_upload_at: str | None
    days_active: int = Field(description="Distinct days with at least one record.")
    comparisons_rated: int
    events: int
    consent_version: str | None
    withdrawn_at: str | None = Field(description="Set for withdrawn participants: only a tombstone remains.")


class ExportEntry(BaseModel):
    record_type: str
    rows: int
    columns: list[str]


AUTH_PROBLEMS: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem, "description": "The body could not be read (not JSON text in UTF-8)."},
    401: {"model": Problem, "description": "Missing or unknown bearer token."},
    429: {"model": Problem, "description": "Too many failed authentications from this address; see Retry-After."},
    413: {"model": Problem, "description": "The request body is larger than the server accepts."},
    422: {"model": ValidationProblem, "description": "The body or a parameter failed validation."},
    503: {"model": Problem, "description": "The server is busy or not initialized; retry later."},
}


# -- request size limit ------------------------------------------------------------------------


class BodySizeLimit:
    """Answer 413 to bodies over the limit, before any of it reaches the application."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _reject(self, send: Send, status: int, detail: str) -> None:
        body = AsciiJSONResponse({"detail": detail}).body
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    def _too_large(self) -> str:
        return (f"The request body is larger than the limit of {self.max_bytes} bytes. "
                "Send fewer events per batch.")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    await self._reject(send, 400, "The Content-Length header is not a number.")
                    return
                if length > self.max_bytes:
                    await self._reject(send, 413, self._too_large())
                    return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._reject(send, 413, self._too_large())
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


# -- the application ---------------------------------------------------------------------------

participant_bearer = HTTPBearer(auto_error=False, scheme_name="ParticipantToken",
                                description="The token a participant received at enrollment.")
researcher_bearer = HTTPBearer(auto_error=False, scheme_name="ResearcherToken",
                               description="A researcher token printed by `studyapp-server init`.")


def _format_loc(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p != "body"]
    return ".".join(parts) or "body"


def _client(request: Request) -> str:
    # uvicorn puts the address from X-Forwarded-For here when the request came through a trusted proxy
    # (--forwarded-allow-ips), so a reverse proxy does not make every participant one address.
    return request.client.host if request.client else "unknown"


class ExportResponse(StreamingResponse):
    """A streamed export that releases its snapshot however the answer ends: also when the client left before
    the first byte, when the body generator never started and so its own clean-up never ran (the snapshot would
    then wait for garbage collection, and hold up the checkpoint a withdrawal owes)."""

    def __init__(self, export: export_mod.HttpExport, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.export = export

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.export.release()


def create_app(storage: Storage, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
               auth_throttle: auth.FailureThrottle | None = None,
               gateway_read_timeout_s: float = gateway.DEFAULT_READ_TIMEOUT_S) -> FastAPI:
    """The API over ``storage``. ``auth_throttle`` counts failed authentications per client address (a default
    one of MAX_AUTH_FAILURES per AUTH_FAILURE_WINDOW_S if not given). ``gateway_read_timeout_s``: how long the model
    gateway waits for the upstream's next bytes before it answers 504 (or cuts a stream)."""
    throttle = auth_throttle or auth.FailureThrottle(MAX_AUTH_FAILURES, AUTH_FAILURE_WINDOW_S)
    app = FastAPI(
        title="studyapp collection server",
        version=__version__,
        description=(
            "Receives the consented, anonymized records of a studyapp study. Participants enroll with a "
            "one-time code, upload batches of events (each stored exactly once by its event_id) and may "
            "withdraw, which deletes all their records. Researchers list participants and export the data."
        ),
        default_response_class=AsciiJSONResponse,
        openapi_tags=[
            {"name": "participants", "description": "Called by the participant's app (participant token)."},
            {"name": "researchers", "description": "Called by the research team (researcher token)."},
            {"name": "service", "description": "Health and status."},
        ],
    )
    app.state.storage = storage
    # (protocol version, condition) -> (text, resolved protocol) as participants in that condition receive them.
    participant_protocols: dict[tuple[str, str | None], tuple[str, dict[str, Any]]] = {}

    def participant_protocol(study: dict[str, Any], participant_id: str) -> tuple[str, dict[str, Any]]:
        """The protocol a participant runs: the study's, or in a study with conditions their condition's, which
        names nothing of the other conditions (the TOML text would, so its JSON stands in for it)."""
        data = json.loads(study["protocol_json"])
        if "conditions" not in data:
            return study["protocol"], data
        condition = storage.condition_of(participant_id)
        # By content, not version string: a study may publish "1" again with other text.
        key = (hashlib.sha256(study["protocol_json"].encode()).hexdigest(), condition)
        found = participant_protocols.get(key)
        if found is None:
            # Enrolled before the study had conditions (or in one a later protocol dropped): none of them.
            resolved = {k: v for k, v in data.items() if k != "conditions"}
            try:
                protocol = protocol_from_dict(data, source="the study's stored protocol")
            except ProtocolError as exc:
                # Published by an older or altered server: the app refuses it with the reason, as any protocol.
                log.warning("the study's stored protocol does not validate: %s", exc)
            else:
                if protocol.conditions is not None and condition in protocol.conditions.names:
                    try:
                        resolved = protocol.for_condition(condition).to_dict()
                    except ProtocolError as exc:
                        # Never the study's own settings instead: that would be the wrong condition's data.
                        log.error("condition %s of the study's protocol cannot be built: %s", condition, exc)
                        raise HTTPException(503, "This participant's condition of the study's protocol cannot be "
                                                 "built; the researchers must publish a corrected protocol (the "
                                                 "server's log names the problem). Try again later.") from None
            found = participant_protocols[key] = (json.dumps(resolved, ensure_ascii=False, sort_keys=True), resolved)
        return found

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, exc: RequestValidationError) -> AsciiJSONResponse:
        def unreadable(e: dict[str, Any]) -> bool:
            whole_body = tuple(e.get("loc", ())) == ("body",)
            return e.get("type") == "json_invalid" or (whole_body and (isinstance(e.get("input"), bytes)
                                                                      or e.get("type") == "missing"))

        if any(unreadable(e) for e in exc.errors()):
            # Not JSON at all (or not sent as JSON, so left as bytes; or no body, which is no JSON either): nothing
            # to name field by field, and the API promises 400 for a body it cannot read.
            return AsciiJSONResponse({"detail": "The request body is not valid JSON: send a JSON object encoded as "
                                                "UTF-8 (Content-Type: application/json)."}, status_code=400)
        errors = [f"{_format_loc(tuple(e.get('loc', ())))}: {e.get('msg', 'invalid')}" for e in exc.errors()]
        summary = "; ".join(errors[:5]) + (f"; and {len(errors) - 5} more" if len(errors) > 5 else "")
        return AsciiJSONResponse({"detail": f"Invalid request: {summary}", "errors": errors}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, exc: StarletteHTTPException) -> AsciiJSONResponse:
        detail = str(exc.detail)
        if exc.status_code == 400 and "parsing the body" in detail:
            detail = "The request body could not be read: send JSON text encoded as UTF-8."
        return AsciiJSONResponse({"detail": detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(NotInitialized)
    async def on_not_initialized(request: Request, exc: NotInitialized) -> AsciiJSONResponse:
        return AsciiJSONResponse({"detail": "The server holds no study yet; the research team must run init."},
                                 status_code=503)

    @app.exception_handler(StorageBusy)
    async def on_too_many_snapshots(request: Request, exc: StorageBusy) -> AsciiJSONResponse:
        # PostgreSQL: as many exports are open as this process allows; they keep the rest of the pool for uploads.
        return AsciiJSONResponse({"detail": str(exc)}, status_code=503,
                                 headers={"Retry-After": str(exc.retry_after_s)})

    @app.exception_handler(sqlite3.OperationalError)
    async def on_busy(request: Request, exc: sqlite3.OperationalError) -> AsciiJSONResponse:
        # "database is locked" and friends: nothing was stored, the client retries with backoff.
        return AsciiJSONResponse({"detail": "The server's database is busy; retry shortly."}, status_code=503,
                                 headers={"Retry-After": "1"})

    try:
        import psycopg
    except ImportError:  # the SQLite backend works without psycopg installed
        psycopg = None  # type: ignore[assignment]
    if psycopg is not None:
        @app.exception_handler(psycopg.OperationalError)
        async def on_unavailable(request: Request, exc: Exception) -> AsciiJSONResponse:
            # PostgreSQL unreachable, a failover, the pool exhausted (PoolTimeout), a serialization failure:
            # nothing was stored, the client retries with backoff. The reason goes to the log, never the client.
            log.warning("database unavailable for %s %s: %s", request.method, request.url.path,
                        type(exc).__name__)
            return AsciiJSONResponse({"detail": "The server's database is unavailable; retry shortly."},
                                     status_code=503, headers={"Retry-After": "1"})

    def allowed_client(request: Request) -> str:
        """The client's address, unless it failed to authenticate too often lately (then 429 with Retry-After)."""
        client = _client(request)
        wait = throttle.wait_s(client)
        if wait:
            raise HTTPException(429, f"Too many failed attempts from this address; try again in {wait} seconds.",
                                headers={"Retry-After": str(wait)})
        return client

    def participant_token(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(participant_bearer)],
        client: Annotated[str, Depends(allowed_client)],
    ) -> str:
        if credentials is None:
            raise HTTPException(401, "Send the participant token as 'Authorization: Bearer TOKEN'.",
                                headers={"WWW-Authenticate": "Bearer"})
        return credentials.credentials

    def current_participant(token: Annotated[str, Depends(participant_token)],
                            client: Annotated[str, Depends(allowed_client)]) -> str:
        participant_id = storage.participant_for(token)
        if participant_id is None:
            if storage.tombstone_for(token) is not None:
                raise HTTPException(410, "This participant has withdrawn from the study; nothing more is accepted.")
            throttle.failed(client)
            raise HTTPException(401, "The server does not know this participant token; enroll again.",
                                headers={"WWW-Authenticate": "Bearer"})
        return participant_id

    def current_researcher(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(researcher_bearer)],
        client: Annotated[str, Depends(allowed_client)],
    ) -> str:
        name = storage.researcher_for(credentials.credentials) if credentials is not None else None
        if name is None:
            if credentials is not None:
                throttle.failed(client)
            raise HTTPException(401, "This needs a researcher token ('Authorization: Bearer TOKEN').",
                                headers={"WWW-Authenticate": "Bearer"})
        return name

    @app.get("/health", tags=["service"], response_model=Health, summary="Is the server up?",
             responses={503: AUTH_PROBLEMS[503]})
    def health() -> Health:
        study = storage.require_study()
        return Health(status="ok", study_id=study["id"], version=__version__)

    @app.post("/v1/enroll", tags=["participants"], response_model=Enrollment, status_code=201,
              summary="Exchange a one-time code for a participant id, a token and the protocol",
              responses={403: {"model": Problem, "description": "The code is unknown or already used."},
                         400: AUTH_PROBLEMS[400], 413: AUTH_PROBLEMS[413], 422: AUTH_PROBLEMS[422],
                         429: AUTH_PROBLEMS[429], 503: AUTH_PROBLEMS[503]})
    def enroll(body: EnrollRequest, client: Annotated[str, Depends(allowed_client)]) -> Enrollment:
        study = storage.require_study()
        result = storage.enroll(body.code, body.claim)
        if result is None:
            throttle.failed(client)
            raise HTTPException(403, "This enrollment code is unknown or was already used. "
                                     "Check it, or ask the research team for a new one.")
        participant_id, token = result
        text, resolved = participant_protocol(study, participant_id)
        return Enrollment(participant_id=participant_id, token=token, study_id=study["id"],
                          protocol=text, protocol_resolved=resolved)

    @app.get("/v1/protocol", tags=["participants"], response_model=ProtocolVersion,
             summary="The study's current protocol (apps check it at every sync)",
             responses={401: AUTH_PROBLEMS[401], 429: AUTH_PROBLEMS[429], 503: AUTH_PROBLEMS[503],
                        410: {"model": Problem, "description": "The participant has withdrawn."}})
    def protocol(participant_id: Annotated[str, Depends(current_participant)]) -> ProtocolVersion:
        study = storage.require_study()
        text, resolved = participant_protocol(study, participant_id)
        return ProtocolVersion(study_id=study["id"], version=study["version"], protocol=text,
                               protocol_resolved=resolved)

    @app.post("/v1/events", tags=["participants"], response_model=UploadResult,
              summary="Upload a batch of events (each stored at most once)",
              responses={**AUTH_PROBLEMS,
                         410: {"model": Problem, "description": "The participant has withdrawn."}},
              openapi_extra={"requestBody": UPLOAD_BODY})
    def upload(body: Annotated[Upload, Depends(read_upload)],
               participant_id: Annotated[str, Depends(current_participant)]) -> AsciiJSONResponse:
        if body.errors:
            raise RequestValidationError(body.errors)
        try:
            results = storage.store_events(participant_id, body.events)
        except ParticipantGone:
            raise HTTPException(410, "This participant has withdrawn from the study; nothing more is accepted.") \
                from None
        # The UploadResult (the documented response_model) as plain JSON: building and re-validating a model per
        # event would cost the server as much as storing it.
        counts = Counter(r.status for r in results)
        return AsciiJSONResponse({
            "results": [{"event_id": r.event_id, "status": r.status, "reason": r.reason} for r in results],
            "accepted": counts["accepted"], "duplicate": counts["duplicate"], "rejected": counts["rejected"],
        })

    @app.post("/v1/withdraw", tags=["participants"], response_model=Withdrawal,
              summary="Withdraw: delete every record of this participant, keep only a tombstone",
              description="Idempotent: repeating the request after a lost reply answers confirmed again.",
              responses={400: AUTH_PROBLEMS[400], 401: AUTH_PROBLEMS[401], 413: AUTH_PROBLEMS[413],
                         429: AUTH_PROBLEMS[429], 503: AUTH_PROBLEMS[503]})
    def withdraw(token: Annotated[str, Depends(participant_token)],
                 client: Annotated[str, Depends(allowed_client)]) -> Withdrawal:
        stone = storage.withdraw(token)
        if stone is None:
            throttle.failed(client)
            raise HTTPException(401, "The server does not know this participant token.",
                                headers={"WWW-Authenticate": "Bearer"})
        return Withdrawal(status="confirmed", participant_id=stone["participant_id"],
                          withdrawn_at=stone["withdrawn_at"])

    @app.get("/v1/participants", tags=["researchers"], response_model=list[ParticipantSummary],
             summary="Compliance table: one row per participant",
             responses={401: AUTH_PROBLEMS[401], 429: AUTH_PROBLEMS[429], 503: AUTH_PROBLEMS[503]})
    def participants(researcher: Annotated[str, Depends(current_researcher)]) -> list[ParticipantSummary]:
        return [ParticipantSummary(**row) for row in storage.compliance()]

    @app.get("/v1/export", tags=["researchers"], response_model=list[ExportEntry],
             summary="The record types available for export, with row counts and columns",
             responses={401: AUTH_PROBLEMS[401], 429: AUTH_PROBLEMS[429], 503: AUTH_PROBLEMS[503]})
    def export_listing(researcher: Annotated[str, Depends(current_researcher)]) -> list[ExportEntry]:
        with storage.snapshot() as snapshot:  # one snapshot: the counts agree with each other
            snapshot.require_study()
            return [ExportEntry(record_type=rt.name, rows=export_mod.count_rows(snapshot, rt),
                                columns=export_mod.column_names(rt)) for rt in export_mod.RECORD_TYPES]

    @app.get("/v1/export/{record_type}", tags=["researchers"],
             summary="Export one record type as JSON lines or CSV (logged)",
             description="The rows come from one snapshot of the database: X-Export-Rows says how many, "
                         "X-Export-Last-Event the number of the last event it holds. An export that fails midway "
                         "ends with a broken connection, never like a complete answer; only complete exports "
                         "are logged.",
             response_class=StreamingResponse,
             responses={200: {"description": "The rows, streamed.",
                              "content": {"application/x-ndjson": {"schema": {"type": "string"}},
                                          "text/csv": {"schema": {"type": "string"}}}},
                        **AUTH_PROBLEMS, 404: {"model": Problem, "description": "Unknown record type."}})
    async def export_one(
        researcher: Annotated[str, Depends(current_researcher)],
        record_type: Annotated[str, Path(max_length=64, description="One of: "
                                         + ", ".join(export_mod.RECORD_TYPE_NAMES))],
        format: Annotated[Literal["jsonl", "csv"], Query(description="jsonl or csv (Parquet: use the CLI).")] = "jsonl",
    ) -> StreamingResponse:
        if record_type not in export_mod.RECORD_TYPE_NAMES:
            raise HTTPException(404, "Unknown record type; choose one of " + ", ".join(export_mod.RECORD_TYPE_NAMES))
        rt = export_mod.record_type(record_type)
        stream = export_mod.HttpExport(storage, rt, format)
        await stream.open()

        async def logged(rows: int) -> None:
            await run_in_threadpool(storage.log_export, researcher=researcher, via="http", fmt=format,
                                    record_types=[rt.name], rows=rows, destination=None)

        headers = {"X-Export-Rows": str(stream.rows), "X-Export-Last-Event": str(stream.last_event)}
        return ExportResponse(stream, stream.body(logged), headers=headers,
                              media_type="text/csv" if format == "csv" else "application/x-ndjson")

    def openapi() -> dict[str, Any]:
        # POST /v1/events documents its body (UPLOAD_BODY) by reference: the models it names join the components.
        if app.openapi_schema is None:
            schema = FastAPI.openapi(app)
            batch = EventBatch.model_json_schema(ref_template="#/components/schemas/{model}")
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components.update(batch.pop("$defs", {}))
            components["EventBatch"] = batch
            schema["components"]["schemas"] = dict(sorted(components.items()))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    dashboard.install(app, storage)
    gateway.install(app, storage, participant_token=participant_token, allowed_client=allowed_client,
                    failed=throttle.failed, read_timeout_s=gateway_read_timeout_s)
    app.add_middleware(BodySizeLimit, max_bytes=max_body_bytes)
    return app



class WorkerHeader:
    """Names the worker process that answered (``X-Studyapp-Worker: <pid>``): with several workers, an operator
    (and the tests) can see that the load is shared."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_named(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-studyapp-worker", str(os.getpid()).encode())]
            await send(message)

        await self.app(scope, receive, send_named)


def app_from_env() -> FastAPI:
    """The app for one of ``studyapp-server serve --workers N``'s processes (uvicorn's ``factory=True``): the
    database and options come from the environment the command set (STUDYAPP_SERVER_DB,
    STUDYAPP_SERVER_MAX_BODY_BYTES, STUDYAPP_SERVER_GATEWAY_READ_TIMEOUT), so no password appears on a worker's
    command line. The command has already migrated the database and checked that it holds a study."""
    from studyapp.server.backend import ENV_DB, ENV_GATEWAY_READ_TIMEOUT, ENV_MAX_BODY_BYTES, open_storage

    db = os.environ.get(ENV_DB)
    if not db:
        raise RuntimeError(f"{ENV_DB} is not set: start the workers with `studyapp-server serve --workers N`.")
    storage = open_storage(db, migrate=False)
    app = create_app(storage, max_body_bytes=int(os.environ.get(ENV_MAX_BODY_BYTES) or DEFAULT_MAX_BODY_BYTES),
                     gateway_read_timeout_s=float(os.environ.get(ENV_GATEWAY_READ_TIMEOUT)
                                                  or gateway.DEFAULT_READ_TIMEOUT_S))
    started = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[Any]:
        async with started(app) as state:
            yield state
        storage.close()  # the worker's connection pool ends with it

    app.router.lifespan_context = lifespan
    app.add_middleware(WorkerHeader)
    return app
