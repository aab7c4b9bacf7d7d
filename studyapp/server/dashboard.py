"""The researchers' live dashboard at ``/dashboard``: one read-only page over the live database.

A researcher logs in once with their researcher token through a form; the server answers with a random session
id in a cookie and keeps only its sha256 (in memory: a restart logs everyone out). Every load of the page reads
the database afresh: enrollment and compliance per participant, upload health (rejected events by reason),
withdrawn participants and the report's headline figures (dashboard_data.py), as HTML (dashboard_html.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Annotated
from urllib.parse import parse_qs

from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from studyapp.server import auth, dashboard_data, dashboard_html
from studyapp.server.storage import Storage

SESSION_COOKIE = "studyapp_dashboard"
SESSION_SECONDS = 8 * 3600
MAX_TOKEN_CHARS = 512
# Researcher tokens are 256-bit random: guessing is hopeless anyway; the limit keeps a guesser from hammering.
MAX_FAILED_LOGINS = 10
FAILED_LOGIN_WINDOW_S = 60.0


# -- sessions and failed logins ---------------------------------------------------------------


class Sessions:
    """Dashboard sessions in memory: sha256(session id) -> (the researcher token's hash, expiry)."""

    def __init__(self, lifetime_s: float = SESSION_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self._lifetime = lifetime_s
        self._clock = clock
        self._lock = threading.Lock()
        self._sessions: dict[str, tuple[str, float]] = {}

    def start(self, token_hash: str) -> str:
        session_id = auth.new_token()
        with self._lock:
            now = self._clock()
            self._sessions = {k: v for k, v in self._sessions.items() if v[1] > now}
            self._sessions[auth.hash_secret(session_id)] = (token_hash, now + self._lifetime)
        return session_id

    def token_hash(self, session_id: str | None) -> str | None:
        """The researcher token's hash behind a live session, or None."""
        if not session_id:
            return None
        key = auth.hash_secret(session_id)
        with self._lock:
            found = self._sessions.get(key)
            if found is None or found[1] <= self._clock():
                self._sessions.pop(key, None)
                return None
        return found[0]

    def end(self, session_id: str | None) -> None:
        if session_id:
            with self._lock:
                self._sessions.pop(auth.hash_secret(session_id), None)


class LoginLimiter(auth.FailureThrottle):
    """At most ``max_failures`` wrong tokens per client address within ``window_s`` seconds."""

    def __init__(self, max_failures: int = MAX_FAILED_LOGINS, window_s: float = FAILED_LOGIN_WINDOW_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(max_failures, window_s, clock, what="wrong dashboard logins")


# -- the routes -----------------------------------------------------------------------------------

# CSRF: the only POSTs are login and logout. The session cookie is SameSite=Strict, so a browser never sends it
# with a request another site starts: no other site can log a researcher out or act in their session.
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": ("default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                                "frame-ancestors 'none'; base-uri 'none'"),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


def _html(body: str, status: int = 200, headers: dict[str, str] | None = None) -> HTMLResponse:
    return HTMLResponse(body, status_code=status, headers={**SECURITY_HEADERS, **(headers or {})})


def _home(request: Request) -> str:
    # Behind a proxy that mounts the server under a prefix, links and the cookie follow the prefix.
    return str(request.scope.get("root_path", "")).rstrip("/") + "/dashboard"


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def _form(request: Request) -> dict[str, str]:
    """An HTML form's fields (application/x-www-form-urlencoded; no multipart parser is needed for one field)."""
    body = (await request.body()).decode("utf-8", "replace")
    return {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}


def install(app: FastAPI, storage: Storage) -> None:
    """Add the dashboard's routes (left out of the OpenAPI schema: they are pages, not API)."""
    sessions = Sessions()
    limiter = LoginLimiter()

    def researcher(request: Request) -> str | None:
        token_hash = sessions.token_hash(request.cookies.get(SESSION_COOKIE))
        return storage.researcher_for_hash(token_hash) if token_hash else None

    def login_form(request: Request, message: str = "", status: int = 401,
                   headers: dict[str, str] | None = None) -> HTMLResponse:
        return _html(dashboard_html.login_page(_home(request), message), status, headers)

    @app.get("/dashboard", include_in_schema=False)
    def dashboard(request: Request) -> HTMLResponse:
        name = researcher(request)
        if name is None:
            return login_form(request)
        page = dashboard_html.dashboard_page(dashboard_data.overview(storage), dashboard_data.headline_figures(storage),
                                             name, home=_home(request))
        return _html(page)

    @app.post("/dashboard/login", include_in_schema=False)
    def login(request: Request, form: Annotated[dict[str, str], Depends(_form)]) -> Response:
        client = _client(request)
        wait = limiter.wait_s(client)
        if wait:
            return login_form(request, f"Too many wrong tokens; try again in {wait} seconds.", 429,
                              {"Retry-After": str(wait)})
        token = form.get("token", "").strip()
        name = storage.researcher_for(token) if 0 < len(token) <= MAX_TOKEN_CHARS else None
        if name is None:
            limiter.failed(client)
            return login_form(request, "That is not a researcher token of this study. Use the one that "
                                       "studyapp-server init or researchers add printed.")
        response = RedirectResponse(_home(request), status_code=303)
        response.set_cookie(SESSION_COOKIE, sessions.start(auth.hash_secret(token)), max_age=SESSION_SECONDS,
                            path=_home(request), secure=request.url.scheme == "https", httponly=True,
                            samesite="strict")
        return response

    @app.post("/dashboard/logout", include_in_schema=False)
    def logout(request: Request) -> Response:
        if researcher(request) is None:
            return login_form(request, "You are not logged in.")
        sessions.end(request.cookies.get(SESSION_COOKIE))
        response = RedirectResponse(_home(request), status_code=303)
        response.delete_cookie(SESSION_COOKIE, path=_home(request), secure=request.url.scheme == "https",
                               httponly=True, samesite="strict")
        return response
