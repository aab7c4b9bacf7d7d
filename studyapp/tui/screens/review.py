"""The "what will be sent" screen: every item waiting in the outbox, exactly as it will be uploaded.

A standalone screen: it gets a ``ReviewService`` (studyapp.privacy.review) and dismisses with the
outbox counts when closed. Items are listed by day and kind; the highlighted item's payload is shown
in full, exactly as it will be uploaded, with its placeholders highlighted (a comparison or a relevance
answer first as the participant saw it: ``ReviewService.as_seen``), and below it what was
replaced: each placeholder, its type and count, and the value it stands for, read from the local
mapping (the participant's own text; shown here only, never sent or logged), so a name the scrubber
missed is plain to see and can be fixed with t before upload.

Keys: a approve, A approve all pending, w withhold, c withhold the item's whole conversation, t add an
always-remove term (then re-scrub), r re-scrub, Esc close. Re-scrubbing runs in a worker thread so the
screen stays responsive.
"""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Label, Static

from studyapp.events import TEXT_FIELDS
from studyapp.privacy.anonymize import PLACEHOLDER
from studyapp.privacy.review import Found, ReviewService, preview, summary
from studyapp.store.outbox import OutboxEvent
from studyapp.tui.screens.dialogs import PromptScreen

HELP = ("a approve · A approve all · w withhold · c withhold conversation · t add a term to always remove · "
        "r re-scrub · Esc close")
EMPTY = "Nothing is waiting to be sent."
PLACEHOLDER_STYLE = "bold $text-accent on $accent-muted"
# How to fix a miss, under every item with text: the one thing to do when a detail is still readable.
FIX_HINT = ("Still see a name, place or employer in the text? Press t and type it: it is replaced in this and "
            "every waiting item, and always removed from now on.")
# Placeholder types in the participant's words.
TYPE_WORDS = {"PERSON": "name", "LOCATION": "place", "NRP": "group", "DATE_TIME": "date", "TERM": "your term",
              "EMAIL_ADDRESS": "e-mail", "PHONE_NUMBER": "phone", "CREDIT_CARD": "card number",
              "IBAN_CODE": "IBAN", "IP_ADDRESS": "IP address", "URL": "web address", "US_SSN": "SSN",
              "CRYPTO": "crypto wallet"}
STATUS_TEXT = {"pending": "waiting for you", "approved": "approved"}


def highlighted(text: str) -> Content:
    """The payload text as it is, with each placeholder marked."""
    content = Content(text)
    for match in PLACEHOLDER.finditer(text):
        content = content.stylize(PLACEHOLDER_STYLE, match.start(), match.end())
    return content


def found_text(event: OutboxEvent, found: list[Found]) -> Content:
    """What was replaced in the item: placeholder, type, count and the local value, then how to fix a miss."""
    if not TEXT_FIELDS.get(event.kind):
        return Content("No free text in this item.")
    if not found:
        return Content.assemble("Nothing was replaced in this item.\n\n", FIX_HINT)
    width = max(len(f.placeholder) for f in found)
    lines: list[Content | str] = [Content.styled("Replaced before upload", "bold"),
                                  " (the originals are shown only here: they never leave this computer)\n"]
    for f in found:
        kind = TYPE_WORDS.get(f.entity_type, f.entity_type.lower().replace("_", " "))
        value = " / ".join(f.values) if f.values else "(not in the mapping)"
        lines += [Content.styled(f.placeholder, PLACEHOLDER_STYLE),
                  f"{' ' * (width - len(f.placeholder))}  {kind} ×{f.count}  = {value}\n"]
    lines += ["\n", FIX_HINT]
    return Content.assemble(*lines)


class ReviewScreen(Screen[dict[str, int]]):
    CSS_PATH = "../styles/review.tcss"
    BINDINGS = [
        Binding("escape", "close", "Close"),
        Binding("a", "approve", "Approve"),
        Binding("A", "approve_all", "Approve all"),
        Binding("w", "withhold", "Withhold"),
        # In the help line, not the footer: with them the footer is cut off at 80 columns.
        Binding("c", "withhold_conversation", "Withhold conversation", show=False),
        Binding("t", "add_term", "Add term"),
        Binding("r", "rescrub", "Re-scrub", show=False),
    ]

    def __init__(self, review: ReviewService) -> None:
        super().__init__()
        self.review = review

    def compose(self) -> ComposeResult:
        yield Label("What will be sent", id="review-title")
        yield Label(self._intro(), id="review-intro", markup=False)
        yield Label(HELP, id="review-help")
        with Horizontal(id="review-body"):
            yield DataTable(id="review-table", cursor_type="row", zebra_stripes=True)
            with Vertical(id="review-side"):
                with VerticalScroll(id="review-preview-box"):
                    yield Static("", id="review-preview", markup=False)
                with VerticalScroll(id="review-found-box"):
                    yield Static("", id="review-found", markup=False)
        yield Label("", id="review-counts", markup=False)
        yield Footer()

    def _intro(self) -> str:
        if self.review.review_required:
            return ("This study asks you to review uploads: nothing below leaves this computer until you approve "
                    "it. Withheld items are never sent.")
        return "These items will be sent at the next sync unless you withhold them."

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("Day", "Kind", "Status", "Content")
        self.refresh_rows()
        table.focus()

    def refresh_rows(self) -> None:
        table = self.query_one(DataTable)
        keep = self.current_id
        table.clear()
        for group in self.review.groups():
            for event in group.items:
                table.add_row(group.day, group.kind, STATUS_TEXT.get(event.status, event.status), summary(event),
                              key=event.event_id)
        if keep is not None and keep in {str(k.value) for k in table.rows}:
            table.move_cursor(row=table.get_row_index(keep))
        counts = self.review.counts()
        self.query_one("#review-counts", Label).update(
            f"{counts['pending']} waiting for you · {counts['approved']} approved · {counts['withheld']} withheld")
        self._show_preview()

    @property
    def current_id(self) -> str | None:
        table = self.query_one(DataTable)
        if table.row_count == 0:
            return None
        row_key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
        return str(row_key.value) if row_key.value is not None else None

    def _show_preview(self) -> None:
        event_id = self.current_id
        event = self.review.outbox.get(event_id) if event_id else None
        self.query_one("#review-preview", Static).update(self._preview(event) if event else EMPTY)
        self.query_one("#review-found", Static).update(found_text(event, self.review.found(event)) if event else "")

    def _preview(self, event: OutboxEvent) -> Content:
        """The item as the participant saw it (a comparison, a relevance answer), then exactly what is sent."""
        exact = highlighted(preview(event))
        seen = self.review.as_seen(event)
        if seen is None:
            return exact
        return Content.assemble(highlighted(seen), "\n\n", Content.styled("Exactly as it will be sent:", "bold"),
                                "\n", exact)

    @on(DataTable.RowHighlighted)
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_preview()

    # Actions ---------------------------------------------------------------------------------------

    def action_approve(self) -> None:
        if (event_id := self.current_id) is None:
            return
        n = self.review.approve([event_id])
        self.notify("Approved." if n else "Only items waiting for you can be approved.")
        self.refresh_rows()

    def action_approve_all(self) -> None:
        n = self.review.approve_all()
        self.notify(f"Approved {n} item{'s' if n != 1 else ''}.")
        self.refresh_rows()

    def action_withhold(self) -> None:
        if (event_id := self.current_id) is None:
            return
        if self.review.withhold([event_id]):
            self.notify("Withheld: it will not be sent.")
        else:
            self.notify("Consent records are always sent; to share less, change your categories.",
                        severity="warning")
        self.refresh_rows()

    def action_withhold_conversation(self) -> None:
        event_id = self.current_id
        event = self.review.outbox.get(event_id) if event_id else None
        conversation_id = event.payload.get("conversation_id") if event else None
        if not conversation_id:
            self.notify("This item does not belong to a conversation; use w to withhold it.", severity="warning")
            return
        n = self.review.withhold_conversation(str(conversation_id))
        self.notify(f"Withheld {n} item{'s' if n != 1 else ''} of this conversation.")
        self.refresh_rows()

    def action_add_term(self) -> None:
        def done(term: str | None) -> None:
            if term is None:
                return
            if not term.strip():
                self.notify("The term is empty: type the word or phrase to always remove.", severity="warning")
                return
            self.rescrub(term)

        self.app.push_screen(PromptScreen("A word or phrase to always remove (your name, town, employer...):"), done)

    def action_rescrub(self) -> None:
        self.rescrub(None)

    @work(thread=True, exclusive=True, group="rescrub")
    def rescrub(self, term: str | None) -> None:
        # Its own connection: the app's connection belongs to the UI thread.
        review = self.review.on_new_connection()
        try:
            if term is not None:
                changed = review.add_term(term)
                message = f"“{' '.join(term.split())}” will always be removed; {changed} waiting item(s) updated."
            else:
                changed = review.rescrub()
                message = f"Re-scrubbed: {changed} item(s) updated."
        except Exception as exc:  # shown to the participant, not raised into the app
            self.app.call_from_thread(self._after_rescrub, f"Re-scrubbing failed: {exc}", True)
            return
        finally:
            if review is not self.review:
                review.db.close()
        self.app.call_from_thread(self._after_rescrub, message, False)

    def _after_rescrub(self, message: str, failed: bool) -> None:
        self.notify(message, severity="error" if failed else "information")
        self.refresh_rows()

    def action_close(self) -> None:
        self.dismiss(self.review.counts())
