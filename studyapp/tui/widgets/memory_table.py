"""The table of the participant's attributes on the memory screen."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from rich.text import Text
from textual.widgets import DataTable

from studyapp.personalize.memory import AttributeRow

LABEL_TEXT = {
    "makes_sense": "makes sense",
    "maybe": "maybe",
    "doesnt_make_sense": "doesn't make sense",
    None: "–",
}
ORIGIN_TEXT = {"model": "assistant", "participant": "you"}


def origin_text(origin: str, *, edited: bool) -> str:
    """Who wrote the attribute: the assistant's wording the participant changed is theirs too."""
    text = ORIGIN_TEXT.get(origin, origin)
    return f"{text}, edited by you" if edited and origin != "participant" else text


class MemoryTable(DataTable[str | Text]):
    """One row per attribute, keyed by its id, so the cursor stays on the same attribute across refreshes."""

    # Fixed widths for the free-text columns: long statements are cut with an ellipsis here and shown whole
    # when the attribute is opened, instead of making the table scroll sideways.
    COLUMNS = (("attribute", "Attribute", 48), ("reason", "Reason", 34), ("confidence", "Confidence", None),
               ("origin", "Origin", None), ("age", "Age", None), ("label", "Your label", None))

    def __init__(self, **kwargs: object) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)  # type: ignore[arg-type]

    def on_mount(self) -> None:
        for key, label, width in self.COLUMNS:
            self.add_column(label, key=key, width=width)

    def show_rows(self, rows: Sequence[AttributeRow]) -> None:
        current = self.current_id
        self.clear()
        now = datetime.now(UTC)
        for row in rows:
            self.add_row(
                Text(row.text, overflow="ellipsis", no_wrap=True),
                Text(row.reason, overflow="ellipsis", no_wrap=True),
                f"{row.confidence:.2f}",
                origin_text(row.origin, edited=row.edited),
                row.age(now),
                LABEL_TEXT.get(row.label, row.label or "–"),
                key=row.id,
            )
        if current is not None and current in {r.id for r in rows}:
            self.move_cursor(row=self.get_row_index(current))

    @property
    def current_id(self) -> str | None:
        """The id of the attribute under the cursor (None when the table is empty)."""
        if self.row_count == 0:
            return None
        try:
            key, _ = self.coordinate_to_cell_key(self.cursor_coordinate)
        except Exception:  # no valid cursor position (e.g. right after clear)
            return None
        return key.value
