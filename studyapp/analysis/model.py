"""What an analysis is made of: figures, tables and chart data grouped in sections (no rendering here).

Every figure and table says how many items and participants it rests on. A measure the export cannot give
(an older app did not send a column) is a ``NotAvailable`` naming the column, never a guess.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class NotAvailable:
    key: str
    label: str
    needs: str  # "file.column"

    def __str__(self) -> str:
        return f"not available in this export (needs {self.needs})"


@dataclass(frozen=True)
class Figure:
    key: str
    label: str
    value: float | None  # None: nothing to compute it on (no items)
    n_items: int
    n_participants: int
    ci: tuple[float, float] | None = None  # 95% confidence interval, where the measure has one
    note: str = ""  # how it was computed, briefly (e.g. "participant-clustered bootstrap, 2,000 resamples")
    # "share": a proportion (0..1), shown as a percentage; "number": shown as it is (a mean rating, a ratio, a
    # kappa); "": the renderer decides from the words of the key and label.
    unit: str = ""


@dataclass(frozen=True)
class Table:
    key: str  # also the CSV file name beside the report
    title: str
    frame: pd.DataFrame
    n_items: int
    n_participants: int
    note: str = ""


@dataclass(frozen=True)
class Chart:
    key: str  # also the image's name
    title: str
    kind: str  # "bar", "line" or "hist"
    frame: pd.DataFrame
    x: str
    y: tuple[str, ...]  # one series per column
    x_label: str = ""
    y_label: str = ""
    n_items: int = 0
    n_participants: int = 0


Item = Figure | Table | Chart | NotAvailable


@dataclass
class Section:
    key: str
    title: str
    items: list[Item] = field(default_factory=list)
    intro: str = ""


@dataclass
class Analysis:
    title: str
    sections: list[Section]
    source: str = ""  # the export folder (or "live database")
    notes: list[str] = field(default_factory=list)  # e.g. "2 withdrawn participants excluded"

    def find(self, key: str) -> Item | None:
        for section in self.sections:
            for item in section.items:
                if item.key == key:
                    return item
        return None
