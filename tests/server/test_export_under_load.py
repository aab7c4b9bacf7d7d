"""Exports while participants upload (bench/bench_export_load.py is the large version of this test).

Participants upload an attribute and its label in one batch, again and again, while researchers export over
HTTP and with the CLI in every format. Each export must be complete and one snapshot: its rows are those of the
database at the event it names, every label's attribute is in the same export, and the export log records what
was sent. The server logs no error.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from studyapp.server import export
from studyapp.server.cli import cli
from tests.server import live as f
from tests.server.export_check import check_folder, check_http
from tests.server.live import LiveServer

PARTICIPANTS = 4
# Enough rows before the uploads start that an export over HTTP takes several chunks (each a step of the stream).
PREFILLED_PAIRS = 1500
PAIRS_PER_BATCH = 5


class ErrorLog(logging.Handler):
    """Collects the errors the server logs (uvicorn's "Exception in ASGI application", the export's own)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def lines(self) -> list[str]:
        return [f"{r.name}: {r.getMessage()} {r.exc_info[1]!r}" if r.exc_info else f"{r.name}: {r.getMessage()}"
                for r in self.records]


@pytest.fixture
def server_errors() -> Iterator[ErrorLog]:
    handler = ErrorLog()
    loggers = [logging.getLogger(name) for name in ("uvicorn.error", "uvicorn", "studyapp")]
    for logger in loggers:
        logger.addHandler(handler)
    yield handler
    for logger in loggers:
        logger.removeHandler(handler)


def pair(participant: str) -> list[dict]:
    attribute_id = f"a-{participant[:8]}-{uuid.uuid4().hex[:12]}"
    return [f.attribute(attribute_id), f.attribute_label(attribute_id)]


class Uploader(threading.Thread):
    """One participant's app: batches of attribute + label, until told to stop."""

    def __init__(self, live: LiveServer, token: str, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.live, self.token, self.stop = live, token, stop
        self.first_batch = threading.Event()
        self.statuses: Counter[int] = Counter()
        self.problems: list[str] = []

    def run(self) -> None:
        with httpx.Client(base_url=self.live.base_url, timeout=60,
                          headers={"Authorization": f"Bearer {self.token}"}) as client:
            while not self.stop.is_set():
                events = [e for _ in range(PAIRS_PER_BATCH) for e in pair(self.token)]
                response = client.post("/v1/events", json={"events": events})
                self.statuses[response.status_code] += 1
                if response.status_code == 200 and response.json()["accepted"] != len(events):
                    self.problems.append(str(response.json()["results"][:2]))
                self.first_batch.set()


def test_exports_while_participants_upload_are_complete_snapshots(live: LiveServer, tmp_path: Path,
                                                                  server_errors: ErrorLog) -> None:
    tokens = []
    for _ in range(PARTICIPANTS):
        participant_id, token = live.enroll()
        assert live.upload(token, [f.consent()]).json()["accepted"] == 1
        tokens.append((participant_id, token))
    first = tokens[0][0]
    live.storage.bulk_insert_events(first, ((e["event_id"], e["kind"], e["payload"])
                                            for _ in range(PREFILLED_PAIRS) for e in pair(first)))
    stop = threading.Event()
    uploaders = [Uploader(live, token, stop) for _, token in tokens]
    for uploader in uploaders:
        uploader.start()
    http_exports: list[tuple[str, int]] = []
    folders: list[tuple[Path, str]] = []
    try:
        for uploader in uploaders:
            assert uploader.first_batch.wait(60), "an uploader never finished a batch"
        with httpx.Client(base_url=live.base_url, timeout=60, headers=live.researcher()) as client:
            for round_ in range(2):
                for fmt in ("csv", "jsonl"):
                    for name in ("attribute_labels", "attributes"):
                        response = client.get(f"/v1/export/{name}", params={"format": fmt})
                        assert response.status_code == 200
                        rows = check_http(response.headers, response.content, fmt, export.record_type(name),
                                          live.storage)
                        assert rows >= PREFILLED_PAIRS
                        http_exports.append((name, rows))
                for fmt in export.FORMATS:
                    out = tmp_path / f"out-{round_}-{fmt}"
                    result = CliRunner().invoke(cli, ["export", "--format", fmt, "--out", str(out),
                                                      "--db", live.db_arg, "--researcher", "dr-load"])
                    assert result.exit_code == 0, result.output
                    folders.append((out, fmt))
    finally:
        stop.set()
        for uploader in uploaders:
            uploader.join(60)
    assert not server_errors.lines(), server_errors.lines()
    for uploader in uploaders:
        assert set(uploader.statuses) == {200}, uploader.statuses
        assert not uploader.problems
    for out, fmt in folders:
        counts = check_folder(out, fmt, live.storage)
        assert counts["attribute_labels"] >= PREFILLED_PAIRS
    # The export log holds what each HTTP export sent, no more.
    logged = [(json.loads(row["record_types"])[0], row["rows"]) for row in live.storage.export_log()
              if row["via"] == "http"]
    assert sorted(logged) == sorted(http_exports)
