"""The researchers' dashboard over real HTTP: login with the researcher token, the page's numbers, logout."""

from __future__ import annotations

import re
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from html import escape
from pathlib import Path
from typing import Any

import httpx
import pytest

from studyapp.analysis.model import Analysis, Figure, NotAvailable, Section
from studyapp.server import dashboard, dashboard_data
from studyapp.server.export import RECORD_TYPES, column_names
from tests.server import live as f
from tests.server.known_study import BAD_ROLE, tables, upload_known_study
from tests.server.live import LiveServer


def client(live: LiveServer) -> httpx.Client:
    # A generous timeout: the first dashboard page imports pandas, which takes seconds on a loaded machine.
    return httpx.Client(base_url=live.base_url, follow_redirects=False, timeout=120)


def log_in(http: httpx.Client, token: str) -> httpx.Response:
    return http.post("/dashboard/login", data={"token": token})


@contextmanager
def logged_in(live: LiveServer) -> Iterator[httpx.Client]:
    with client(live) as http:
        assert log_in(http, live.researcher_token).status_code == 303
        yield http


def test_without_a_session_the_dashboard_is_a_login_form(live: LiveServer) -> None:
    p_id, _ = live.enroll()
    for cookies in ({}, {dashboard.SESSION_COOKIE: "made-up"}, {dashboard.SESSION_COOKIE: live.researcher_token}):
        response = httpx.get(f"{live.base_url}/dashboard", cookies=cookies)
        assert response.status_code == 401
        assert response.headers["content-type"].startswith("text/html")
        assert '<form class="login" method="post" action="/dashboard/login">' in response.text
        assert 'name="token" type="password"' in response.text
        assert p_id not in response.text


def test_a_wrong_token_gets_the_form_again_with_a_message_and_no_cookie(live: LiveServer) -> None:
    _, p_token = live.enroll()
    with client(live) as http:
        for wrong in ("wrong-token-value", p_token, "", "x" * 5000):
            response = log_in(http, wrong)
            assert response.status_code == 401
            assert "set-cookie" not in response.headers
            assert "That is not a researcher token of this study" in response.text
            assert 'name="token"' in response.text
            assert "Traceback" not in response.text
            if wrong:
                assert wrong not in response.text
        assert not http.cookies
        # A body that is no form at all is a wrong token too, not an error.
        response = http.post("/dashboard/login", content=b"\xff\xfe{", headers={"Content-Type": "application/json"})
        assert response.status_code == 401


def test_the_right_token_buys_an_http_only_strict_session_cookie(live: LiveServer) -> None:
    with client(live) as http:
        response = log_in(http, live.researcher_token)
        assert response.status_code == 303
        assert response.headers["location"] == "/dashboard"
        cookie = response.headers["set-cookie"]
        assert cookie.startswith(f"{dashboard.SESSION_COOKIE}=")
        attributes = {a.strip().split("=")[0].lower(): a.strip() for a in cookie.split(";")[1:]}
        assert "httponly" in attributes
        assert attributes["samesite"].lower() == "samesite=strict"
        assert attributes["path"] == "Path=/dashboard"
        assert "secure" not in attributes  # plain http here; https requests get Secure
        assert live.researcher_token not in cookie
        session = http.cookies[dashboard.SESSION_COOKIE]
        # The server keeps only a hash of the session id, never the id or the token.
        dump = live.dump()
        assert session not in dump

        page = http.get("/dashboard")
        assert page.status_code == 200
        assert "Enrollment and compliance" in page.text
        assert page.headers["cache-control"] == "no-store"
        assert "default-src 'none'" in page.headers["content-security-policy"]
        # The token is never in a URL or in the page.
        assert live.researcher_token not in page.text
        for url in [str(page.url), response.headers["location"],
                    *re.findall(r'(?:href|action|src)="([^"]*)"', page.text)]:
            assert live.researcher_token not in url
        assert not re.search(r"<(script|img|link|iframe)\b", page.text)  # nothing loaded from elsewhere

    # Behind a TLS proxy on the same machine (uvicorn trusts 127.0.0.1's X-Forwarded-Proto) the cookie is Secure.
    with client(live) as http:
        response = http.post("/dashboard/login", data={"token": live.researcher_token},
                             headers={"X-Forwarded-Proto": "https"})
        assert response.status_code == 303
        assert "secure" in response.headers["set-cookie"].lower().replace(" ", "").split(";")


def test_logout_clears_the_cookie_and_ends_the_session(live: LiveServer) -> None:
    with logged_in(live) as http:
        session = http.cookies[dashboard.SESSION_COOKIE]
        response = http.post("/dashboard/logout")
        assert response.status_code == 303
        assert response.headers["location"] == "/dashboard"
        assert re.search(r"Max-Age=0|expires=Thu, 01 Jan 1970", response.headers["set-cookie"], re.I)
        assert dashboard.SESSION_COOKIE not in http.cookies
        assert http.get("/dashboard").status_code == 401
    # The old session id, kept by someone, opens nothing either: the server forgot it.
    stale = httpx.get(f"{live.base_url}/dashboard", cookies={dashboard.SESSION_COOKIE: session})
    assert stale.status_code == 401


def test_posts_without_the_session_cookie_are_refused(live: LiveServer) -> None:
    with client(live) as http:
        response = http.post("/dashboard/logout")
        assert response.status_code == 401
        assert "You are not logged in" in response.text
        assert "set-cookie" not in response.headers
        http.cookies.set(dashboard.SESSION_COOKIE, "made-up")
        assert http.post("/dashboard/logout").status_code == 401
        assert http.post("/dashboard").status_code == 405
    # A participant token is no way in, as a bearer header either.
    _, p_token = live.enroll()
    response = httpx.get(f"{live.base_url}/dashboard", headers={"Authorization": f"Bearer {p_token}"})
    assert response.status_code == 401
    response = httpx.get(f"{live.base_url}/dashboard", headers=live.researcher())
    assert response.status_code == 401  # the page wants the browser's session, not a header


def test_the_page_shows_compliance_upload_health_and_withdrawals(live: LiveServer) -> None:
    known = upload_known_study(live)
    with logged_in(live) as http:
        page = http.get("/dashboard").text
    found = tables(page)

    rows = {r["@data-participant"]: r for r in found["participants"]}
    assert set(rows) == {known.active, known.stopped}  # the withdrawn participant is not a participant row
    active, stopped = rows[known.active], rows[known.stopped]
    assert (active["status"], stopped["status"]) == ("active", "stopped")
    assert (active["study_week"], stopped["study_week"]) == ("1", "2")
    assert (active["rated_this_week"], active["rated"]) == ("2", "2")
    assert (stopped["rated_this_week"], stopped["rated"]) == ("0", "1")
    assert (active["events"], stopped["events"]) == ("5", "3")
    assert (active["rejected"], stopped["rejected"]) == ("4", "0")
    assert int(active["days_active"]) == known.days_active[known.active]
    assert int(stopped["days_active"]) == known.days_active[known.stopped]
    assert active["enrolled_at"].endswith(" UTC") and active["last_upload_at"].endswith(" UTC")
    assert dashboard_data.STOPPED_RULE in page

    # Upload health: the withdrawn participant's rejection went with their data.
    assert re.search(r'<b id="rejected-total">4</b> events rejected, from <b id="rejected-participants">1</b>', page)
    reasons = [(r["reason"], r["kind"], r["events"], r["participants"]) for r in found["rejections"]]
    assert reasons == [(known.role_reason, "message", "3", "1"), (known.unknown_kind_reason, "(unknown)", "1", "1")]
    assert BAD_ROLE in known.role_reason
    assert BAD_ROLE not in page and "&lt;i&gt;robot&lt;/i&gt;" in page  # shown as text, never as markup

    assert [r["participant_id"] for r in found["withdrawals"]] == [known.withdrawn]
    assert page.count(known.withdrawn) == 1
    assert live.sql("SELECT count(*) FROM rejections WHERE participant_id = ?", [known.withdrawn]) == [(0,)]
    assert re.search(r'<b id="enrolled-count">2</b>taking part', page)
    assert re.search(r'<b id="stopped-count">1</b>stopped', page)
    assert re.search(r'<b id="withdrawn-count">1</b>withdrawn', page)


def test_rejections_add_up_across_uploads(live: LiveServer) -> None:
    _, token = live.enroll()
    for _ in range(2):
        live.upload(token, [f.message()])  # before any consent: category not consented
    [row] = live.storage.rejections()
    assert row["events"] == 2 and row["kind"] == "message" and "not consented" in row["reason"]
    assert row["first_at"] <= row["last_at"]


def test_headline_figures_without_the_analysis_modules_say_so(live: LiveServer,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # None in sys.modules makes the import fail as if the module were not installed (it runs in this process).
    monkeypatch.setitem(sys.modules, "studyapp.analysis.measures", None)
    with logged_in(live) as http:
        page = http.get("/dashboard")
    assert page.status_code == 200
    assert escape(dashboard_data.NEEDS_ANALYSIS) in page.text


def _fake_analysis(monkeypatch: pytest.MonkeyPatch, analyze: Any) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    load = types.ModuleType("studyapp.analysis.load")
    load.from_frames = lambda frames: seen.setdefault("frames", frames)  # type: ignore[attr-defined]
    measures = types.ModuleType("studyapp.analysis.measures")
    measures.HEADLINE_KEYS = ("preference", "acceptance", "gone")  # type: ignore[attr-defined]
    measures.analyze = analyze  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "studyapp.analysis.load", load)
    monkeypatch.setitem(sys.modules, "studyapp.analysis.measures", measures)
    return seen


def test_headline_figures_are_computed_from_the_live_database(live: LiveServer,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("pandas")

    def analyze(frames: dict[str, Any]) -> Analysis:
        rated = frames["comparisons"]["rating"].dropna()
        return Analysis("fake", [Section("stage3", "Stage 3", [
            Figure("preference", "Mean rating", float(rated.mean()), len(rated), 2, ci=(2.5, 4.25)),
            NotAvailable("acceptance", "Acceptance", "attribute_labels.label"),
        ])])

    seen = _fake_analysis(monkeypatch, analyze)
    upload_known_study(live)
    with logged_in(live) as http:
        page = http.get("/dashboard").text
    frames = seen["frames"]
    assert list(frames) == [rt.name for rt in RECORD_TYPES]
    assert all(list(frames[rt.name].columns) == column_names(rt) for rt in RECORD_TYPES)
    assert len(frames["participants"]) == 3  # two taking part and the tombstone, as in an export
    rows = {r["@data-key"]: r for r in tables(page)["headline-figures"]}
    assert (rows["preference"]["label"], rows["preference"]["value"]) == ("Mean rating", "3.67")  # (5 + 2 + 4) / 3
    assert rows["preference"]["ci"] == "2.50 to 4.25"
    assert rows["preference"]["basis"] == "3 items, 2 participants"
    assert rows["acceptance"]["value"] == "not available in this export (needs attribute_labels.label)"
    assert rows["gone"]["value"] == "not in this analysis"


def test_a_failing_analysis_leaves_the_rest_of_the_page(live: LiveServer, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("pandas")

    def analyze(frames: dict[str, Any]) -> Analysis:
        raise ValueError("boom")

    _fake_analysis(monkeypatch, analyze)
    with logged_in(live) as http:
        page = http.get("/dashboard")
    assert page.status_code == 200
    assert escape(dashboard_data.ANALYSIS_FAILED) in page.text
    assert "boom" not in page.text and "Traceback" not in page.text


def test_the_dashboard_module_imports_without_pandas() -> None:
    import subprocess

    # With pandas blocked, any import of it on the way raises ImportError.
    code = "import sys; sys.modules['pandas'] = None; import studyapp.server.app, studyapp.server.dashboard_data"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_wrong_tokens_are_limited_per_client() -> None:
    now = [0.0]
    limiter = dashboard.LoginLimiter(max_failures=3, window_s=60, clock=lambda: now[0])
    for _ in range(3):
        assert limiter.wait_s("10.0.0.1") == 0
        limiter.failed("10.0.0.1")
    assert limiter.wait_s("10.0.0.1") == 60
    assert limiter.wait_s("10.0.0.2") == 0  # another client is not held up
    now[0] = 45.0
    assert limiter.wait_s("10.0.0.1") == 15
    now[0] = 60.0
    assert limiter.wait_s("10.0.0.1") == 0


def test_a_session_ends_after_its_lifetime() -> None:
    now = [0.0]
    sessions = dashboard.Sessions(lifetime_s=100, clock=lambda: now[0])
    session = sessions.start("hash-of-token")
    assert sessions.token_hash(session) == "hash-of-token"
    assert sessions.token_hash("other") is None and sessions.token_hash(None) is None
    now[0] = 100.0
    assert sessions.token_hash(session) is None


def test_too_many_wrong_tokens_get_429_with_retry_after(server_db: Path | str, monkeypatch: pytest.MonkeyPatch) -> None:
    # The limiter's clock stands still, so the test does not depend on how fast the requests go.
    limiter = dashboard.LoginLimiter
    monkeypatch.setattr(dashboard, "LoginLimiter", lambda: limiter(clock=lambda: 0.0))
    storage, token = f.new_storage(server_db)
    with f.serve(storage) as base_url, httpx.Client(base_url=base_url) as http:
        for _ in range(dashboard.MAX_FAILED_LOGINS):
            assert log_in(http, "wrong").status_code == 401
        response = log_in(http, token)
        assert response.status_code == 429
        assert response.headers["retry-after"] == str(int(dashboard.FAILED_LOGIN_WINDOW_S))
        assert "Too many wrong tokens" in response.text
        assert "set-cookie" not in response.headers
    storage.close()


def test_the_real_analysis_gives_the_headline_figures_of_the_known_study(live: LiveServer) -> None:
    pytest.importorskip("statsmodels")
    from studyapp.analysis.measures import HEADLINE_KEYS

    upload_known_study(live)
    with logged_in(live) as http:
        page = http.get("/dashboard").text
    rows = {r["@data-key"]: r for r in tables(page)["headline-figures"]}
    assert list(rows) == list(HEADLINE_KEYS)
    # Two participants taking part (the withdrawn one is left out); ratings 5, 2 and 4 (one comparison skipped).
    assert rows["participants"]["value"] == "2"
    assert rows["mean_rating"]["value"] == "3.67" and rows["mean_rating"]["basis"].startswith("3 items, 2 participants")
    assert rows["no_better"]["value"] == "33.3%"  # only the 2 is 3 or below: a share, as the report shows it
    # The known study's comparisons come from an app before contract 2: the selection rate needs its columns.
    assert rows["selection_rate"]["value"] == "not available in this export (needs comparisons.memory_size)"


def test_headline_figures_are_computed_again_only_when_the_data_changed(live: LiveServer,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("pandas")
    runs: list[int] = []

    def analyze(frames: dict[str, Any]) -> Analysis:
        runs.append(len(frames["messages"]))
        return Analysis("fake", [Section("s", "S", [Figure("preference", "Messages", float(runs[-1]), 0, 0)])])

    _fake_analysis(monkeypatch, analyze)
    sys.modules["studyapp.analysis.load"].from_frames = lambda frames: frames  # type: ignore[attr-defined]
    _, token = live.enroll()
    assert live.upload(token, [f.consent(), f.message()]).json()["results"][1]["status"] == "accepted"
    with logged_in(live) as http:
        http.get("/dashboard")
        page = http.get("/dashboard").text  # nothing new: the figures of the first load
        assert runs == [1]
        assert {r["@data-key"]: r for r in tables(page)["headline-figures"]}["preference"]["value"] == "1"
        assert live.upload(token, [f.message()]).json()["results"][0]["status"] == "accepted"
        page = http.get("/dashboard").text
    assert runs == [1, 2]
    assert {r["@data-key"]: r for r in tables(page)["headline-figures"]}["preference"]["value"] == "2"
