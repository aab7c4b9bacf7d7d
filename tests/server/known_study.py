"""A known set of uploads for the dashboard's tests, and a reader for the tables of its page.

Three participants: ``active`` uploads today and has events rejected for a known reason; ``stopped`` enrolled
10 days ago and last uploaded 4 days ago; ``withdrawn`` uploaded (one event rejected too) and then withdrew.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

import httpx

from tests.server import live as f
from tests.server.live import LiveServer

# Markup in a rejected value: the page must show it as text.
BAD_ROLE = "<i>robot</i>"


@dataclass(frozen=True)
class KnownStudy:
    active: str
    stopped: str
    withdrawn: str
    role_reason: str  # the reason the server gave for the active participant's three bad messages
    unknown_kind_reason: str
    days_active: dict[str, int]  # the participant-side days of their events (the consent factory has its own)


def _backdate(live: LiveServer, participant_id: str, enrolled_at: datetime, last_upload_at: datetime) -> None:
    with live.storage.write() as conn:
        conn.execute("UPDATE participants SET enrolled_at = ?, last_upload_at = ? WHERE id = ?",
                     [enrolled_at.isoformat(), last_upload_at.isoformat(), participant_id])


def upload_known_study(live: LiveServer) -> KnownStudy:
    now = datetime.now(UTC)
    consent_day = f.consent()["payload"]["created_at"][:10]
    active, a_token = live.enroll()
    today = live.storage.compliance()[0]["enrolled_at"][:10]
    results = live.upload(a_token, [
        f.consent(), f.message(day=today), f.comparison(rating=5, day=today), f.comparison(rating=2, day=today),
        f.comparison(rating=None, day=today),
        *(f.message(role=BAD_ROLE) for _ in range(3)), f.event("nope", {}),
    ]).json()["results"]
    assert [r["status"] for r in results] == ["accepted"] * 5 + ["rejected"] * 4, results

    stopped, s_token = live.enroll()
    enrolled = now - timedelta(days=10)
    week_one = (enrolled + timedelta(days=1)).date().isoformat()
    assert live.upload(s_token, [f.consent(), f.message(day=week_one), f.comparison(rating=4, day=week_one)]
                       ).json()["accepted"] == 3
    _backdate(live, stopped, enrolled, now - timedelta(days=4))

    withdrawn, w_token = live.enroll()
    assert live.upload(w_token, [f.consent(), f.message(), f.message(role=BAD_ROLE)]).json()["rejected"] == 1
    assert httpx.post(f"{live.base_url}/v1/withdraw", headers={"Authorization": f"Bearer {w_token}"}).is_success
    return KnownStudy(active, stopped, withdrawn, role_reason=results[5]["reason"],
                      unknown_kind_reason=results[8]["reason"],
                      days_active={active: len({consent_day, today}), stopped: len({consent_day, week_one})})


class _Tables(HTMLParser):
    """Rows of every <table id=...> as {data-col: text}, with the row's attributes under '@'."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[dict[str, str]]] = {}
        self._table: str | None = None
        self._row: dict[str, str] | None = None
        self._col: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "table" and "id" in a:
            self._table = a["id"]
            self.tables[self._table] = []
        elif tag == "tr" and self._table and "data-col" not in a:
            self._row = {"@" + k: v for k, v in a.items()}
        elif tag == "td" and self._row is not None:
            self._col = a.get("data-col", "")
            self._row[self._col] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._col = None
        elif tag == "tr" and self._row is not None and self._table:
            if any(not k.startswith("@") for k in self._row):
                self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._row is not None and self._col is not None:
            self._row[self._col] += data


def tables(html: str) -> dict[str, list[dict[str, str]]]:
    parser = _Tables()
    parser.feed(html)
    return parser.tables
