"""The consent screen: read the study's consent document, choose data categories, accept or decline.

A standalone screen: it gets the study ``Protocol`` and a ``ConsentService`` and dismisses with the
recorded ``ConsentRecord`` (accepted) or None (declined or closed). The text shown is the document's
exact text, and that is what the consent record's sha256 refers to. Required categories are marked;
accepting without one of them shows why and stays on the screen. When consent is already in force
for this document, the screen changes categories instead (and can include earlier records).

Given the ``ReviewService`` too, an optional section asks for the names, places and employers the
participant wants always removed, lists the terms they already have (untick one to stop removing it),
and stores them with the decision, before it is recorded: everything queued after the decision is
scrubbed with them. Items already waiting are then re-scrubbed in a worker thread (as in the review
screen) before the screen closes. Declining or cancelling stores no term.
"""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.screen import Screen
from textual.widgets import Button, Checkbox, Footer, Input, Label, Markdown, Static

from studyapp.events import CATEGORY_TITLES
from studyapp.privacy.consent import ConsentError, ConsentRecord, ConsentService
from studyapp.privacy.review import ReviewService, split_terms
from studyapp.study.protocol import Protocol

TERMS_HEADING = "Always remove (optional)"
TERMS_HELP = ("Names, places and employers to remove from everything you share, even where the scrubber would "
              "miss them: your name, your partner's or children's names, your town, your employer. Separate "
              "several with commas; Enter adds them to the list. Leave it empty if there are none.")
TERMS_NOTE = "Untick a term to stop removing it (text already scrubbed stays scrubbed)."


class ChoiceBox(Checkbox):
    """A checkbox whose mark says its state, not only its colour: ✔ when ticked, blank when not."""

    @property  # type: ignore[override]
    def BUTTON_INNER(self) -> str:  # Textual's name for the mark
        return "✔" if self.value else " "


class TermBox(ChoiceBox):
    """One always-remove term: ticked, it is removed from everything shared."""

    def __init__(self, term: str, *, saved: bool) -> None:
        super().__init__(Content(term), value=True, classes="term")  # as typed: "[" is no markup here
        self.term = term
        self.saved = saved  # already in the participant's terms (else typed on this screen)


class TermList(Vertical):
    """The participant's terms; after terms are added it scrolls them into view once laid out (its size changed)."""

    reveal = False

    def on_resize(self) -> None:
        if self.reveal:
            self.reveal = False
            self.screen.query_one("#consent-choices").scroll_to_widget(self.screen.query_one("#terms-note"),
                                                                       animate=False)


class ConsentScreen(Screen[ConsentRecord | None]):
    CSS_PATH = "../styles/consent.tcss"
    BINDINGS = [Binding("escape", "decline", "Decline"), Binding("ctrl+s", "accept", "Accept")]

    def __init__(self, protocol: Protocol, consent: ConsentService, review: ReviewService | None = None) -> None:
        super().__init__()
        self.protocol = protocol
        self.consent = consent
        self.review = review
        self.saved_terms = review.anonymizer.terms() if review is not None else []
        self.applying = False
        self.document = protocol.current_consent
        current = consent.current(protocol.id)
        # Same document already agreed to: this visit changes categories.
        self.changing = current is not None and not consent.needs_reconsent(protocol)
        self.granted = set(current.categories) if current else set()

    def compose(self) -> ComposeResult:
        doc = self.document
        yield Label(f"{self.protocol.title}: {doc.title} (version {doc.version})", id="consent-title",
                    markup=False)
        with VerticalScroll(id="consent-text"):
            yield Markdown(doc.text)
        with Vertical(id="consent-choices"):
            yield Label("Tick what you agree to share (anonymized on this computer first):", classes="heading")
            for name, spec in self.protocol.categories.items():
                title = CATEGORY_TITLES.get(name, name.replace("_", " ").capitalize())
                label = f"{title} (required)" if spec.required else title
                box = ChoiceBox(label, value=name in self.granted, id=f"cat-{name}", classes="category")
                if spec.required:
                    box.add_class("required")
                yield box
                yield Static(spec.description, classes="description", markup=False)
            if self.changing:
                yield ChoiceBox("Also share records made before today in newly chosen categories",
                               value=False, id="include-earlier")
            if self.review is not None:
                yield Label(TERMS_HEADING, classes="heading")
                yield Static(TERMS_HELP, classes="description", markup=False)
                with Vertical(id="terms"):
                    yield Input(placeholder="e.g. Jonas Becker, Acme GmbH", id="terms-input")
                    with TermList(id="terms-list"):
                        for term in self.saved_terms:
                            yield TermBox(term, saved=True)
                yield Static(TERMS_NOTE, id="terms-note", classes="description", markup=False)
            yield Static("", id="consent-error", markup=False)
        with Horizontal(id="consent-buttons"):
            yield Button("Save my choices" if self.changing else "I agree", variant="primary", id="accept")
            yield Button("Cancel" if self.changing else "Decline", id="decline")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#consent-text").focus()
        self._show_terms_note()

    def chosen(self) -> list[str]:
        return [name for name in self.protocol.categories if self.query_one(f"#cat-{name}", Checkbox).value]

    # Always-remove terms ---------------------------------------------------------------------------

    @on(Input.Submitted, "#terms-input")
    async def _add_typed_terms(self, event: Input.Submitted) -> None:
        """Enter moves what was typed into the list (ticked), so the participant sees each term on its own."""
        listed = {box.term: box for box in self.query(TermBox)}
        new = []
        for term in split_terms(event.value):
            if term in listed:
                listed[term].value = True
            else:
                new.append(TermBox(term, saved=False))
        if new:
            terms = self.query_one(TermList)
            terms.reveal = True
            await terms.mount_all(new)
        event.input.value = ""
        self._show_terms_note()

    def _show_terms_note(self) -> None:
        if self.review is not None:
            self.query_one("#terms-note", Static).display = bool(self.query(TermBox))

    def term_changes(self) -> tuple[list[str], list[str]]:
        """(terms to add, terms to stop removing): the ticked new ones and what is still typed in the field, the
        unticked saved ones."""
        if self.review is None:
            return [], []
        boxes = list(self.query(TermBox))
        add = [b.term for b in boxes if b.value and not b.saved]
        add += [t for t in split_terms(self.query_one("#terms-input", Input).value) if t not in add]
        remove = [b.term for b in boxes if b.saved and not b.value]
        return add, remove

    # Deciding --------------------------------------------------------------------------------------

    @on(Button.Pressed, "#accept")
    def _accept(self) -> None:
        self.action_accept()

    @on(Button.Pressed, "#decline")
    def _decline(self) -> None:
        self.action_decline()

    def _say(self, message: str, *, progress: bool = False) -> None:
        """Show why the choice cannot be recorded (or, ``progress``, what is being done) above the buttons."""
        line = self.query_one("#consent-error", Static)
        line.update(message)
        line.add_class("visible")
        line.set_class(progress, "progress")

    def action_accept(self) -> None:
        if self.applying:
            return
        try:
            # Checked first, so terms are stored only with a decision that is recorded.
            self.consent.check_choice(self.protocol, self.chosen())
            added = False
            if self.review is not None:
                # Stored before the decision: whatever the gate queues once it is recorded is scrubbed with them.
                add, remove = self.term_changes()
                added = bool(self.review.save_terms(add, remove).added)
            if self.changing:
                earlier = self.query_one("#include-earlier", Checkbox).value
                record = self.consent.change_categories(self.protocol, self.chosen(), include_earlier=earlier)
            else:
                record = self.consent.grant(self.protocol, self.chosen(), shown_text=self.document.text)
        except ConsentError as exc:
            self._say(str(exc))
            return
        if not added:
            self.dismiss(record)
            return
        self.applying = True
        for button in self.query(Button):
            button.disabled = True
        self._say("Applying your terms to what waits to be sent…", progress=True)
        self.apply_terms(record)

    @work(thread=True, exclusive=True, group="rescrub")
    def apply_terms(self, record: ConsentRecord) -> None:
        """Re-scrub what waits in the outbox with the new terms, off the event loop, then close the screen."""
        assert self.review is not None
        # Its own connection: the app's connection belongs to the UI thread.
        review = self.review.on_new_connection()
        try:
            changed = review.rescrub()
            message = (f"Your terms will always be removed; {changed} waiting item{'s' if changed != 1 else ''} "
                       "updated.")
            failed = False
        except Exception as exc:  # the decision stands; the participant can re-scrub from the review screen
            message = f"Your consent is recorded, but re-scrubbing waiting items failed: {exc}. Press r in F3."
            failed = True
        finally:
            if review is not self.review:
                review.db.close()
        self.app.call_from_thread(self._terms_applied, record, message, failed)

    def _terms_applied(self, record: ConsentRecord, message: str, failed: bool) -> None:
        self.notify(message, severity="error" if failed else "information", markup=False)
        self.dismiss(record)

    def action_decline(self) -> None:
        if self.applying:
            return
        self.dismiss(None)
