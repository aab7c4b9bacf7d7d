"""``studyapp pipeline extract|select|generate``: run one personalization stage on JSON and print JSON.

For researchers and tests, to inspect each stage outside the chat app. Input is a file or ``-`` (stdin):

    extract   {"messages": [{"role": "user", "content": "..."}, ...], "memory": ["optional", ...]}
    select    {"memory": ["The user ...", ...], "prompt": "the request"}
    generate  {"prompt": "..." or "messages": [...], "memory": ["attributes for the personalized arm", ...]}

The commands never write anywhere. The participant's database is not opened unless ``--data-dir`` is
given on the command or on ``studyapp`` itself (the STUDYAPP_DATA_DIR variable is ignored here, on purpose);
then the participant's current memory is *read* and used when the input has no "memory".
Evidence in the output refers to positions in the input "messages" list (0-based).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from studyapp.cli_options import read_only_data_dir_option
from studyapp.domain import Attribute, Message
from studyapp.llm import config as llm_config
from studyapp.llm.base import ChatModel, LLMError

T = TypeVar("T")


def _read_input(source: str) -> dict[str, Any]:
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except OSError as exc:
        raise click.ClickException(f"Cannot read {source}: {exc.strerror or exc}.") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.ClickException(
            f"The input is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})."
        ) from exc
    if not isinstance(data, dict):
        raise click.ClickException('The input must be a JSON object, e.g. {"messages": [...]} or '
                                   '{"memory": [...], "prompt": "..."}.')
    return data


def _messages(data: dict[str, Any], *, required: bool) -> list[Message]:
    raw = data.get("messages")
    if raw is None:
        if required:
            raise click.ClickException('The input needs "messages": a list of {"role", "content"} objects.')
        return []
    if not isinstance(raw, list):
        raise click.ClickException('"messages" must be a list of {"role", "content"} objects.')
    out = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or not isinstance(item.get("content"), str):
            raise click.ClickException(f'"messages"[{i}] must be an object with a string "content".')
        role = item.get("role", "user")
        if role not in ("user", "assistant", "system"):
            raise click.ClickException(f'"messages"[{i}].role must be user, assistant or system, not {role!r}.')
        out.append(Message(n=i, id=str(i), conversation_id="input", role=role, content=item["content"],
                           status="complete", created_at=""))
    return out


def _memory(data: dict[str, Any], data_dir: Path | None) -> list[Attribute]:
    raw = data.get("memory")
    if raw is None and data_dir is not None:
        from studyapp.paths import DATABASE_NAME
        from studyapp.store.db import UnusableDatabase, open_database
        from studyapp.store.memory import MemoryStore

        path = Path(data_dir) / DATABASE_NAME
        if not path.is_file():
            raise click.ClickException(f"There is no studyapp database in {data_dir} (expected {path}).")
        try:
            # Read-only use: no migration, so an older database is not changed by a look.
            db = open_database(path, migrate=False)
        except UnusableDatabase as exc:
            raise click.ClickException(str(exc)) from exc
        try:
            return MemoryStore(db).list_attributes()
        except sqlite3.Error as exc:
            raise click.ClickException(f"{path} has no readable memory ({exc}); open it once with studyapp "
                                       "to bring it up to date.") from exc
        finally:
            db.close()
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise click.ClickException('"memory" must be a list of attribute sentences (or {"text": ...} objects).')
    out = []
    for i, item in enumerate(raw):
        text = item.get("text") if isinstance(item, dict) else item
        if not isinstance(text, str) or not text.strip():
            raise click.ClickException(f'"memory"[{i}] must be a non-empty string or an object with "text".')
        out.append(Attribute(id=f"memory[{i}]", text=text.strip(), reason="", confidence=1.0, status="active",
                             origin="participant", evidence=[], created_at="", updated_at=""))
    return out


def _model(ctx: click.Context, model: str | None, base_url: str | None) -> ChatModel:
    parent = ctx.find_root().obj
    settings = llm_config.resolve(
        None,
        model=model or getattr(parent, "model_override", None),
        base_url=base_url or getattr(parent, "base_url_override", None),
    )
    if not settings.is_local and not settings.base_url:
        raise click.ClickException(f"--model {settings.model} needs --base-url (an OpenAI-compatible endpoint).")
    from studyapp.llm.factory import make_model

    try:
        return make_model(settings)
    except LLMError as exc:
        raise click.ClickException(str(exc)) from exc


def _run(model: ChatModel, work: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        try:
            return await work()
        finally:
            await model.aclose()

    try:
        return asyncio.run(main())
    except LLMError as exc:
        raise click.ClickException(str(exc)) from exc


def _print(value: dict[str, Any]) -> None:
    click.echo(json.dumps(value, ensure_ascii=False, indent=2))


def _common(func: Callable[..., Any]) -> Callable[..., Any]:
    func = click.argument("source", default="-", metavar="[FILE]")(func)
    func = click.option("--model", "-m", "model_name", help="'local' (embedded, default) or a model name.")(func)
    func = click.option("--base-url", help="OpenAI-compatible endpoint for --model NAME.")(func)
    func = read_only_data_dir_option(func)
    return func


@click.group("pipeline")
def pipeline() -> None:
    """Run one personalization stage on JSON input (FILE or - for stdin) and print JSON."""


@pipeline.command("extract")
@_common
@click.option("--threshold", type=click.FloatRange(0, 1), default=None,
              help="Proposals below this confidence are dropped [default: 0.4].")
@click.pass_context
def extract_cmd(ctx: click.Context, source: str, model_name: str | None, base_url: str | None,
                data_dir: Path | None, threshold: float | None) -> None:
    """Stage 1: propose attributes from the user turns of a conversation (and plan against a memory)."""
    from studyapp.personalize.extract import DEFAULT_THRESHOLD, Extractor
    from studyapp.personalize.memory import Reconciler

    data = _read_input(source)
    messages = _messages(data, required=True)
    memory = _memory(data, data_dir)
    user_messages = [m for m in messages if m.role == "user" and m.content.strip()]
    if not user_messages:
        raise click.ClickException('"messages" has no user message with text: nothing to extract from.')
    model = _model(ctx, model_name, base_url)
    extractor = Extractor(model, threshold=DEFAULT_THRESHOLD if threshold is None else threshold)

    async def work() -> dict[str, Any]:
        proposals = await extractor.propose(user_messages)
        out: dict[str, Any] = {
            "stage": "extract", "model": model.name, "template": extractor.template.ref,
            "status": "ok" if proposals.ok else "failed", "error": proposals.structured.error,
            "proposals": [
                {**p.to_dict(), "evidence": [int(i) for i in p.evidence]} for p in proposals.kept
            ],
            "dropped": [{"statement": d.statement, "why": d.why} for d in proposals.dropped],
            "raw": proposals.structured.raw,
        }
        if proposals.ok and proposals.kept and memory:
            reconciler = Reconciler(model)  # plan() only: nothing is written
            plan = await reconciler.plan(proposals.kept, memory)
            out["reconciliation"] = {
                "template": reconciler.template.ref,
                "status": "failed" if plan.failed else "ok",
                "error": plan.structured.error if plan.structured else None,
                "notes": plan.notes,
            }
        return out

    _print(_run(model, work))


@pipeline.command("select")
@_common
@click.pass_context
def select_cmd(ctx: click.Context, source: str, model_name: str | None, base_url: str | None,
               data_dir: Path | None) -> None:
    """Stage 2: decide for every attribute in "memory" whether it should shape the answer to "prompt"."""
    from studyapp.personalize.select import Selector

    data = _read_input(source)
    prompt = data.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise click.ClickException('The input needs "prompt": the request text (a non-empty string).')
    memory = _memory(data, data_dir)
    model = _model(ctx, model_name, base_url)
    selector = Selector(model)

    async def work() -> dict[str, Any]:
        result = await selector.select(prompt, memory)
        return {
            "stage": "select", "model": result.model, "template": result.template,
            "status": "ok" if result.ok else "failed", "error": result.error,
            "decisions": [{"index": i, **d.to_dict()} for i, d in enumerate(result.decisions)],
            "selected": result.selected,
            "raw": result.structured.raw if result.structured else "",
        }

    _print(_run(model, work))


@pipeline.command("generate")
@_common
@click.option("--arm", type=click.Choice(["personalized", "generic", "both"]), default="both", show_default=True,
              help="Which answer(s) to generate; personalized uses every attribute in \"memory\".")
@click.option("--max-tokens", type=click.IntRange(1), default=None, help="Cap the length of each answer.")
@click.pass_context
def generate_cmd(ctx: click.Context, source: str, model_name: str | None, base_url: str | None,
                 data_dir: Path | None, arm: str, max_tokens: int | None) -> None:
    """Stage 3: answer "prompt" (or the last user turn of "messages") generically and/or personalized."""
    from studyapp.llm.base import ChatParams
    from studyapp.personalize.generate import generate

    data = _read_input(source)
    history = _messages(data, required=False)
    prompt = data.get("prompt")
    if prompt is not None:
        if not isinstance(prompt, str) or not prompt.strip():
            raise click.ClickException('"prompt" must be a non-empty string.')
        history.append(Message(n=len(history), id=str(len(history)), conversation_id="input", role="user",
                               content=prompt, status="complete", created_at=""))
    if not history or history[-1].role != "user":
        raise click.ClickException('Give "prompt", or "messages" ending with a user turn.')
    memory = [a.text for a in _memory(data, data_dir)]
    arms = ["generic", "personalized"] if arm == "both" else [arm]
    if "personalized" in arms and not memory:
        raise click.ClickException('The personalized arm needs "memory" (a list of attributes); '
                                   "use --arm generic for an answer without a profile.")
    model = _model(ctx, model_name, base_url)
    params = ChatParams(max_tokens=max_tokens) if max_tokens else ChatParams()

    async def work() -> dict[str, Any]:
        answers = {}
        for name in arms:
            g = await generate(model, history, memory if name == "personalized" else None, params)
            answers[name] = {"text": g.text, "template": g.template, "first_token_ms": g.first_token_ms,
                             "duration_ms": g.duration_ms}
        return {"stage": "generate", "model": model.name, "parameters": params.to_dict(), "answers": answers}

    _print(_run(model, work))
