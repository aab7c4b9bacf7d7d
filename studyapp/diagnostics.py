"""``studyapp doctor``: everything a participant or researcher needs to see when something is off."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from studyapp.context import AppContext
from studyapp.llm.base import LLMError
from studyapp.llm.factory import make_model
from studyapp.private_files import loose_paths, supported
from studyapp.secrets import keyring_status
from studyapp.store.conversations import ConversationStore
from studyapp.store.db import UnusableDatabase, pending_migrations, schema_version

PING_MESSAGES = [{"role": "user", "content": "Say hello in one word."}]


async def _ping(app_ctx: AppContext) -> str:
    from studyapp.llm.base import ChatParams

    model = make_model(app_ctx.model_settings())
    try:
        parts: list[str] = []
        async for delta in model.stream(PING_MESSAGES, ChatParams(max_tokens=8, temperature=0.0)):
            parts.append(delta)
        return "".join(parts).strip()
    finally:
        await model.aclose()


def run_doctor(app_ctx: AppContext, *, check_model: bool, echo: Callable[[str], None]) -> bool:
    ok = True
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
    echo(f"model:           {settings.describe()}")
    echo(f"parameters:      {settings.params.to_dict()}")
    status = keyring_status()
    echo(f"keyring:         {status.backend}" + ("" if status.available else " (unavailable)"))
    if not status.available:
        echo(f"                 {status.hint}")
    for line in _extra_sections(app_ctx):
        echo(line)
    if check_model:
        try:
            answer = asyncio.run(_ping(app_ctx))
            echo(f"model answers:   yes ({answer[:60]!r})")
        except LLMError as exc:
            ok = False
            echo(f"model answers:   no: {exc}")
    return ok


def _permission_lines(app_ctx: AppContext) -> list[str]:
    """Whether other users of this computer can read the participant's files: each loose path, its mode, the goal."""
    if not supported():
        return ["permissions:     not checked (Windows)"]
    loose = loose_paths(app_ctx.database_path)
    if not loose:
        return ["permissions:     private (data dir 0700, database files 0600)"]
    return ["permissions:     readable by other users: " + f"\n{' ' * 17}".join(p.describe() for p in loose)]


def _extra_sections(app_ctx: AppContext) -> list[str]:
    """The study, what may be collected, and sync: each reported, never raised (a diagnostics tool)."""
    from studyapp.privacy.services import PrivacyServices
    from studyapp.study.current import current_study
    from studyapp.sync.client import sync_status

    lines: list[str] = []
    try:
        study = current_study(app_ctx.db)
        lines.append(f"study:           {study.status_line()}")
        if study.problem:
            lines.append(f"                 the enrolled protocol is unusable: {study.problem}")
        if study.enrolled and study.usable:
            collector = PrivacyServices.create(app_ctx.db, study.protocol).collector
            lines.append(f"collection:      {collector.status().message}")
            lines.append(f"anonymizer:      {collector.anonymizer.status_message}")
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
