"""Study records on their way to the outbox, off the app's event loop.

While the install is enrolled, the database notes every study record it writes in ``collect_queue``, in the
same transaction as the record itself (studyapp.store.collect_queue). The ``RecordPump`` drains that intake:
one worker thread with its own database connection (SQLite connections are not shared across threads) runs
the records through the ``Collector`` (consent, anonymization: milliseconds per message, a second or two to
load the first time), in order. It drains at start (whatever a crash or a kill left behind) and whenever the
app says records were written (``wake``). ``flush()`` waits until everything so far is queued or refused.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from studyapp.privacy.collect import AnonymizationFailed
from studyapp.privacy.intake import drain
from studyapp.privacy.services import PrivacyServices
from studyapp.store.db import open_database
from studyapp.study.protocol import Protocol

log = logging.getLogger(__name__)


class RecordPump:
    def __init__(self, database_path: Path, protocol: Protocol,
                 make_services: Callable[[Database, Protocol], PrivacyServices] | None = None) -> None:
        self.database_path = database_path
        self.protocol = protocol
        self._make_services = make_services or PrivacyServices.create
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="studyapp-records")
        self._local = threading.local()
        self._futures: list[Future[Any]] = []
        self._lock = threading.Lock()
        # A drain waiting to start covers every record written before it runs: wakes coalesce into it.
        self._drain_waiting = False
        self.queued = 0
        self.refused = 0
        self.last_error: str | None = None
        self.wake()  # records a crash left in the intake go out now

    def _services(self) -> PrivacyServices:
        services = getattr(self._local, "services", None)
        if services is None:
            services = self._make_services(open_database(self.database_path), self.protocol)
            self._local.services = services
        return services

    def _drain(self) -> None:
        with self._lock:
            self._drain_waiting = False
        try:
            queued, refused = drain(self._services().collector)
        except AnonymizationFailed as exc:
            # The records stay in the intake and go through at the next drain (the next record, or next start).
            self.last_error = f"anonymization failed ({exc}); the records wait and are tried again"
            return
        except Exception as exc:
            # The participant's own data is safe in their database either way, and the intake keeps the records.
            log.exception("could not pass study records through the privacy gate")
            self.last_error = f"could not queue study records ({exc.__class__.__name__}); they are tried again"
            return
        self.last_error = None
        self.queued += queued
        self.refused += refused

    def _submit(self, fn: Callable[[], Any]) -> None:
        future = self._executor.submit(fn)
        with self._lock:
            self._futures = [f for f in self._futures if not f.done()] + [future]

    def wake(self) -> None:
        """Records were written: drain the intake in the worker (returns at once)."""
        with self._lock:
            if self._drain_waiting:
                return
            self._drain_waiting = True
        self._submit(self._drain)

    def load_anonymizer(self) -> None:
        """Build the anonymizer's engines in the worker now (a second or two), not when the first record comes."""
        self._submit(lambda: self._services().anonymizer.load())

    def after_consent(self, record: Any) -> None:
        """Queue the earlier records the participant chose to include with their consent (in the worker)."""
        if record is None:
            return
        self._submit(lambda: self._services().after_consent(record))
        self.wake()

    def flush(self, timeout: float | None = None) -> None:
        """Wait until everything handed to the worker so far is done (call from a thread, not the event loop)."""
        with self._lock:
            pending = list(self._futures)
        wait(pending, timeout=timeout)

    def _close_connection(self) -> None:
        services = getattr(self._local, "services", None)
        if services is not None:
            services.collector.db.close()
            self._local.services = None

    def close(self) -> None:
        """Finish every drain asked for, then release the worker's connection."""
        self._executor.submit(self._close_connection)
        self._executor.shutdown(wait=True)
