"""Command line for privacy: ``studyapp privacy scrub``, ``studyapp privacy terms ...`` and ``studyapp consent``.

``scrub`` lets researchers and participants see exactly what the on-device scrubber does; ``consent``
is for scripted deployments, where the consent text is shown on the terminal instead of the app.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from studyapp.cli import make_context, open_or_exit
from studyapp.cli_options import data_dir_option, resolve_data_dir

# Lines read before anonymizing them together when input is piped (spaCy is faster in batches).
SCRUB_BATCH = 64


@click.group()
def privacy() -> None:
    """See and tune what is removed from your data before it leaves this computer."""


@privacy.command()
@data_dir_option
@click.option("--no-ner", is_flag=True, help="Use only the pattern recognizers (no name recognition).")
@click.pass_context
def scrub(ctx: click.Context, data_dir: Path | None, no_ner: bool) -> None:
    """Read text lines on standard input and write them anonymized.

    With --data-dir (or STUDYAPP_DATA_DIR), uses that participant's placeholders and always-remove
    terms, so <PERSON_1> is the same person as in their uploads; otherwise placeholders are numbered
    for this run only and nothing is stored.
    """
    from studyapp.privacy.anonymize import Anonymizer

    db = None
    # Only a chosen data dir (either flag or the variable): scrubbing a sample must not create a database.
    if resolve_data_dir(ctx, data_dir).explicit:
        db = open_or_exit(make_context(ctx, data_dir)).db
    anonymizer = Anonymizer(db, ner=not no_ner).load()
    note = "NER active" if anonymizer.ner_available else "NER not active"
    click.echo(f"scrub: {note}. {anonymizer.status_message}", err=True)
    interactive = sys.stdin.isatty()
    batch: list[str] = []

    def flush() -> None:
        texts = [line.rstrip("\r\n") for line in batch]
        for text in anonymizer.anonymize_batch(texts):
            click.echo(text)
        batch.clear()

    for line in sys.stdin:
        batch.append(line)
        if interactive or len(batch) >= SCRUB_BATCH:
            flush()
    flush()


@privacy.group()
def terms() -> None:
    """Words and phrases always removed from your text (your name, your town, your employer)."""


@terms.command("add")
@data_dir_option
@click.argument("term", nargs=-1, required=True)
@click.pass_context
def terms_add(ctx: click.Context, data_dir: Path | None, term: tuple[str, ...]) -> None:
    """Always remove TERM (several may be given; quote phrases). Also re-scrubs what waits to be sent."""
    from studyapp.privacy.anonymize import Anonymizer
    from studyapp.privacy.review import ReviewService
    from studyapp.study.current import current_study

    app_ctx = open_or_exit(make_context(ctx, data_dir))
    anonymizer = Anonymizer(app_ctx.db)
    for t in term:
        try:
            added = anonymizer.add_term(t)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="TERM") from None
        click.echo(f"{'Added' if added else 'Already listed'}: {' '.join(t.split())}")
    # Queued payloads already went through the scrubber; the new terms must reach them too.
    changed = ReviewService(app_ctx.db, current_study(app_ctx.db).protocol, anonymizer).rescrub()
    if changed:
        click.echo(f"Re-scrubbed {changed} item{'s' if changed != 1 else ''} waiting to be sent.")


@terms.command("list")
@data_dir_option
@click.pass_context
def terms_list(ctx: click.Context, data_dir: Path | None) -> None:
    """List your always-remove terms."""
    from studyapp.store.privacy import PrivacyStore

    app_ctx = open_or_exit(make_context(ctx, data_dir))
    items = PrivacyStore(app_ctx.db).terms()
    if not items:
        click.echo("No always-remove terms yet. Add one with: studyapp privacy terms add \"TERM\"", err=True)
    for t in items:
        click.echo(t)


@terms.command("remove")
@data_dir_option
@click.argument("term", nargs=-1, required=True)
@click.pass_context
def terms_remove(ctx: click.Context, data_dir: Path | None, term: tuple[str, ...]) -> None:
    """Stop always removing TERM (text already scrubbed stays scrubbed)."""
    from studyapp.store.privacy import PrivacyStore

    app_ctx = open_or_exit(make_context(ctx, data_dir))
    store = PrivacyStore(app_ctx.db)
    missing = []
    for t in term:
        if store.remove_term(" ".join(t.split())):
            click.echo(f"Removed: {t}")
        else:
            missing.append(t)
    if missing:
        listed = ", ".join(store.terms()) or "(none)"
        raise click.ClickException(f"Not in your terms: {', '.join(missing)}. Your terms: {listed}")


@click.command("consent")
@data_dir_option
@click.option("--accept", "accept", multiple=True, metavar="CATEGORY",
              help="A data category you agree to share (repeat, or separate with commas).")
@click.option("--always-remove", "always_remove", multiple=True, metavar="TERM",
              help="A name, place or employer to always remove from what you share (repeat; quote phrases).")
@click.option("--stop-removing", "stop_removing", multiple=True, metavar="TERM",
              help="One of your always-remove terms to stop removing (repeat).")
@click.option("--show", is_flag=True, help="Only print the consent text, the categories and your always-remove "
                                          "terms; record nothing.")
@click.option("--include-earlier", is_flag=True,
              help="Also share records made before this decision in the newly accepted categories.")
@click.pass_context
def consent(ctx: click.Context, data_dir: Path | None, accept: tuple[str, ...], always_remove: tuple[str, ...],
            stop_removing: tuple[str, ...], show: bool, include_earlier: bool) -> None:
    """Read the enrolled study's consent document and agree to it, choosing data categories.

    The text is printed first; the consent recorded is for that exact text (its sha256).
    Required categories must be accepted to take part. Names, places and employers given with
    --always-remove are stored with the decision (before it is recorded) and removed from everything
    queued from then on; what already waits to be sent is re-scrubbed with them. As the app's consent
    screen does.
    """
    from studyapp.privacy.anonymize import Anonymizer
    from studyapp.privacy.consent import ConsentError, ConsentService
    from studyapp.privacy.review import ReviewService
    from studyapp.study.current import current_study

    app_ctx = open_or_exit(make_context(ctx, data_dir))
    study = current_study(app_ctx.db)
    if study.problem:
        raise click.ClickException(f"The enrolled study's protocol cannot be used: {study.problem}")
    if not study.enrolled:
        raise click.ClickException("You are not enrolled in a study: run `studyapp enroll URL CODE` first.")
    protocol = study.protocol
    document = protocol.current_consent
    click.echo(f"# {document.title} (study {protocol.id!r}, consent version {document.version})\n")
    click.echo(document.text.rstrip("\n"))
    click.echo("\nData categories this study asks for:")
    for name, spec in protocol.categories.items():
        click.echo(f"  {name}{' (required)' if spec.required else ''}: {spec.description}")
    review = ReviewService(app_ctx.db, protocol, Anonymizer(app_ctx.db))
    terms = review.anonymizer.terms()
    click.echo("\nAlways removed from what you share (optional; your name, family, town, employer...): "
               + (", ".join(terms) if terms else "none yet (add with --always-remove TERM)"))
    service = ConsentService(app_ctx.db)
    current = service.current(protocol.id)
    if current is not None:
        state = "outdated: a new document" if service.needs_reconsent(protocol) else "in force"
        click.echo(f"\nYour consent ({state}): version {current.version}, "
                   f"categories {', '.join(sorted(current.categories)) or '(none)'}")
    if show:
        return
    if not accept:
        raise click.UsageError("say which categories you agree to with --accept CATEGORY (repeatable), "
                               "or use --show to only read the text")
    unknown = [t for t in stop_removing if " ".join(t.split()) not in terms]
    if unknown:
        raise click.BadParameter(f"not among your always-remove terms: {', '.join(unknown)}. Your terms: "
                                 f"{', '.join(terms) or '(none)'}", param_hint="--stop-removing")
    categories = [c.strip() for item in accept for c in item.split(",") if c.strip()]
    try:
        # Checked first, so the terms are stored only with a decision that is recorded, and before it, so
        # whatever is queued once it is recorded is scrubbed with them.
        service.check_choice(protocol, categories)
        saved = review.save_terms(always_remove, stop_removing)
        if current is not None and not service.needs_reconsent(protocol):
            record = service.change_categories(protocol, categories, include_earlier=include_earlier)
        else:
            record = service.grant(protocol, categories, shown_text=document.text, include_earlier=include_earlier)
    except ConsentError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"\nRecorded: consent version {record.document_version} (sha256 {record.document_sha256[:12]}...), "
               f"categories {', '.join(record.categories) or '(none)'}.")
    for label, items in (("Always removed from now on", saved.added), ("Already removed", saved.already),
                         ("No longer removed", saved.removed)):
        if items:
            click.echo(f"{label}: {', '.join(items)}")
    if saved.added:
        changed = review.rescrub()
        if changed:
            click.echo(f"Re-scrubbed {changed} item{'s' if changed != 1 else ''} waiting to be sent.")
