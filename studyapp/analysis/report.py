"""An ``Analysis`` as a report: one self-contained HTML file, or Markdown with its charts as PNG files beside it.

Beside the report, whatever the format, every table is also a CSV file with all its rows:
``<report stem>_tables/<table key>.csv``. Markdown links its charts as ``<report stem>_charts/<chart key>.png``;
HTML embeds them as base64 PNG, so the one file opens anywhere without a network (inline CSS, no fonts, no
scripts; its Content-Security-Policy forbids fetching anything).

Everything that comes from the data (participant ids, model names, titles) is escaped. Charts are drawn with
matplotlib's Agg canvas directly (no pyplot, no GUI backend, no global figure state).
"""

from __future__ import annotations

import base64
import html
import io
import math
import numbers
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from studyapp.analysis.model import Analysis, Chart, Figure, Item, NotAvailable, Section, Table

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes

FORMATS = ("html", "md")
# A report shows at most this many rows of a table; the CSV beside it always has them all.
MAX_TABLE_ROWS = 100
# A figure is a share (shown as a percentage) when a word of its key or label says so and its value is in [0, 1].
SHARE_WORDS = frozenset({"share", "rate", "proportion", "fraction", "percent", "percentage", "pct", "precision",
                         "recall", "acceptance"})


@dataclass(frozen=True)
class ReportFiles:
    report: Path
    tables: dict[str, Path] = field(default_factory=dict)  # table key -> CSV
    charts: dict[str, Path] = field(default_factory=dict)  # chart key -> PNG (Markdown only)

    @property
    def paths(self) -> list[Path]:
        return [self.report, *self.tables.values(), *self.charts.values()]


def write_report(analysis: Analysis, out: Path, fmt: str = "html", *, now: datetime | None = None) -> ReportFiles:
    """Write ``analysis`` to ``out`` (a folder: ``out/report.<fmt>``) with its tables as CSV; return the paths."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown report format {fmt!r}; choose one of {', '.join(FORMATS)}")
    out = Path(out)
    if out.is_dir():
        out = out / f"report.{fmt}"
    out.parent.mkdir(parents=True, exist_ok=True)
    made = (now or datetime.now(UTC)).astimezone(UTC)
    names = _file_names(analysis)
    tables = _write_tables(analysis, out, names)
    if fmt == "html":
        out.write_text(_html(analysis, made, out, names), encoding="utf-8")
        return ReportFiles(out, tables)
    charts = _write_charts(analysis, out, names)
    out.write_text(_markdown(analysis, made, out, names, charts), encoding="utf-8")
    return ReportFiles(out, tables, charts)


# Files beside the report ---------------------------------------------------------------------------------


def tables_dir(out: Path) -> Path:
    return out.with_name(f"{out.stem}_tables")


def charts_dir(out: Path) -> Path:
    return out.with_name(f"{out.stem}_charts")


def _file_names(analysis: Analysis) -> dict[int, str]:
    """A safe, unique file stem for every table and chart (by object id): keys come from code, but a path never
    trusts them, and two items with the same key must not overwrite each other's file."""
    names: dict[int, str] = {}
    taken: set[str] = set()
    for item in _items(analysis):
        if isinstance(item, Table | Chart):
            stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", item.key).strip("._") or "item"
            candidate, n = stem, 2
            while candidate.lower() in taken:
                candidate, n = f"{stem}-{n}", n + 1
            taken.add(candidate.lower())
            names[id(item)] = candidate
    return names


def _items(analysis: Analysis) -> list[Item]:
    return [item for section in analysis.sections for item in section.items]


def _fresh_dir(path: Path, suffix: str) -> None:
    # Files of an earlier run would pass for tables of this analysis: the folder is the report's own.
    path.mkdir(parents=True, exist_ok=True)
    for old in path.glob(f"*{suffix}"):
        old.unlink()


def _write_tables(analysis: Analysis, out: Path, names: dict[int, str]) -> dict[str, Path]:
    folder = tables_dir(out)
    _fresh_dir(folder, ".csv")
    written: dict[str, Path] = {}
    for item in _items(analysis):
        if isinstance(item, Table):
            path = folder / f"{names[id(item)]}.csv"
            item.frame.to_csv(path, index=_has_index(item.frame))
            written[item.key] = path
    if not written:
        folder.rmdir()
    return written


def _write_charts(analysis: Analysis, out: Path, names: dict[int, str]) -> dict[str, Path]:
    folder = charts_dir(out)
    _fresh_dir(folder, ".png")
    written: dict[str, Path] = {}
    for item in _items(analysis):
        if isinstance(item, Chart) and _has_data(item):
            path = folder / f"{names[id(item)]}.png"
            path.write_bytes(chart_png(item))
            written[item.key] = path
    if not written:
        folder.rmdir()
    return written


def _has_index(frame: pd.DataFrame) -> bool:
    """Whether the frame's index carries data (a named or non-default index), so it belongs in the output."""
    import pandas as pd

    index = frame.index
    return not (isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1 and index.name is None)


# Numbers -------------------------------------------------------------------------------------------------


def is_share(figure: Figure) -> bool:
    if figure.unit:
        return figure.unit == "share"
    words = set(re.findall(r"[a-z]+", f"{figure.key} {figure.label}".lower()))
    values = [figure.value, *(figure.ci or ())]
    return bool(words & SHARE_WORDS) and all(v is None or 0 <= v <= 1 for v in values)


def format_number(value: Any) -> str:
    """Rounded for reading: whole numbers with thousands separators, else 3 significant digits (2 decimals from 1
    to 100); the CSV keeps full precision."""
    import numpy as np

    if value is None or (isinstance(value, numbers.Real) and math.isnan(value)):
        return "–"
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        return str(value)
    if float(value).is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def format_share(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f}%"


def figure_value(figure: Figure) -> str:
    return format_share(figure.value) if is_share(figure) else format_number(figure.value)


def figure_ci(figure: Figure) -> str:
    if figure.ci is None:
        return ""
    fmt: Callable[[Any], str] = format_share if is_share(figure) else format_number
    low, high = figure.ci
    return f"95% CI {fmt(low)} to {fmt(high)}"


def n_line(n_items: int, n_participants: int) -> str:
    items = "item" if n_items == 1 else "items"
    participants = "participant" if n_participants == 1 else "participants"
    return f"n = {n_items:,} {items}, {n_participants:,} {participants}"


def _cell(value: Any) -> str:
    import numpy as np
    import pandas as pd

    if pd.api.types.is_scalar(value) and pd.isna(value):
        return ""
    if isinstance(value, np.generic):
        value = value.item()
    return format_number(value) if isinstance(value, int | float) and not isinstance(value, bool) else str(value)


def _shown(frame: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The rows a report shows, and a line saying how many were left to the CSV."""
    if len(frame) <= MAX_TABLE_ROWS:
        return frame, ""
    return frame.head(MAX_TABLE_ROWS), f"The first {MAX_TABLE_ROWS:,} of {len(frame):,} rows; the CSV has them all."


def _made(made: datetime) -> str:
    return made.strftime("%Y-%m-%d %H:%M UTC")


# Charts --------------------------------------------------------------------------------------------------


def _has_data(chart: Chart) -> bool:
    return not chart.frame.empty


def _mpl_text(text: Any) -> str:
    # matplotlib reads "$...$" as mathematics; a model name or id with a dollar sign must stay text.
    return str(text).replace("$", r"\$")


def _numbers(frame: pd.DataFrame, column: str) -> pd.Series:
    import pandas as pd

    return pd.to_numeric(frame[column], errors="coerce")


def _tick_step(n: int) -> int:
    return max(1, math.ceil(n / 30))  # at most ~30 labels on an axis stay readable


def _draw_bar(ax: Axes, chart: Chart) -> None:
    import numpy as np

    labels = [_mpl_text(v) for v in chart.frame[chart.x]]
    positions = np.arange(len(labels))
    width = 0.8 / max(1, len(chart.y))
    for i, column in enumerate(chart.y):
        offset = (i - (len(chart.y) - 1) / 2) * width
        ax.bar(positions + offset, _numbers(chart.frame, column).fillna(0), width, label=_mpl_text(column))
    step = _tick_step(len(labels))
    ax.set_xticks(positions[::step], labels[::step])
    if len(labels) > 8 or any(len(label) > 10 for label in labels):
        ax.tick_params(axis="x", labelrotation=45)
        for label in ax.get_xticklabels():
            label.set_horizontalalignment("right")


def _draw_line(ax: Axes, chart: Chart) -> None:
    import pandas as pd
    from matplotlib.ticker import MaxNLocator

    x = chart.frame[chart.x]
    for column in chart.y:
        ax.plot(x, _numbers(chart.frame, column), marker="o" if len(x) <= 60 else None, label=_mpl_text(column))
    if pd.api.types.is_integer_dtype(x.dtype):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # study days and weeks are whole numbers
    values = pd.concat([_numbers(chart.frame, column) for column in chart.y]).dropna()
    if "share" in f"{chart.title} {chart.y_label}".lower() and len(values) and values.between(0, 1).all():
        # A share on its whole scale: autoscaling would blow 100% every day up into a wobble around 1.
        from matplotlib.ticker import PercentFormatter

        ax.set_ylim(0, 1.05)
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))


def _draw_hist(ax: Axes, chart: Chart) -> None:
    """The distribution of each ``y`` column (of ``x`` when there is none); whole numbers get one bar each."""
    import numpy as np
    from matplotlib.ticker import MaxNLocator

    columns = chart.y or (chart.x,)
    series = [_numbers(chart.frame, c).dropna() for c in columns]
    values = np.concatenate([s.to_numpy(dtype=float) for s in series]) if series else np.array([])
    if values.size == 0:
        return
    if np.all(np.mod(values, 1) == 0) and values.max() - values.min() <= 30:
        bins: Any = np.arange(values.min() - 0.5, values.max() + 1.5)
    else:
        bins = min(40, max(5, int(math.sqrt(values.size))))
    ax.hist([s.to_numpy(dtype=float) for s in series], bins=bins, rwidth=0.9,
            label=[_mpl_text(c) for c in columns])
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # counts


DRAW: dict[str, Callable[[Axes, Chart], None]] = {"bar": _draw_bar, "line": _draw_line, "hist": _draw_hist}


def chart_png(chart: Chart) -> bytes:
    """The chart as PNG bytes, drawn on matplotlib's Agg canvas (no display, no pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure as MplFigure

    if chart.kind not in DRAW:
        raise ValueError(f"chart {chart.key!r}: unknown kind {chart.kind!r}; one of {', '.join(DRAW)}")
    fig = MplFigure(figsize=(7, 3.8), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    DRAW[chart.kind](ax, chart)
    ax.set_title(_mpl_text(chart.title))
    ax.set_xlabel(_mpl_text(chart.x_label or chart.x))
    ax.set_ylabel(_mpl_text(chart.y_label or ("count" if chart.kind == "hist" else "")))
    if len(chart.y) > 1:
        ax.legend()
    buf = io.BytesIO()
    # No "Software" stamp: the same analysis gives the same bytes.
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


# HTML ----------------------------------------------------------------------------------------------------

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2rem auto; max-width: 64rem;
       padding: 0 1rem; color: #1b1f24; line-height: 1.45; }
h1 { margin-bottom: .2rem; } h2 { border-bottom: 1px solid #d0d7de; padding-bottom: .2rem; margin-top: 2.4rem; }
.meta, .n, .note, .more { color: #57606a; font-size: .9rem; }
.notes { background: #fff8c5; border: 1px solid #e3c94c; padding: .6rem 1rem .6rem 2rem; }
.figures { display: flex; flex-wrap: wrap; gap: .8rem; }
.figure { border: 1px solid #d0d7de; border-radius: 6px; padding: .6rem .9rem; min-width: 14rem; flex: 1 1 14rem; }
.figure .label { font-weight: 600; } .figure .value { font-size: 1.6rem; font-variant-numeric: tabular-nums; }
.na { color: #57606a; font-style: italic; margin: .4rem 0; } .na .label { font-style: normal; font-weight: 600; }
table { border-collapse: collapse; font-size: .88rem; font-variant-numeric: tabular-nums; margin: .4rem 0; }
th, td { border: 1px solid #d0d7de; padding: .2rem .5rem; text-align: left; vertical-align: top; }
th { background: #f6f8fa; } .table-wrap { overflow-x: auto; }
img { max-width: 100%; height: auto; } figure { margin: 1rem 0; }
nav ol { columns: 2; }
"""
# Nothing may be fetched: images are data: URLs, the style is inline.
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _paragraphs(text: str, css: str = "") -> str:
    cls = f' class="{css}"' if css else ""
    return "".join(f"<p{cls}>{_e(p.strip())}</p>" for p in text.split("\n\n") if p.strip())


def _html(analysis: Analysis, made: datetime, out: Path, names: dict[int, str]) -> str:
    head = (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{_e(analysis.title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n")
    parts = [head, f"<header>\n<h1>{_e(analysis.title)}</h1>\n",
             f'<p class="meta">From <code>{_e(analysis.source or "an unnamed source")}</code>; made {_made(made)}.'
             f"</p>\n"]
    if analysis.notes:
        parts.append('<ul class="notes">' + "".join(f"<li>{_e(n)}</li>" for n in analysis.notes) + "</ul>\n")
    if len(analysis.sections) > 1:
        parts.append("<nav><ol>" + "".join(f'<li><a href="#{_anchor(s)}">{_e(s.title)}</a></li>'
                                           for s in analysis.sections) + "</ol></nav>\n")
    parts.append("</header>\n")
    parts.extend(_html_section(s, out, names) for s in analysis.sections)
    parts.append("</body>\n</html>\n")
    return "".join(parts)


def _anchor(section: Section) -> str:
    return "s-" + re.sub(r"[^A-Za-z0-9_-]+", "-", section.key)


def _html_section(section: Section, out: Path, names: dict[int, str]) -> str:
    parts = [f'<section id="{_anchor(section)}">\n<h2>{_e(section.title)}</h2>\n', _paragraphs(section.intro)]
    figures: list[str] = []
    for item in section.items:
        if isinstance(item, Figure):
            figures.append(_html_figure(item))
            continue
        if figures:  # consecutive figures share one row of cards
            parts.append('<div class="figures">' + "".join(figures) + "</div>\n")
            figures = []
        parts.append(_html_item(item, out, names))
    if figures:
        parts.append('<div class="figures">' + "".join(figures) + "</div>\n")
    parts.append("</section>\n")
    return "".join(parts)


def _html_item(item: Item, out: Path, names: dict[int, str]) -> str:
    if isinstance(item, Table):
        return _html_table(item, out, names)
    if isinstance(item, Chart):
        return _html_chart(item)
    if isinstance(item, NotAvailable):
        return f'<p class="na" id="{_e(item.key)}"><span class="label">{_e(item.label)}</span>: {_e(item)}</p>\n'
    raise TypeError(f"not an analysis item: {item!r}")


def _html_figure(figure: Figure) -> str:
    ci = figure_ci(figure)
    return (f'<div class="figure" id="{_e(figure.key)}"><div class="label">{_e(figure.label)}</div>'
            f'<div class="value">{_e(figure_value(figure))}</div>'
            + (f'<div class="ci">{_e(ci)}</div>' if ci else "")
            + f'<div class="n">{_e(n_line(figure.n_items, figure.n_participants))}</div>'
            + (f'<div class="note">{_e(figure.note)}</div>' if figure.note else "")
            + "</div>")


def _html_table(table: Table, out: Path, names: dict[int, str]) -> str:
    shown, more = _shown(table.frame)
    body = shown.to_html(index=_has_index(shown), escape=True, na_rep="", border=0, float_format=format_number)
    csv = f"{tables_dir(out).name}/{names[id(table)]}.csv"
    return (f'<div class="table" id="{_e(table.key)}">\n<h3>{_e(table.title)}</h3>\n'
            f'<div class="table-wrap">{body}</div>\n'
            f'<p class="n">{_e(n_line(table.n_items, table.n_participants))}; all rows in '
            f'<a href="{_e(quote(csv))}">{_e(csv)}</a>.</p>\n'
            + (f'<p class="more">{_e(more)}</p>\n' if more else "")
            + (_paragraphs(table.note, "note") if table.note else "")
            + "</div>\n")


def _html_chart(chart: Chart) -> str:
    n = _e(n_line(chart.n_items, chart.n_participants))
    if not _has_data(chart):
        return f'<div class="chart" id="{_e(chart.key)}"><h3>{_e(chart.title)}</h3><p class="na">No data to chart.' \
               f'</p><p class="n">{n}</p></div>\n'
    data = base64.b64encode(chart_png(chart)).decode("ascii")
    return (f'<figure class="chart" id="{_e(chart.key)}"><h3>{_e(chart.title)}</h3>'
            f'<img alt="{_e(chart.title)}" src="data:image/png;base64,{data}">'
            f'<figcaption class="n">{n}</figcaption></figure>\n')


# Markdown ------------------------------------------------------------------------------------------------

_MD_SPECIAL = re.compile(r"([\\`*_\[\]|#])")


def md_text(text: Any) -> str:
    """Text from the data as Markdown that renders as that text: no markup, no raw HTML, one line."""
    escaped = html.escape(" ".join(str(text).split()), quote=False)
    return _MD_SPECIAL.sub(r"\\\1", escaped)


def _markdown(analysis: Analysis, made: datetime, out: Path, names: dict[int, str], charts: dict[str, Path]) -> str:
    lines = [f"# {md_text(analysis.title)}", "",
             f"From {md_text(analysis.source or 'an unnamed source')}; made {_made(made)}.", ""]
    if analysis.notes:
        lines += [*(f"- {md_text(n)}" for n in analysis.notes), ""]
    for section in analysis.sections:
        lines += [f"## {md_text(section.title)}", ""]
        lines += [line for p in section.intro.split("\n\n") if p.strip() for line in (md_text(p), "")]
        for item in section.items:
            lines += _md_item(item, out, names, charts)
    return "\n".join(lines).rstrip() + "\n"


def _md_item(item: Item, out: Path, names: dict[int, str], charts: dict[str, Path]) -> list[str]:
    if isinstance(item, Figure):
        ci = figure_ci(item)
        text = f"- **{md_text(item.label)}**: {md_text(figure_value(item))}"
        text += f" ({ci})" if ci else ""
        text += f"; {n_line(item.n_items, item.n_participants)}."
        text += f" {md_text(item.note)}" if item.note else ""
        return [text, ""]
    if isinstance(item, NotAvailable):
        return [f"- **{md_text(item.label)}**: *{md_text(item)}*", ""]
    if isinstance(item, Table):
        return _md_table(item, out, names)
    if isinstance(item, Chart):
        n = n_line(item.n_items, item.n_participants)
        if item.key not in charts:
            return [f"### {md_text(item.title)}", "", f"No data to chart; {n}.", ""]
        link = f"{charts_dir(out).name}/{charts[item.key].name}"
        return [f"### {md_text(item.title)}", "", f"![{md_text(item.title)}]({quote(link)})", "", f"{n}.", ""]
    raise TypeError(f"not an analysis item: {item!r}")


def _md_table(table: Table, out: Path, names: dict[int, str]) -> list[str]:
    shown, more = _shown(table.frame)
    frame = shown.reset_index() if _has_index(shown) else shown
    header = [md_text(c) for c in frame.columns]
    rows = [[md_text(_cell(v)) for v in row] for row in frame.itertuples(index=False, name=None)]
    csv = f"{tables_dir(out).name}/{names[id(table)]}.csv"
    lines = [f"### {md_text(table.title)}", "", "| " + " | ".join(header) + " |",
             "|" + "|".join("---" for _ in header) + "|", *("| " + " | ".join(r) + " |" for r in rows), "",
             f"{n_line(table.n_items, table.n_participants)}; all rows in [{md_text(csv)}]({quote(csv)})."]
    if more:
        lines.append(md_text(more))
    if table.note:
        lines += ["", md_text(table.note)]
    return [*lines, ""]
