"""Test support for the collection server: a study protocol, event factories and a live uvicorn server.

Used by tests/server and tests/sync (and the benchmarks' smoke runs).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import uvicorn

from studyapp.server.app import create_app
from studyapp.server.backend import open_storage
from studyapp.server.storage import Storage
from studyapp.study.protocol import parse_protocol
from tests.support.net import bound_socket, free_port, wait_until_http_ok

if TYPE_CHECKING:
    from studyapp.server.pg_storage import PgStorage

# The server's storage backends every HTTP-level test runs on (see the ``server_db`` fixture).
BACKENDS = ("sqlite", "postgresql")
# For tests that run the studyapp-server CLI on the live server's database.

STUDY_ID = "sync-test-2026"
PROTOCOL = """
[study]
id = "sync-test-2026"
title = "Sync test study"
version = "1"
duration_days = 14

[[consent]]
version = "1"
title = "Consent"
text = "You agree to take part."

[categories.ratings]
required = true
description = "Ratings."

[categories.relevance_labels]
required = false
description = "Relevance labels."

[categories.attribute_labels]
required = false
description = "Attribute labels."

[categories.attributes]
required = false
description = "Attributes."

[categories.conversation_text]
required = false
description = "Conversation text."

[categories.selections]
required = false
description = "The selector's decisions on ordinary turns."

[categories.question_answers]
required = false
description = "Your answers to the study's questions."

[comparisons]
min_turns_between = 1
daily_cap = 3
probability = 0.5
min_attributes = 1

[[questions]]
id = "felt_understood"
text = "Which answer made you feel more understood?"
type = "choice"
options = ["Response 1", "Response 2", "Neither"]
when = "after_comparison"

[[questions]]
id = "what_was_assumed"
text = "What did an answer assume about you?"
type = "text"
when = "after_comparison"

[[questions]]
id = "written_for_you"
text = "Did that reply feel like it was written for you?"
type = "likert"
points = 5
labels = ["Not at all", "Completely"]
when = "after_turn"
probability = 0.5
daily_cap = 2
"""
ALL_CATEGORIES = ["attribute_labels", "attributes", "conversation_text", "question_answers", "ratings",
                  "relevance_labels", "selections"]


def new_storage(target: Path | str, protocol_text: str = PROTOCOL) -> tuple[Storage | PgStorage, str]:
    """A migrated server database (a SQLite path or a PostgreSQL URL) holding a study (the test study by default);
    returns it with the researcher token."""
    storage = open_storage(target)
    protocol = parse_protocol(protocol_text, source=str(target))
    token = storage.init_study(study_id=protocol.id, title=protocol.title, version=protocol.version,
                               protocol=protocol_text, protocol_data=protocol.to_dict())
    return storage, token


@contextmanager
def serve(storage: Storage | PgStorage, **options: Any) -> Iterator[str]:
    """Run the app under uvicorn on 127.0.0.1 (free port) in a thread; yields the base URL."""
    sock = bound_socket()
    port = sock.getsockname()[1]
    # lifespan on: the app's model gateway opens its upstream client there.
    config = uvicorn.Config(create_app(storage, **options), log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until_http_ok(f"{base_url}/health", timeout=20, alive=thread.is_alive)
        yield base_url
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@dataclass
class WorkersServer:
    """A real ``studyapp-server serve --workers N`` process (see ``serve_workers``)."""

    process: subprocess.Popen[bytes]
    base_url: str

    def is_worker(self, pid: int | str) -> bool:
        """Whether ``pid`` (an X-Studyapp-Worker header) is a child process of this server."""
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[1]) == self.process.pid


def wait_for_workers(base_url: str, workers: int, *, alive: Callable[[], bool], timeout: float = 120.0) -> set[str]:
    """Ask ``/health`` on new connections until ``workers`` different worker processes have answered (each starts
    on its own, and the first answer comes from whichever was ready first); returns their pids."""
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    while len(seen) < workers:
        if not alive():
            raise RuntimeError(f"The server at {base_url} exited with {len(seen)} of {workers} workers ready.")
        if time.monotonic() >= deadline:
            raise TimeoutError(f"Only workers {sorted(seen)} of {workers} answered at {base_url} within "
                               f"{timeout:.0f}s.")
        seen.add(httpx.get(f"{base_url}/health", timeout=10).headers["X-Studyapp-Worker"])
        # A readiness poll, not synchronisation of test logic: the bounded loop above ends it.
        time.sleep(0.02)
    return seen


@contextmanager
def serve_workers(url: str, workers: int = 2) -> Iterator[WorkersServer]:
    """``studyapp-server serve --workers N --db URL`` in a subprocess on 127.0.0.1, as an operator starts it (the URL
    in STUDYAPP_SERVER_DB); the database must hold a study. Stopped with SIGTERM; its stderr must show no
    traceback."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen([sys.executable, "-m", "studyapp.server.cli", "serve", "--workers", str(workers),
                                "--host", "127.0.0.1", "--port", str(port)],
                               env={**os.environ, "STUDYAPP_SERVER_DB": url}, stderr=subprocess.PIPE)
    stderr = b""
    try:
        wait_until_http_ok(f"{base_url}/health", timeout=60, alive=lambda: process.poll() is None)
        wait_for_workers(base_url, workers, alive=lambda: process.poll() is None)
        yield WorkersServer(process, base_url)
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=60)
    assert b"Traceback" not in stderr, stderr.decode(errors="replace")[-4000:]


@dataclass
class LiveServer:
    base_url: str
    storage: Storage | PgStorage
    researcher_token: str

    @property
    def backend(self) -> str:
        return "sqlite" if isinstance(self.storage, Storage) else "postgresql"

    @property
    def db_arg(self) -> str:
        """The server database as the CLI's ``--db`` names it: the SQLite file's path or the PostgreSQL URL."""
        return str(self.storage.path) if isinstance(self.storage, Storage) else self.storage.url

    def sql(self, query: str, params: list[Any] | tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Rows of a read straight from the server's database, on either backend (``?`` placeholders, table
        names quoted with double quotes)."""
        with self.storage._read() as conn:
            return [tuple(row) for row in conn.execute(query, params).fetchall()]

    def table_rows(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of every table of the server's database, per table."""
        return {t: self.sql(f'SELECT * FROM "{t}"') for t in self.storage.table_names()}

    def dump(self) -> str:
        """Every row of the server's database as text (to look for what must never be stored)."""
        return "\n".join(str(row) for rows in self.table_rows().values() for row in rows)

    def count_records(self, kind: str) -> int:
        with self.storage.snapshot() as snapshot:
            return snapshot.count_records(kind)

    def code(self) -> str:
        return self.storage.create_codes(1)[0]

    def enroll(self) -> tuple[str, str]:
        """Enroll a new participant over HTTP; returns (participant_id, token)."""
        response = httpx.post(f"{self.base_url}/v1/enroll", json={"code": self.code()})
        response.raise_for_status()
        data = response.json()
        return data["participant_id"], data["token"]

    def enroll_consented(self) -> tuple[str, str]:
        """Enroll a new participant over HTTP and upload its consent to every category; (participant_id, token)."""
        participant_id, token = self.enroll()
        self.upload(token, [consent()]).raise_for_status()
        return participant_id, token

    def upload(self, token: str, events: list[dict[str, Any]]) -> httpx.Response:
        return httpx.post(f"{self.base_url}/v1/events", json={"events": events},
                          headers={"Authorization": f"Bearer {token}"})

    def researcher(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.researcher_token}"}


# -- event factories (payload fields as in studyapp/events.py) -------------------------------------

_n = 0


def _id(prefix: str) -> str:
    global _n
    _n += 1
    return f"{prefix}-{_n:08d}"


def event(kind: str, payload: dict[str, Any], event_id: str | None = None) -> dict[str, Any]:
    return {"event_id": event_id or _id("ev"), "kind": kind, "payload": payload}


CONSENT_SHA256 = parse_protocol(PROTOCOL, source="test").current_consent.sha256


def consent(categories: list[str] | None = None, action: str = "grant", *, version: str = "1",
            sha256: str = CONSENT_SHA256) -> dict[str, Any]:
    return event("consent", {"consent_version": version, "consent_sha256": sha256,
                             "categories": ALL_CATEGORIES if categories is None else categories,
                             "action": action, "created_at": "2026-11-20T10:00:00+00:00"})


def message(content: str = "Hello [PERSON_1]", day: str = "2026-11-20", **extra: Any) -> dict[str, Any]:
    return event("message", {"conversation_id": "c1", "message_id": _id("m"), "role": "user", "content": content,
                             "created_at": f"{day}T10:00:00+00:00", "status": "complete", **extra})


def attribute(attribute_id: str | None = None, text: str = "Likes hiking", **extra: Any) -> dict[str, Any]:
    payload = {"attribute_id": attribute_id or _id("a"), "text": text, "reason": "said so", "confidence": 0.8,
               "origin": "model", "status": "active", "created_at": "2026-11-20T10:00:00+00:00",
               "updated_at": "2026-11-20T10:00:00+00:00"}
    payload.update(extra)
    return event("attribute", payload)


def attribute_label(attribute_id: str = "a1", label: str = "makes_sense") -> dict[str, Any]:
    return event("attribute_label", {"attribute_id": attribute_id, "label": label,
                                     "labeled_at": "2026-11-21T10:00:00+00:00"})


def label_dismissal(attribute_id: str = "a1") -> dict[str, Any]:
    return event("label_dismissal", {"dismissal_id": _id("d"), "attribute_id": attribute_id,
                                     "dismissed_at": "2026-11-21T10:05:00+00:00", "source": "label_prompt"})


def comparison(comparison_id: str | None = None, rating: int | None = 4, day: str = "2026-11-21",
               **extra: Any) -> dict[str, Any]:
    payload = {"comparison_id": comparison_id or _id("cmp"), "conversation_id": "c1", "personalized_side": "left",
               "model": "gpt-test", "created_at": f"{day}T11:00:00+00:00", "skipped": False,
               "prompt": "What should I do this weekend?", "generic_response": "Rest.",
               "personalized_response": "Go hiking.", "rating": rating,
               "chosen": "personalized" if rating is not None else None,
               "rated_at": f"{day}T11:01:00+00:00" if rating is not None else None}
    payload.update(extra)
    return event("comparison", payload)


def relevance_label(comparison_id: str = "cmp1", attribute_id: str = "a1") -> dict[str, Any]:
    return event("relevance_label", {"comparison_id": comparison_id, "attribute_id": attribute_id,
                                     "selected_by_model": True, "model_relevant": True, "human_relevant": None})


def judge_verdict(comparison_id: str = "cmp1", side: str = "right", rating: int = 2) -> dict[str, Any]:
    return event("judge_verdict", {"comparison_id": comparison_id, "judge_model": "judge-1",
                                   "personalized_side": side, "rating": rating})


def question_answer(status: str = "answered", **extra: Any) -> dict[str, Any]:
    payload = {"answer_id": _id("ans"), "question_id": "written_for_you", "question_version": "1",
               "question_type": "likert", "question_when": "after_turn", "status": status,
               "asked_at": "2026-11-21T19:30:00.000000-05:00",
               "answered_at": "2026-11-21T19:30:05.000000-05:00" if status == "answered" else None,
               "answer_number": 4 if status == "answered" else None, "message_id": "m1", "study_day": 2,
               "utc_offset_min": -300, "ask_probability": 0.5}
    payload.update(extra)
    return event("question_answer", payload)


def one_of_each() -> list[dict[str, Any]]:
    return [consent(), message(), attribute(), attribute_label(), comparison(), relevance_label(), judge_verdict()]


def json_payload(e: dict[str, Any]) -> str:
    """An event's payload as the outbox stores it."""
    import json

    return json.dumps(e["payload"], ensure_ascii=False, sort_keys=True)


@pytest.fixture(params=BACKENDS)
def server_db(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    """Where a test's server database lives, once per backend: a SQLite file, or a fresh database of the session's
    throwaway PostgreSQL cluster (import ``pg_cluster`` and ``pg_url`` from tests/support/postgres.py into the
    conftest too). A test marked ``sqlite_only(reason)`` runs on SQLite alone."""
    if request.param == "sqlite":
        return tmp_path / "server.db"
    marker = request.node.get_closest_marker("sqlite_only")
    if marker is not None:
        pytest.skip(f"SQLite only: {marker.args[0] if marker.args else 'the SQLite file itself'}")
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture(name="server_db")
def sqlite_server_db(tmp_path: Path) -> Path:
    """``server_db`` on SQLite alone, for tests of the participant's app that need a server but test nothing of its
    storage (import it with ``live``: running them on PostgreSQL too would test the same app twice)."""
    return tmp_path / "server.db"


@pytest.fixture
def live(server_db: Path | str) -> Iterator[LiveServer]:
    """A real uvicorn server on 127.0.0.1 with a fresh study database, on each backend (import it and
    ``server_db`` into a conftest)."""
    storage, token = new_storage(server_db)
    with serve(storage) as base_url:
        yield LiveServer(base_url, storage, token)
    storage.close()
