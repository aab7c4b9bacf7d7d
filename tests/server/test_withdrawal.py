"""Withdrawal leaves nothing of the participant on the server but the tombstone (privacy invariant 5)."""

from __future__ import annotations

import httpx

from tests.server import live as f
from tests.server.live import LiveServer


def rows_mentioning(live: LiveServer, needle: str) -> dict[str, int]:
    """Per table, how many rows hold ``needle`` in any column (checked table by table, column by column)."""
    found: dict[str, int] = {}
    conn = live.storage.conn
    for table in live.storage.table_names():
        cols = [r[1] for r in conn.execute(f"PRAGMA table_info([{table}])")]
        where = " OR ".join(f"instr(CAST([{c}] AS TEXT), ?) > 0" for c in cols)
        n = conn.execute(f"SELECT count(*) FROM [{table}] WHERE {where}", [needle] * len(cols)).fetchone()[0]
        if n:
            found[table] = n
    return found


def table_counts(live: LiveServer) -> dict[str, int]:
    return {t: live.storage.conn.execute(f"SELECT count(*) FROM [{t}]").fetchone()[0]
            for t in live.storage.table_names()}


def test_withdrawal_deletes_every_row_and_keeps_a_tombstone(live: LiveServer) -> None:
    a_id, a_token = live.enroll()
    b_id, b_token = live.enroll()
    live.upload(a_token, [*f.one_of_each(), f.message(content="A-only-marker")])
    b_events = [*f.one_of_each(), f.message(content="B-only-marker")]
    live.upload(b_token, b_events)
    b_before = rows_mentioning(live, b_id)
    assert b_before["participants"] == 1 and b_before["events"] == len(b_events)
    counts_before = table_counts(live)

    response = httpx.post(f"{live.base_url}/v1/withdraw", headers={"Authorization": f"Bearer {a_token}"})
    assert response.status_code == 200
    assert response.json()["status"] == "confirmed"

    # Table by table: the participant id remains only in the tombstone; A's text is gone everywhere.
    assert rows_mentioning(live, a_id) == {"tombstones": 1}
    assert rows_mentioning(live, "A-only-marker") == {}
    # B is untouched, row for row.
    assert rows_mentioning(live, b_id) == b_before
    assert rows_mentioning(live, "B-only-marker") == {"events": 1}
    counts_after = table_counts(live)
    assert counts_after["events"] == counts_before["events"] - len(f.one_of_each()) - 1
    assert counts_after["participants"] == counts_before["participants"] - 1
    assert counts_after["tombstones"] == counts_before["tombstones"] + 1


def test_withdrawal_is_idempotent_and_the_token_writes_nothing_more(live: LiveServer) -> None:
    p_id, token = live.enroll()
    live.upload(token, f.one_of_each())
    first = httpx.post(f"{live.base_url}/v1/withdraw", headers={"Authorization": f"Bearer {token}"}).json()
    second = httpx.post(f"{live.base_url}/v1/withdraw", headers={"Authorization": f"Bearer {token}"}).json()
    assert first == second
    assert first["participant_id"] == p_id
    response = live.upload(token, [f.consent()])
    assert response.status_code == 410
    assert "withdrawn" in response.json()["detail"]
    assert live.storage.count_events() == 0
