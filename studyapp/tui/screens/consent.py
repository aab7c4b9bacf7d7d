"""The consent screen: read the study's consent document, choose data categories, accept or decline.

A standalone screen: it gets the study ``Protocol`` and a ``ConsentService`` and dismisses with the
recorded ``ConsentRecord`` (accepted) or None (declined or closed). The text shown is the document's
exact text, and that is what the consent record's sha256 refers to. Required categories are marked;
accepting without one of them shows why and stays on the screen. When consent is already in force
for this document, the screen changes categories instead (and can include earlier records).
"""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, Checkbox, Footer, Label, Markdown, Static

from studyapp.privacy.consent import ConsentError, ConsentRecord, ConsentService
from studyapp.study.protocol import Protocol


class ConsentScreen(Screen[ConsentRecord | None]):
    CSS_PATH = "../styles/consent.tcss"
    BINDINGS = [Binding("escape", "decline", "Decline"), Binding("ctrl+s", "accept", "Accept")]

    def __init__(self, protocol: Protocol, consent: ConsentService) -> None:
        super().__init__()
        self.protocol = protocol
        self.consent = consent
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
            yield Label("What you agree to share (anonymized on this computer first):", classes="heading")
            for name, spec in self.protocol.categories.items():
                label = f"{name} (required)" if spec.required else name
                box = Checkbox(label, value=name in self.granted, id=f"cat-{name}", classes="category")
                if spec.required:
                    box.add_class("required")
                yield box
                yield Static(spec.description, classes="description", markup=False)
            if self.changing:
                yield Checkbox("Also share records made before today in newly chosen categories",
                               value=False, id="include-earlier")
            yield Static("", id="consent-error", markup=False)
        with Horizontal(id="consent-buttons"):
            yield Button("Save my choices" if self.changing else "I agree", variant="primary", id="accept")
            yield Button("Cancel" if self.changing else "Decline", id="decline")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#consent-text").focus()

    def chosen(self) -> list[str]:
        return [name for name in self.protocol.categories if self.query_one(f"#cat-{name}", Checkbox).value]

    @on(Button.Pressed, "#accept")
    def _accept(self) -> None:
        self.action_accept()

    @on(Button.Pressed, "#decline")
    def _decline(self) -> None:
        self.action_decline()

    def action_accept(self) -> None:
        error = self.query_one("#consent-error", Static)
        try:
            if self.changing:
                earlier = self.query_one("#include-earlier", Checkbox).value
                record = self.consent.change_categories(self.protocol, self.chosen(), include_earlier=earlier)
            else:
                record = self.consent.grant(self.protocol, self.chosen(), shown_text=self.document.text)
        except ConsentError as exc:
            error.update(str(exc))
            error.add_class("visible")
            return
        self.dismiss(record)

    def action_decline(self) -> None:
        self.dismiss(None)
