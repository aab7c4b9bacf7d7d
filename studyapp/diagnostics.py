"""``studyapp doctor``: everything a participant or researcher needs to see when something is off.

It answers in about a second: what only waits (the model's answer, the keyring, which may be a D-Bus round trip)
runs in worker threads while the database is read, the model gets a short timeout, and nothing heavy is loaded.
The anonymizer (Presidio and spaCy, seconds to load) is only checked to be installed, and the embedded model only
to be present; ``--full`` loads the anonymizer, runs the embedded model and gives a server model its configured
timeout. The report's lines come in the same order either way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace

from studyapp.context import AppContext
from studyapp.llm.base import LLMError
from studyapp.llm.config import ModelSettings
from studyapp.llm.factory import make_model
from studyapp.private_files import loose_paths, supported
from studyapp.secrets import SecretLocation, api_key_location, keyring_status, participant_token_location
from studyapp.store.conversations import ConversationStore
from studyapp.store.db import UnusableDatabase, pending_migrations, schema_version

PING_MESSAGES = [{"role": "user", "content": "Say hello in one word."}]
# How long a server model may take to answer doctor's ping without --full: enough for a server that is up, short
# enough that a dead address does not hold the report up (--full waits the configured timeout).
PING_TIMEOUT_S = 5.0
FULL_HINT = "`studyapp doctor --full` checks it"


async def _ping(settings: ModelSettings) -> str:
    from studyapp.llm.base import ChatParams

    model = make_model(settings)
    try:
        parts: list[str] = []
        async for delta in model.stream(PING_MESSAGES, ChatParams(max_tokens=8, temperature=0.0)):
            parts.append(delta)
        return "".join(parts).strip()
    finally:
        await model.aclose()


def _model_answers(settings: ModelSettings, full: bool) -> tuple[bool, str]:
    """(ok, the "model answers" line's text). Runs in a worker thread: no database here."""
    if settings.is_local and not full:
        from studyapp.llm.local import unavailable_reason

        problem = unavailable_reason()  # loads nothing
        if problem is not None:
            return False, f"no: {problem}"
        return True, f"installed (not loaded; {FULL_HINT.replace('checks it', 'runs it')})"
    if not full:
        settings = replace(settings, timeout_s=min(settings.timeout_s, PING_TIMEOUT_S))
    try:
        answer = asyncio.run(_ping(settings))
    except LLMError as exc:
        return False, f"no: {exc}"
    return True, f"yes ({answer[:60]!r})"


def _keyring_lines(study_id: str | None, key_profile: str | None) -> list[str]:
    """The keyring backend and where the secrets are kept. Runs in a worker thread: no database here."""
    status = keyring_status()
    lines = [f"keyring:         {status.backend}" + ("" if status.available else " (unavailable)")]
    if not status.available:
        lines.append(f"                 {status.hint}")
    return lines + _secret_lines(study_id, key_profile)


def run_doctor(app_ctx: AppContext, *, check_model: bool, echo: Callable[[str], None], full: bool = False) -> bool:
    echo(f"data dir:        {app_ctx.data_dir}")
    echo(f"database:        {app_ctx.database_path}")
    # Before the database opens: opening tightens what is loose (and says so once).
    for line in _permission_lines(app_ctx):
        echo(line)
    try:
        db = app_ctx.db
        echo(f"schema version:  {schema_version(db)}")
        pending = pending_migrations(db)
        if pending:
            echo(f"pending:         {', '.join(pending)}")
        n_conv, n_msg = ConversationStore(db).totals()
        echo(f"history:         {n_conv} conversations, {n_msg} messages")
    except UnusableDatabase as exc:
        echo(f"database error:  {exc}")
        return False
    settings = app_ctx.model_settings()
    from studyapp.store.studies import StudyStore

    study = StudyStore(db).current()
    # The waiting starts now and overlaps the database work below (one connection per thread: the workers get
    # plain values, never the database).
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="doctor") as pool:
        ping: Future[tuple[bool, str]] | None = pool.submit(_model_answers, settings, full) if check_model else None
        keyring_lines = pool.submit(_keyring_lines, study.id if study is not None and study.server_url else None,
                                    None if settings.is_local else settings.key_profile)
        echo(f"model:           {settings.describe()}")
        echo(f"parameters:      {settings.params.to_dict()}")
        extra = _extra_sections(app_ctx, full)
        for line in keyring_lines.result():
            echo(line)
        for line in extra:
            echo(line)
        if ping is None:
            return True
        ok, answer = ping.result()
    echo(f"model answers:   {answer}")
    return ok


def _where(location: SecretLocation, chosen_at: str) -> str:
    if location.where == "file":
        where = f"stored in a file (you chose this {chosen_at}): {location.path}"
        return f"{where}\n{' ' * 19}NOT USABLE: {location.problem}" if location.problem else where
    return {"keyring": "in the keyring", "environment": "from STUDYAPP_API_KEY (this run only)",
            "nowhere": "none stored"}[location.where]


def _secret_lines(study_id: str | None, key_profile: str | None) -> list[str]:
    """Where the participant token and the API key are kept (never the secrets themselves)."""
    lines: list[str] = []
    if study_id is not None:
        location = participant_token_location(study_id)
        text = _where(location, "at enrollment")
        if location.where == "nowhere":
            text += ": sync cannot work; enroll again with a new code from the research team"
        lines.append(f"participant token: {text}")
    if key_profile is not None:
        lines.append(f"API key:         {_where(api_key_location(key_profile), 'in the settings')}")
    return lines


def _permission_lines(app_ctx: AppContext) -> list[str]:
    """Whether other users of this computer can read the participant's files: each loose path, its mode, the goal."""
    if not supported():
        return ["permissions:     not checked (Windows)"]
    loose = loose_paths(app_ctx.database_path)
    if not loose:
        return ["permissions:     private (data dir 0700, database files 0600)"]
    return ["permissions:     readable by other users: " + f"\n{' ' * 17}".join(p.describe() for p in loose)]


def _extra_sections(app_ctx: AppContext, full: bool) -> list[str]:
    """The study, what may be collected, and sync: each reported, never raised (a diagnostics tool)."""
    from studyapp.study.current import current_study
    from studyapp.sync.status import sync_status

    lines: list[str] = []
    try:
        study = current_study(app_ctx.db)
        lines.append(f"study:           {study.status_line()}")
        if study.problem:
            lines.append(f"                 the enrolled protocol is unusable: {study.problem}")
        if study.enrolled and study.usable:
            from studyapp.privacy.anonymize import installed_problem
            from studyapp.privacy.services import PrivacyServices

            collector = PrivacyServices.create(app_ctx.db, study.protocol).collector
            # Without --full nothing loads Presidio or spaCy: whether NER works is --full's to say.
            lines.append(f"collection:      {collector.status(check_ner=full).message}")
            problem = installed_problem()
            if full or problem is not None:
                lines.append(f"anonymizer:      {problem or collector.anonymizer.status_message}")
            else:
                lines.append(f"anonymizer:      installed (not loaded; {FULL_HINT})")
    except Exception as exc:
        lines.append(f"study:           unavailable ({exc})")
    try:
        lines += _route_lines(app_ctx)
    except Exception as exc:
        lines.append(f"role models:     unavailable ({exc})")
    try:
        from studyapp.study.roles import role_problems

        problems = role_problems(app_ctx.db)
        lines.append("study models:    " + ("working (no failure since the last success)" if not problems else
                                           f"\n{' ' * 17}".join(p.describe() for p in problems)))
    except Exception as exc:
        lines.append(f"study models:    unavailable ({exc})")
    try:
        lines.append(f"sync:            {sync_status(app_ctx.db)}")
    except Exception as exc:
        lines.append(f"sync:            unavailable ({exc})")
    return lines


def _route_lines(app_ctx: AppContext) -> list[str]:
    """Which model each of the enrolled study's roles uses and how it is reached; for the study's server, whether
    this install holds the participant token that server asks for."""
    from studyapp.secrets import get_participant_token
    from studyapp.study.current import current_study
    from studyapp.study.models import study_routes, study_server, uses_study_server

    study = current_study(app_ctx.db)
    routes = study_routes(study)
    if not routes:
        return []
    lines = ["role models:     " + f"\n{' ' * 17}".join(routes)]
    if uses_study_server(study):
        if study_server(study) is None:
            lines.append(" " * 17 + "the study's server is unknown: its models come once you enroll with "
                         "`studyapp enroll URL CODE`")
        elif not get_participant_token(study.protocol.id):
            lines.append(" " * 17 + "no participant token in the keyring: the study's models are available once "
                         "you are enrolled (`studyapp enroll URL CODE` with the code from the research team)")
    return lines
