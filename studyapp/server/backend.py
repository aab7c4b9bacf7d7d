"""Choosing the server's storage backend from ``--db``: a ``postgresql://`` URL is a PostgreSQL database, anything
else the path of a SQLite file."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, unquote, urlsplit

from studyapp.server.ingest import StorageError
from studyapp.server.storage import Storage

if TYPE_CHECKING:
    from studyapp.server.pg_storage import PgStorage

POSTGRES_SCHEMES = ("postgresql://", "postgres://")
# The database of `studyapp-server` (--db); `serve --workers N` hands it and the options to the workers this way.
ENV_DB = "STUDYAPP_SERVER_DB"
ENV_MAX_BODY_BYTES = "STUDYAPP_SERVER_MAX_BODY_BYTES"
ENV_GATEWAY_READ_TIMEOUT = "STUDYAPP_SERVER_GATEWAY_READ_TIMEOUT"


def is_postgres_url(url_or_path: str | Path) -> bool:
    return isinstance(url_or_path, str) and url_or_path.startswith(POSTGRES_SCHEMES)


def shown(url: str) -> str:
    """The URL without its password, for messages and logs."""
    from studyapp.server.pg_storage import shown as without_password

    return without_password(url)


def hide_password(text: str, url: str) -> str:
    """``text`` (a driver's message) with the password of ``url`` masked, wherever it appears."""
    parts = urlsplit(url)
    secrets = [parts.password, *parse_qs(parts.query).get("password", [])]
    for secret in filter(None, secrets):
        for form in {secret, unquote(secret)}:
            text = text.replace(form, "***")
    return text


def open_storage(url_or_path: str | Path, *, migrate: bool = True) -> Storage | PgStorage:
    """The storage behind ``url_or_path``, migrated unless ``migrate`` is False."""
    if is_postgres_url(url_or_path):
        try:
            # Imported here: the SQLite backend works without psycopg installed.
            from studyapp.server.pg_storage import PgStorage
        except ImportError as exc:
            raise StorageError(f"A PostgreSQL --db needs psycopg and psycopg-pool ({exc.name} is missing): "
                               "pip install 'studyapp[server]'.") from exc
        return PgStorage(str(url_or_path), migrate=migrate)
    return Storage(url_or_path, migrate=migrate)
