"""Study records on their way to the outbox, off the app's event loop.

Anonymizing takes milliseconds per message (and a second or two to load the first time), so the app hands
each record to a ``RecordPump``: one worker thread with its own database connection (SQLite connections are
not shared across threads) runs every record through the ``Collector``, in order. ``flush()`` waits until
everything handed in so far is queued or refused; the app calls it on exit so no record is left behind.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from studyapp.privacy.services import PrivacyServices
from studyapp.store.db import open_database
from studyapp.study.protocol import Protocol

log = logging.getLogger(__name__)

Record = tuple[str, dict[str, Any]]


class RecordPump:
    def __init__(self, database_path: Path, protocol: Protocol,
                 make_services: Callable[[Database, Protocol], PrivacyServices] | None = None) -> None:
        self.database_path = database_path
        self.protocol = protocol
        self._make_services = make_services or PrivacyServices.create
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="studyapp-records")
        self._local = threading.local()
        self._futures: list[Future[list[str | None]]] = []
        self._lock = threading.Lock()
        self.queued = 0
        self.refused = 0

    def _services(self) -> PrivacyServices:
        services = getattr(self._local, "services", None)
        if services is None:
            services = self._make_services(open_database(self.database_path), self.protocol)
            self._local.services = services
        return services

    def _collect(self, records: list[Record]) -> list[str | None]:
        try:
            ids = self._services().collector.collect_many(records)
        except Exception:
            # The participant's own data is safe in their database either way; a record that cannot be
            # queued is logged (without its content) and the app goes on.
            log.exception("could not queue %d study record(s) of kinds %s", len(records),
                          sorted({kind for kind, _ in records}))
            self.refused += len(records)
            return [None] * len(records)
        self.queued += sum(1 for i in ids if i is not None)
        self.refused += sum(1 for i in ids if i is None)
        return ids

    def record(self, kind: str, payload: dict[str, Any]) -> None:
        """Hand one record in (returns at once)."""
        self.record_many([(kind, payload)])

    def record_many(self, records: Iterable[Record]) -> None:
        batch = list(records)
        if not batch:
            return
        future = self._executor.submit(self._collect, batch)
        with self._lock:
            self._futures = [f for f in self._futures if not f.done()] + [future]

    def after_consent(self, record: Any) -> None:
        """Queue the earlier records the participant chose to include with their consent (in the worker)."""
        if record is None:
            return
        future = self._executor.submit(lambda: [self._services().after_consent(record)])
        with self._lock:
            self._futures = [f for f in self._futures if not f.done()] + [future]  # type: ignore[list-item]

    def flush(self, timeout: float | None = None) -> None:
        with self._lock:
            pending = list(self._futures)
        wait(pending, timeout=timeout)

    def _close_connection(self) -> None:
        services = getattr(self._local, "services", None)
        if services is not None:
            services.collector.db.close()
            self._local.services = None

    def close(self) -> None:
        """Finish every record handed in, then release the worker's connection."""
        self._executor.submit(self._close_connection)
        self._executor.shutdown(wait=True)
