"""``studyapp-server``: the research team's command line (init, codes, serve, export, participants, report,
migrate-to-postgres, models, usage).

Every command takes ``--db`` (or STUDYAPP_SERVER_DB; default: server.db in the platformdirs data dir of
"studyapp-server"): the path of a SQLite file or a ``postgresql://`` URL. Tokens and codes are printed once and
stored only as hashes.
"""

from __future__ import annotations

import getpass
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
import platformdirs

from studyapp.server import backend
from studyapp.server.shared_storage import MAX_SEED
from studyapp.server.storage import Storage, StorageError

if TYPE_CHECKING:
    from studyapp.server.pg_storage import PgStorage

ENV_DB = backend.ENV_DB
F = TypeVar("F", bound=Callable[..., Any])
Database = Path | str  # a SQLite file's path or a postgresql:// URL
# How long a worker of `serve --workers N` may leave uvicorn's health check (a ping over a pipe) unanswered before
# uvicorn kills and replaces it. A new worker answers only once its interpreter has imported the server, which
# takes seconds on a busy machine, close to uvicorn's default of 5 s: a worker killed before it answered is
# replaced by one that starts as slowly, and the other worker serves alone meanwhile.
WORKER_HEALTHCHECK_S = 60


class DatabaseParam(click.ParamType):
    """A SQLite path or a ``postgresql://`` URL, kept as the URL it is (click.Path would turn it into a path)."""

    name = "PATH|URL"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Database:
        if isinstance(value, Path):
            return value
        text = str(value)
        if backend.is_postgres_url(text):
            return text
        if "://" in text:
            scheme = text.split("://", 1)[0]
            self.fail(f"{scheme}:// is not a database this server speaks: give the path of a SQLite file or a "
                      "postgresql://user@host/dbname URL.", param, ctx)
        return Path(text)


def default_db_path() -> Path:
    return Path(platformdirs.user_data_dir("studyapp-server", appauthor=False)) / "server.db"


def db_option(func: F) -> F:
    return click.option(
        "--db", "db_path", type=DatabaseParam(), envvar=ENV_DB,
        default=default_db_path, show_default="server.db in the user data dir of studyapp-server",
        help="The server's database: a SQLite file, or a PostgreSQL URL postgresql://user@host:port/dbname "
             f"(a password is better in ~/.pgpass or PGPASSWORD than on the command line) [env: {ENV_DB}].",
    )(func)


def open_storage(db_path: Database) -> Storage | PgStorage:
    """The storage behind ``--db``; any failure to open it is a message naming the database (never its
    password), not a traceback."""
    if backend.is_postgres_url(db_path):
        _reach_postgres(str(db_path))
    try:
        return backend.open_storage(db_path)
    except StorageError as exc:
        raise click.ClickException(str(exc)) from exc
    except Exception as exc:
        # psycopg's own errors (a refused login, a missing database) arrive here; the URL shown has no password.
        if backend.is_postgres_url(db_path) and type(exc).__module__.startswith("psycopg"):
            raise click.ClickException(f"Cannot open the PostgreSQL database {backend.shown(str(db_path))}: "
                                       f"{backend.hide_password(str(exc), str(db_path))}") from None
        raise


def _reach_postgres(url: str) -> None:
    """Connect once before the pool does: the pool retries quietly until its timeout and then can only say that it
    could not connect, while libpq's own answer says why (refused, unknown host, login failed, no such database)."""
    import logging

    try:
        import psycopg
    except ImportError:
        return  # open_storage says what to install
    # The pool's retries would print a warning each; the one message below says it all.
    logging.getLogger("psycopg.pool").setLevel(logging.ERROR)
    try:
        psycopg.connect(url, connect_timeout=10).close()
    except psycopg.Error as exc:
        reason = backend.hide_password(str(exc).strip(), url)
        raise click.ClickException(f"Cannot connect to the PostgreSQL database {backend.shown(url)}: {reason}\n"
                                   "Check the host, port, user, password and database name in --db, and that the "
                                   "server is running.") from None


def read_protocol(path: Path) -> tuple[str, str, str, str, dict[str, Any]]:
    """(id, title, version, raw TOML text, resolved dict) of a protocol file, validated by the study layer."""
    from studyapp.study.protocol import ProtocolError, load_protocol

    try:
        protocol = load_protocol(path)
    except ProtocolError as exc:
        raise click.ClickException(str(exc)) from None
    return protocol.id, protocol.title, protocol.version, protocol.raw_text, protocol.to_dict()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="studyapp")
def cli() -> None:
    """studyapp-server: collect the records of a studyapp study."""


@cli.command()
@db_option
@click.option("--protocol", "protocol_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              required=True, help="The study protocol (TOML) participants will receive.")
@click.option("--researcher", default="owner", show_default=True, help="Name recorded for this researcher token.")
@click.option("--seed", type=click.IntRange(0, MAX_SEED), default=None,
              help="The seed of the conditions' blocked randomization [default: a new random one]; recorded in "
                   "the database, so every block's order can be reproduced from it.")
def init(db_path: Database, protocol_path: Path, researcher: str, seed: int | None) -> None:
    """Create the study in DB and print a researcher token (shown once)."""
    study_id, title, version, text, data = read_protocol(protocol_path)
    storage = open_storage(db_path)
    try:
        token = storage.init_study(study_id=study_id, title=title, version=version, protocol=text,
                                   protocol_data=data, researcher=researcher, seed=seed)
    except StorageError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"Study {study_id!r} ({title}, version {version}) created in {storage.path}.")
    if "conditions" in data:
        click.echo(f"Conditions are assigned at enrollment in balanced blocks; allocation seed "
                   f"{storage.allocation()['seed']} (recorded; `studyapp-server allocation` shows every assignment).")
    click.echo("Researcher token (shown only this once; keep it in a password manager):")
    click.echo(token)


@cli.command("update-protocol")
@db_option
@click.option("--protocol", "protocol_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              required=True, help="The new version of the study protocol (same [study] id, higher version).")
def update_protocol(db_path: Database, protocol_path: Path) -> None:
    """Publish a new protocol version; apps pick it up at their next sync (a new consent asks again)."""
    study_id, title, version, text, data = read_protocol(protocol_path)
    storage = open_storage(db_path)
    try:
        previous = storage.update_protocol(study_id=study_id, title=title, version=version, protocol=text,
                                           protocol_data=data)
    except StorageError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"Study {study_id!r}: protocol version {previous} -> {version}. Participants receive it at their "
               "next sync.")


@cli.group()
def codes() -> None:
    """One-time enrollment codes."""


@codes.command("create")
@db_option
@click.option("--n", "n", type=click.IntRange(1, 100_000), default=1, show_default=True, help="How many codes.")
def codes_create(db_path: Database, n: int) -> None:
    """Print N new one-time codes, one per line (stored only as hashes)."""
    storage = open_storage(db_path)
    try:
        for code in storage.create_codes(n):
            click.echo(code)
    except StorageError as exc:
        raise click.ClickException(str(exc)) from exc


@cli.group()
def researchers() -> None:
    """Researcher tokens."""


@researchers.command("add")
@db_option
@click.option("--name", required=True, help="Who receives the token (recorded in the export log).")
def researchers_add(db_path: Database, name: str) -> None:
    """Print a new researcher token (shown once)."""
    storage = open_storage(db_path)
    try:
        storage.require_study()
    except StorageError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(storage.add_researcher(name))


@cli.command()
@db_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--max-body-bytes", type=click.IntRange(1024), default=None, help="Request body limit.")
@click.option("--forwarded-allow-ips", default=None, metavar="ADDRESSES",
              help="Comma-separated addresses of reverse proxies whose X-Forwarded-For names the client (the "
                   "address failed authentications are throttled by), or '*' [default: 127.0.0.1,::1].")
@click.option("--workers", type=click.IntRange(1, 256), default=1, show_default=True,
              help="Worker processes answering requests (PostgreSQL only: a SQLite database takes one).")
@click.option("--gateway-read-timeout", type=click.FloatRange(1), default=None, metavar="SECONDS",
              help="How long the model gateway waits for an upstream's next bytes before it gives up "
                   "[default: 120].")
def serve(db_path: Database, host: str, port: int, max_body_bytes: int | None, forwarded_allow_ips: str | None,
          workers: int, gateway_read_timeout: float | None) -> None:
    """Serve the API (put a TLS-terminating proxy in front of it on a public network)."""
    import uvicorn

    from studyapp.server.app import DEFAULT_MAX_BODY_BYTES, create_app
    from studyapp.server.gateway import DEFAULT_READ_TIMEOUT_S

    if workers > 1 and not backend.is_postgres_url(db_path):
        # More processes on one SQLite file would only queue behind its single write lock (and each would
        # checkpoint on its own): the gain needs a database that many processes can write at once.
        raise click.ClickException(
            f"--workers {workers} needs a PostgreSQL --db: a SQLite database is one file with one write lock, so "
            "several worker processes would only wait for each other. Serve SQLite with one worker, or move the "
            "study to PostgreSQL (studyapp-server migrate-to-postgres).")
    storage = open_storage(db_path)
    try:
        study = storage.require_study()
    except StorageError as exc:
        storage.close()
        raise click.ClickException(str(exc)) from exc
    click.echo(f"Serving study {study['id']!r} from {storage.path} on http://{host}:{port}"
               + (f" with {workers} workers" if workers > 1 else ""), err=True)
    if workers > 1:
        storage.close()  # migrated and checked; each worker opens its own pool
        # The workers are new processes that import the app by name: they find the database in the environment
        # (inherited, never on a command line another user could read in ps).
        os.environ[backend.ENV_DB] = str(db_path)
        os.environ[backend.ENV_MAX_BODY_BYTES] = str(max_body_bytes or DEFAULT_MAX_BODY_BYTES)
        os.environ[backend.ENV_GATEWAY_READ_TIMEOUT] = str(gateway_read_timeout or DEFAULT_READ_TIMEOUT_S)
        uvicorn.run("studyapp.server.app:app_from_env", factory=True, workers=workers, host=host, port=port,
                    log_level="warning", forwarded_allow_ips=forwarded_allow_ips,
                    timeout_worker_healthcheck=WORKER_HEALTHCHECK_S)
        return
    app = create_app(storage, max_body_bytes=max_body_bytes or DEFAULT_MAX_BODY_BYTES,
                     gateway_read_timeout_s=gateway_read_timeout or DEFAULT_READ_TIMEOUT_S)
    # uvicorn reads X-Forwarded-For only from these proxies (None: $FORWARDED_ALLOW_IPS or loopback).
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", forwarded_allow_ips=forwarded_allow_ips)
    uvicorn.Server(config).run(sockets=[_listen(host, port)])


def _listen(host: str, port: int) -> Any:
    """The server's listening socket, made here rather than by uvicorn so that it is created as TCP
    (``IPPROTO_TCP``): asyncio then sets TCP_NODELAY on every connection it accepts, and each chunk of a model's
    stream leaves at once instead of waiting for the participant's delayed ACK (some 40 ms) behind the one before."""
    import socket

    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # An IPv6 address keeps the system's default (dual-stack on Linux), as uvicorn's own socket does: `--host ::`
        # takes IPv4 connections too.
        sock.bind((host, port))
    except OSError as exc:
        raise click.ClickException(f"Cannot listen on {host}:{port}: {exc.strerror or exc}. Choose another --port "
                                   "or --host, or stop what is using it.") from None
    sock.set_inheritable(True)
    return sock


@cli.command()
@db_option
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv", "parquet"]), required=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for the files (one per record type, and schema.json); never written through a symlink.")
@click.option("--researcher", default=None, help="Name recorded in the export log [default: the login name].")
def export(db_path: Database, fmt: str, out_dir: Path, researcher: str | None) -> None:
    """Write the export contract's files (participants, messages, ...) and schema.json to OUT, from one snapshot.

    The files appear only when all are complete; a failed export leaves OUT as it was."""
    from studyapp.server import export as export_mod

    storage = open_storage(db_path)
    try:
        storage.require_study()
        with storage.snapshot() as snapshot:  # either backend's snapshot reads the counts (for the progress bar)
            total = export_mod.total_rows(snapshot)
        with click.progressbar(length=total, label=f"Exporting {fmt}", file=sys.stderr) as bar:
            counts = export_mod.export(storage, out_dir, fmt, researcher=researcher or getpass.getuser(),
                                       via="cli", tick=bar.update)
    except (StorageError, export_mod.ExportError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    for name, n in counts.items():
        click.echo(f"{n:>10}  {out_dir / f'{name}.{fmt}'}")
    click.echo(f"{'':>10}  {out_dir / export_mod.SCHEMA_FILE}")


@cli.command()
@db_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def participants(db_path: Database, as_json: bool) -> None:
    """Compliance table: enrolled, last upload, days active, comparisons rated, withdrawn."""
    storage = open_storage(db_path)
    rows = storage.compliance()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    # The condition column only in a study that assigns them.
    width = max((len(r["condition"]) for r in rows if r["condition"]), default=0)
    width = max(width, len("condition")) if width else 0

    def condition(value: str | None) -> str:
        return f"{value or '-':<{width}}  " if width else ""

    header = (f"{'participant':<36}  {condition('condition')}{'enrolled':<10}  {'last upload':<16}  {'days':>4}  "
              f"{'rated':>5}  withdrawn")
    click.echo(header)
    for r in rows:
        click.echo(
            f"{r['participant_id']:<36}  {condition(r['condition'])}{(r['enrolled_at'] or '')[:10]:<10}  "
            f"{(r['last_upload_at'] or '-')[:16].replace('T', ' '):<16}  {r['days_active']:>4}  "
            f"{r['comparisons_rated']:>5}  {(r['withdrawn_at'] or '')[:16].replace('T', ' ')}"
        )
    counts = storage.code_counts()
    click.echo(f"{len(rows)} participants; codes: {counts['used']} used, {counts['unused']} unused")


@cli.command()
@db_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def allocation(db_path: Database, as_json: bool) -> None:
    """The conditions' randomization: its seed and every assignment, each checked against the seed."""
    from studyapp.study.conditions import block_order

    storage = open_storage(db_path)
    storage.require_study()
    record = storage.allocation()
    seed = record["seed"]
    for slot in record["slots"]:
        # Reproduced from the recorded seed: an assignment that differs would show a changed record.
        drawn = block_order(seed, slot["block"], slot["conditions"], slot["block_size"])[slot["position"] - 1]
        slot["reproduced"] = drawn == slot["condition"]
    if as_json:
        click.echo(json.dumps(record, indent=2))
        return
    click.echo(f"seed: {seed if seed is not None else '(none yet)'}")
    if not record["slots"]:
        click.echo("No participant has been assigned a condition.")
        return
    click.echo(f"{'block':>5}  {'position':>8}  {'condition':<24}  {'assigned':<16}  reproduced")
    for slot in record["slots"]:
        click.echo(f"{slot['block']:>5}  {slot['position']:>8}  {slot['condition']:<24}  "
                   f"{slot['assigned_at'][:16].replace('T', ' '):<16}  {'yes' if slot['reproduced'] else 'NO'}")
    counts: dict[str, int] = {}
    for slot in record["slots"]:
        counts[slot["condition"]] = counts.get(slot["condition"], 0) + 1
    click.echo(f"{len(record['slots'])} assignments: " + ", ".join(f"{c} {n}" for c, n in sorted(counts.items())))


@cli.group()
def models() -> None:
    """The study's models that the server relays for participants (the model gateway, /llm/v1)."""


@models.command("add")
@db_option
@click.argument("name")
@click.option("--base-url", required=True, metavar="URL",
              help="The upstream's OpenAI-compatible base URL, e.g. https://api.openai.com/v1 "
                   "(the gateway calls URL/chat/completions).")
@click.option("--upstream-model", default=None, metavar="MODEL",
              help="The model name the upstream knows [default: NAME].")
@click.option("--api-key-env", default=None, metavar="VAR",
              help="The environment variable of the server process that holds the upstream's API key.")
@click.option("--api-key-file", type=click.Path(dir_okay=False, path_type=Path), default=None, metavar="PATH",
              help="A file holding the upstream's API key, readable only by the server's user (chmod 600).")
def models_add(db_path: Database, name: str, base_url: str, upstream_model: str | None, api_key_env: str | None,
               api_key_file: Path | None) -> None:
    """Serve the upstream model at --base-url to participants as NAME (the protocol's [models.ROLE] model = NAME).

    Only the NAME of the key's variable or the PATH of its file is stored, never the key: the server reads it at
    each request."""
    from urllib.parse import urlsplit

    from studyapp.server.gateway import key_file_problem

    if api_key_env and api_key_file:
        raise click.UsageError("Give either --api-key-env or --api-key-file, not both.")
    if not name.strip() or name != name.strip():
        raise click.UsageError(f"The model name {name!r} is empty or has spaces around it; give the name the "
                               "protocol's [models.ROLE] model = \"...\" uses.")
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise click.UsageError(f"--base-url {base_url!r} is not an http(s) URL: give the upstream's "
                               "OpenAI-compatible base URL, e.g. https://api.openai.com/v1.")
    if parts.username or parts.password:
        raise click.UsageError("--base-url must not hold credentials: pass the key with --api-key-env or "
                               "--api-key-file.")
    if api_key_env is not None and not api_key_env.replace("_", "").isalnum():
        raise click.UsageError(f"--api-key-env takes the NAME of an environment variable (such as "
                               f"OPENAI_API_KEY), not {api_key_env!r}; never the key itself.")
    key_file = None
    if api_key_file is not None:
        key_file = api_key_file.expanduser().resolve()
        problem = key_file_problem(key_file)
        if problem:
            raise click.ClickException(f"Refusing {key_file}: {problem[0].upper()}{problem[1:]}.")
    storage = open_storage(db_path)
    try:
        storage.add_gateway_model(name=name, base_url=base_url, upstream_model=upstream_model or name,
                                  api_key_env=api_key_env, api_key_file=str(key_file) if key_file else None)
    except StorageError as exc:
        raise click.ClickException(str(exc)) from exc
    key = (f"key from ${api_key_env}" if api_key_env else f"key from {key_file}" if key_file else "no key")
    click.echo(f"Serving {name!r} (upstream model {upstream_model or name!r} at {base_url}, {key}).")
    if api_key_env and api_key_env not in os.environ:
        click.echo(f"Note: {api_key_env} is not set here; set it in the environment of `studyapp-server serve`.",
                   err=True)


@models.command("list")
@db_option
def models_list(db_path: Database) -> None:
    """The models the gateway serves, and the budgets per participant."""
    storage = open_storage(db_path)
    rows = storage.gateway_models()
    if not rows:
        click.echo("The gateway serves no model yet: studyapp-server models add NAME --base-url URL ...")
    else:
        click.echo(f"{'name':<24}  {'upstream model':<24}  {'key':<28}  base URL")
        for r in rows:
            key = f"${r['api_key_env']}" if r["api_key_env"] else r["api_key_file"] or "-"
            click.echo(f"{r['name']:<24}  {r['upstream_model']:<24}  {key:<28}  {r['base_url']}")
    limits = storage.gateway_limits()
    click.echo(f"Budgets per participant: {limits.daily_tokens} tokens per UTC day, "
               f"{limits.requests_per_minute} requests per minute.")


@models.command("remove")
@db_option
@click.argument("name")
def models_remove(db_path: Database, name: str) -> None:
    """Stop serving NAME (at once, on every worker). Its usage counts stay."""
    storage = open_storage(db_path)
    if not storage.remove_gateway_model(name):
        served = ", ".join(m["name"] for m in storage.gateway_models()) or "none"
        raise click.ClickException(f"The gateway serves no model {name!r} (it serves: {served}).")
    click.echo(f"No longer serving {name!r}.")


@models.command("limits")
@db_option
@click.option("--daily-tokens", type=click.IntRange(1), default=None,
              help="Tokens (prompt + completion) per participant per UTC day.")
@click.option("--requests-per-minute", type=click.IntRange(1), default=None,
              help="Requests per participant per minute.")
def models_limits(db_path: Database, daily_tokens: int | None, requests_per_minute: int | None) -> None:
    """Show or set the budgets per participant (in force at once, on every worker)."""
    storage = open_storage(db_path)
    if daily_tokens is None and requests_per_minute is None:
        limits = storage.gateway_limits()
    else:
        limits = storage.set_gateway_limits(daily_tokens=daily_tokens, requests_per_minute=requests_per_minute)
    click.echo(f"Budgets per participant: {limits.daily_tokens} tokens per UTC day, "
               f"{limits.requests_per_minute} requests per minute.")


USAGE_COLUMNS = ["requests", "prompt_tokens", "completion_tokens", "errors", "estimated", "latency_ms_mean",
                 "latency_ms_max"]


@cli.command()
@db_option
@click.option("--by", "groups", type=click.Choice(["participant", "role", "day", "model"]), multiple=True,
              help="Group by these (repeatable) [default: participant, role, day and model].")
@click.option("--format", "fmt", type=click.Choice(["table", "csv"]), default="table", show_default=True)
def usage(db_path: Database, groups: tuple[str, ...], fmt: str) -> None:
    """The model gateway's usage: requests, tokens, errors and latency (counts only, never content).

    estimated counts requests whose tokens were estimated from the text length (the upstream sent no usage)."""
    import csv

    from studyapp.server.shared_storage import USAGE_GROUPS

    by = list(dict.fromkeys(groups)) or ["participant", "role", "day", "model"]
    storage = open_storage(db_path)
    rows = storage.gateway_usage(by)
    columns = [USAGE_GROUPS[g] for g in by] + USAGE_COLUMNS
    if fmt == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([r[c] for c in columns] for r in rows)
        return
    if not rows:
        click.echo("No use of the study's models yet.")
        return
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in columns}
    click.echo("  ".join(c.ljust(widths[c]) for c in columns))
    for r in rows:
        click.echo("  ".join(str(r[c]).rjust(widths[c]) if c in USAGE_COLUMNS else str(r[c]).ljust(widths[c])
                             for c in columns))


@cli.command("migrate-to-postgres")
@click.option("--from", "source", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="The pilot's SQLite server database (stop its server first: later uploads would not be moved).")
@click.option("--to", "target", type=DatabaseParam(), required=True,
              help="An empty PostgreSQL database: postgresql://user@host:port/dbname (put a password in "
                   "~/.pgpass or PGPASSWORD rather than here).")
def migrate_to_postgres(source: Path, target: Database) -> None:
    """Copy every table of a SQLite server database into an empty PostgreSQL one, then check each table's row
    count and checksum on both sides.

    Payload text PostgreSQL's json type refuses (a lone surrogate escape or NUL, stored before the contract
    refused them) is written as U+FFFD and counted."""
    from studyapp.server import move_to_postgres

    if not backend.is_postgres_url(target):
        raise click.BadParameter("give a postgresql://user@host/dbname URL.", param_hint="--to")
    _reach_postgres(str(target))
    try:
        total = move_to_postgres.count_rows(source)
        with click.progressbar(length=total, label="Copying rows", file=sys.stderr) as bar:
            report = move_to_postgres.move(source, str(target), progress=bar.update)
    except StorageError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{'table':<18} {'SQLite rows':>11} {'PostgreSQL':>11}  sha256 (rows in primary-key order)")
    for t in report.tables:
        mark = "" if t.ok else f"  MISMATCH: PostgreSQL has {t.postgres_sha256}"
        click.echo(f"{t.table:<18} {t.sqlite_rows:>11} {t.postgres_rows:>11}  {t.sqlite_sha256}{mark}")
    click.echo(f"Payloads repaired (lone surrogate or NUL written as U+FFFD): {report.repaired_payloads}")
    if not report.ok:
        raise click.ClickException("The copy differs from the source: " + "; ".join(report.differences())
                                   + ". Do not serve from the PostgreSQL database; drop it and migrate again.")
    click.echo(f"Moved {source} to {backend.shown(str(target))}: every table's rows and checksum agree. "
               f"Serve it with: studyapp-server serve --db {backend.shown(str(target))}")


@cli.command()
@click.argument("export_dir", type=click.Path(path_type=Path))
@click.option("--out", "out", type=click.Path(path_type=Path), required=True,
              help="The report file (a folder: report.html or report.md in it); tables go to <name>_tables/ beside "
                   "it as CSV.")
@click.option("--format", "fmt", type=click.Choice(["html", "md"]), default=None,
              help="html (one self-contained file) or md (charts as PNG beside it) [default: md for a .md OUT, "
                   "else html].")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the bootstrap's resampling.")
def report(export_dir: Path, out: Path, fmt: str | None, seed: int) -> None:
    """Compute the study's measures from an export folder (EXPORT_DIR) and write them as a report."""
    # Loaded here, not at the top: the other commands (serve above all) must not carry matplotlib and the analysis.
    try:
        from studyapp.analysis.load import ExportError, load_export
        from studyapp.analysis.measures import analyze
        from studyapp.analysis.report import write_report
    except ModuleNotFoundError as exc:
        raise click.ClickException(f"the report needs the analysis extra (pip install 'studyapp[analysis]'): "
                                   f"{exc}") from None
    fmt = fmt or ("md" if out.suffix.lower() in (".md", ".markdown") else "html")
    try:
        export = load_export(export_dir)
    except ExportError as exc:
        raise click.ClickException(str(exc)) from None
    analysis = analyze(export, seed=seed)
    try:
        files = write_report(analysis, out, fmt)
    except OSError as exc:
        raise click.ClickException(f"cannot write the report: {exc}") from None
    click.echo(f"Report: {files.report}")
    if files.tables:
        click.echo(f"Tables ({len(files.tables)} CSV files):")
        for path in files.tables.values():
            click.echo(f"  {path}")
    if files.charts:
        click.echo(f"Charts ({len(files.charts)} PNG files):")
        for path in files.charts.values():
            click.echo(f"  {path}")


if __name__ == "__main__":
    cli()
