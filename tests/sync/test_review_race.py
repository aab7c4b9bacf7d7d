"""Re-scrubbing, withholding or approving while an upload is in flight: the server receives exactly what the
outbox held when the participant last saw it, and the participant is never told of a change that did not
happen. The interleaving is injected at the moment the batch goes out; the server is real."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
from sqlite_utils import Database

from studyapp.privacy.anonymize import Anonymizer
from studyapp.privacy.review import ReviewService
from studyapp.store.db import open_database
from studyapp.store.studies import StudyStore
from studyapp.study.protocol import protocol_from_dict
from studyapp.sync.client import run_sync
from tests.server import live as f
from tests.server.live import LiveServer
from tests.sync.helpers import enroll_and_consent, queue


class DuringUpload(httpx.AsyncBaseTransport):
    """Runs ``action`` once, when the batch holding ``marker`` is on its way to the server."""

    def __init__(self, marker: str, action: Callable[[], None]) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.marker, self.action, self.ran = marker, action, False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not self.ran and self.marker.encode() in request.content:
            self.ran = True
            self.action()
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def review_on_own_connection(db_path: Path) -> tuple[ReviewService, Database]:
    """The review screen's service, on its own connection as in the app's worker."""
    db = open_database(db_path)
    study = StudyStore(db).current()
    assert study is not None
    return ReviewService(db, protocol_from_dict(study.protocol), Anonymizer(db)), db


def stored_contents(live: LiveServer) -> list[str]:
    return [p["content"] for _, p in live.storage.records("message")]


async def test_a_rescrub_during_an_upload_changes_nothing_in_flight_and_says_so(
        live: LiveServer, client_db: Database, tmp_path: Path) -> None:
    await enroll_and_consent(client_db, live)
    [in_flight] = queue(client_db, f.STUDY_ID, [f.message("Lunch at Brightwave today")])
    review, review_db = review_on_own_connection(tmp_path / "client" / "studyapp.db")
    outcome: dict[str, int] = {}

    def rescrub() -> None:
        outcome["changed"] = review.add_term("Brightwave")
        outcome["in_flight"] = review.in_flight()

    await run_sync(client_db, transport=DuringUpload("Brightwave", rescrub))
    # The item was already on its way: the re-scrub did not pretend to change it.
    assert outcome == {"changed": 0, "in_flight": 1}
    assert stored_contents(live) == ["Lunch at Brightwave today"]

    # Once nothing is in flight, a new term applies to what waits, and that is what the server gets.
    queue(client_db, f.STUDY_ID, [f.message("Dinner at Brightwave")])
    assert review.rescrub() == 1
    await run_sync(client_db)
    assert sorted(stored_contents(live)) == ["Dinner at <TERM_1>", "Lunch at Brightwave today"]
    assert in_flight
    review_db.close()


async def test_withholding_during_an_upload_never_claims_to_withhold_what_is_sent(
        live: LiveServer, client_db: Database, tmp_path: Path) -> None:
    await enroll_and_consent(client_db, live)
    [event_id] = queue(client_db, f.STUDY_ID, [f.message("Please keep this one")])
    review, review_db = review_on_own_connection(tmp_path / "client" / "studyapp.db")
    withheld: list[int] = []
    await run_sync(client_db, transport=DuringUpload("keep this one",
                                                     lambda: withheld.append(review.withhold([event_id]))))
    assert withheld == [0]
    assert stored_contents(live) == ["Please keep this one"]
    review_db.close()
