"""The dashboard's HTML: one self-contained page (inline CSS, no scripts, nothing loaded from elsewhere).

Everything that comes from data is escaped here, also ids and reasons: a participant's app chose some of them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from html import escape
from typing import TYPE_CHECKING

from studyapp.analysis.model import Chart, Figure, Item, NotAvailable, Table
from studyapp.server.dashboard_data import STOPPED_RULE, WEEK_RULE

if TYPE_CHECKING:
    from studyapp.server.dashboard_data import Overview

CSS = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 76rem; padding: 1rem 1.5rem; color: #1d232a; }
h1 { font-size: 1.5rem; margin: 0.2rem 0; } h2 { font-size: 1.15rem; margin: 1.8rem 0 0.5rem; }
header { display: flex; justify-content: space-between; align-items: flex-start; gap: 1rem;
         border-bottom: 1px solid #d5dbe1; padding-bottom: 0.6rem; }
.muted, .rule { color: #56606b; } .rule { font-size: 0.9rem; margin: 0.3rem 0 0.6rem; }
.summary { display: flex; flex-wrap: wrap; gap: 0.6rem; list-style: none; padding: 0; margin: 0.5rem 0; }
.summary li { background: #f1f4f7; border-radius: 6px; padding: 0.4rem 0.8rem; }
.summary b { font-size: 1.2rem; margin-right: 0.25rem; }
table { border-collapse: collapse; width: 100%; font-size: 0.9rem; }
th, td { text-align: left; padding: 0.3rem 0.5rem; border-bottom: 1px solid #e3e7eb; vertical-align: top; }
th { background: #f1f4f7; font-weight: 600; } td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.id { font-family: ui-monospace, monospace; font-size: 0.85rem; }
td.reason { overflow-wrap: anywhere; } td.time { white-space: nowrap; }
tr.stopped td { background: #fff4e0; } .status-stopped { color: #9a5b00; font-weight: 600; }
form.login { display: flex; flex-direction: column; gap: 0.5rem; max-width: 24rem; margin-top: 1rem; }
input { font: inherit; padding: 0.4rem; } button { font: inherit; padding: 0.35rem 0.9rem; cursor: pointer; }
.error { color: #a40e26; font-weight: 600; }
"""


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _page(title: str, body: str) -> str:
    return ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{_e(title)}</title><style>{CSS}</style></head>\n<body>\n{body}\n</body></html>\n")


def _time(value: str | None) -> str:
    """A stored UTC time for reading (to the minute); anything unexpected is shown as it is."""
    if not value:
        return "never"
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        return value
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _table(table_id: str, head: Sequence[tuple[str, str]], rows: Iterable[str], empty: str) -> str:
    """A table whose header cells are (label, css class); ``rows`` are ready-made <tr> elements."""
    body = "\n".join(rows)
    if not body:
        return f'<p class="muted" id="{table_id}-empty">{_e(empty)}</p>'
    cells = "".join(f'<th class="{c}">{_e(label)}</th>' for label, c in head)
    return f'<table id="{table_id}"><thead><tr>{cells}</tr></thead><tbody>\n{body}\n</tbody></table>'


def _td(col: str, value: object, css: str = "") -> str:
    return f'<td data-col="{col}" class="{css}">{_e(value)}</td>'


def login_page(home: str, message: str = "") -> str:
    """The login form; it never holds a token (the field starts empty, also after a wrong one)."""
    error = f'<p class="error" role="alert" id="login-error">{_e(message)}</p>' if message else ""
    return _page("Study dashboard: log in", f"""<h1>Study dashboard</h1>
<p class="muted">Researchers only: log in with the researcher token <code>studyapp-server init</code> printed.</p>
{error}
<form class="login" method="post" action="{_e(home)}/login">
<label for="token">Researcher token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
<button type="submit" id="login">Log in</button>
</form>""")


def _participant_rows(overview: Overview) -> list[str]:
    rows = []
    for p in overview.participants:
        status = "stopped" if p.stopped else "active"
        rows.append(
            f'<tr class="{status}" data-participant="{_e(p.participant_id)}">'
            + _td("participant_id", p.participant_id, "id") + _td("enrolled_at", _time(p.enrolled_at), "time")
            + _td("last_upload_at", _time(p.last_upload_at), "time") + _td("days_active", p.days_active, "num")
            + _td("study_week", p.study_week, "num") + _td("rated_this_week", p.rated_this_week, "num")
            + _td("rated", p.rated, "num") + _td("events", p.events, "num") + _td("rejected", p.rejected, "num")
            + _td("status", status, f"status-{status}") + "</tr>")
    return rows


def _enrollment(overview: Overview) -> str:
    codes = overview.codes
    summary = (f'<ul class="summary"><li><b id="enrolled-count">{len(overview.participants)}</b>taking part</li>'
               f'<li><b id="stopped-count">{overview.stopped}</b>stopped</li>'
               f'<li><b id="withdrawn-count">{len(overview.withdrawn)}</b>withdrawn</li>'
               f'<li><b>{codes["used"]}</b>of {codes["total"]} enrollment codes used</li>'
               + "".join(f'<li><b id="condition-{_e(name)}">{n}</b>in condition {_e(name)}</li>'
                         for name, n in overview.by_condition.items()) + '</ul>')
    head = [("Participant", ""), ("Enrolled", ""), ("Last upload", ""), ("Days active", "num"),
            ("Study week", "num"), ("Rated this week", "num"), ("Rated in all", "num"), ("Events stored", "num"),
            ("Rejected", "num"), ("Status", "")]
    table = _table("participants", head, _participant_rows(overview), "No participant has enrolled yet.")
    return (f'<section id="enrollment"><h2>Enrollment and compliance</h2>{summary}'
            f'<p class="rule" id="stopped-rule">{_e(STOPPED_RULE)} {_e(WEEK_RULE)} Last upload: when the server '
            f'last stored an event from the participant.</p>\n{table}</section>')


def _upload_health(overview: Overview) -> str:
    senders = len({p.participant_id for p in overview.participants if p.rejected})
    rows = [f"<tr>{_td('reason', r.reason, 'reason')}{_td('kind', r.kind)}{_td('events', r.events, 'num')}"
            f"{_td('participants', r.participants, 'num')}{_td('last_at', _time(r.last_at), 'time')}</tr>"
            for r in overview.reasons]
    head = [("Reason", ""), ("Kind", ""), ("Events", "num"), ("Participants", "num"), ("Last", "")]
    return (f'<section id="upload-health"><h2>Upload health</h2>'
            f'<p><b id="rejected-total">{overview.rejected}</b> events rejected, from '
            f'<b id="rejected-participants">{senders}</b> {"participant" if senders == 1 else "participants"} '
            '(withdrawn participants\' counts are deleted '
            'with their data). The apps keep rejected events with the reason; a reason that keeps coming back points '
            'at a bug in an app version.</p>\n'
            + _table("rejections", head, rows, "No event has been rejected.") + "</section>")


def _model_usage(overview: Overview) -> str:
    rows = [f"<tr>{_td('day', u.day)}{_td('role', u.role)}{_td('model', u.model)}{_td('requests', u.requests, 'num')}"
            f"{_td('prompt_tokens', u.prompt_tokens, 'num')}{_td('completion_tokens', u.completion_tokens, 'num')}"
            f"{_td('errors', u.errors, 'num')}{_td('latency_ms_mean', u.latency_ms_mean, 'num')}"
            f"{_td('latency_ms_max', u.latency_ms_max, 'num')}</tr>" for u in overview.usage]
    head = [("Day (UTC)", ""), ("Role", ""), ("Model", ""), ("Requests", "num"), ("Prompt tokens", "num"),
            ("Completion tokens", "num"), ("Errors", "num"), ("Mean ms", "num"), ("Max ms", "num")]
    budgets = ""
    if overview.limits is not None:
        budgets = (f" Budgets per participant: {overview.limits[0]} tokens per UTC day, {overview.limits[1]} "
                   "requests per minute.")
    return ('<section id="model-usage"><h2>Study models</h2>'
            '<p class="rule">Requests relayed by the model gateway (/llm/v1), over all participants: counts and '
            'timings only, never a prompt or an answer; withdrawn participants\' counts are deleted with their data.'
            f'{_e(budgets)}</p>\n'
            + _table("usage", head, rows, "No participant has used the study's models yet.") + "</section>")


def _withdrawn(overview: Overview) -> str:
    rows = [f"<tr>{_td('participant_id', w.participant_id, 'id')}"
            f"{_td('withdrawn_at', _time(w.withdrawn_at), 'time')}</tr>" for w in overview.withdrawn]
    return ('<section id="withdrawn"><h2>Withdrawn participants</h2>'
            '<p class="rule">Only a tombstone is kept: every record of theirs was deleted, so they appear nowhere '
            'else on this page or in exports.</p>\n'
            + _table("withdrawals", [("Participant", ""), ("Withdrawn", "")], rows, "Nobody has withdrawn.")
            + "</section>")


def _figure_row(key: str, item: Item | None) -> str:
    # The report's own formatting (shares as percentages), so the page and the report read alike.
    from studyapp.analysis.report import figure_ci, figure_value

    if isinstance(item, Figure):
        value = "not computable: see why under Rests on" if item.value is None else figure_value(item)
        ci = figure_ci(item).removeprefix("95% CI ")
        basis = f"{item.n_items} items, {item.n_participants} participants" + (f"; {item.note}" if item.note else "")
        cells = _td("value", value, "num") + _td("ci", ci) + _td("basis", basis)
        label = item.label
    elif isinstance(item, NotAvailable):
        label, cells = item.label, _td("value", str(item)) + _td("ci", "") + _td("basis", "")
    elif isinstance(item, Table | Chart):
        label, cells = item.title, _td("value", "a table or chart: see the report") + _td("ci", "") + _td("basis", "")
    else:
        label, cells = key, _td("value", "not in this analysis") + _td("ci", "") + _td("basis", "")
    return f'<tr data-key="{_e(key)}">{_td("label", label)}{cells}</tr>'


def _headline(figures: list[tuple[str, Item | None]] | str) -> str:
    if isinstance(figures, str):
        body = f'<p class="muted" id="headline-message">{_e(figures)}</p>'
    else:
        head = [("Figure", ""), ("Value", "num"), ("95% CI", ""), ("Rests on", "")]
        body = _table("headline-figures", head, [_figure_row(k, item) for k, item in figures],
                      "The analysis names no headline figures.")
    return ('<section id="headline"><h2>Headline figures</h2>'
            '<p class="rule">The report\'s headline figures, computed from the live database as an export would '
            'give them.</p>\n' + body + "</section>")


def dashboard_page(overview: Overview, figures: list[tuple[str, Item | None]] | str, researcher: str, *,
                   home: str) -> str:
    study = overview.study
    header = (f'<header><div><h1>{_e(study["title"])}</h1><p class="muted">Study <code>{_e(study["id"])}</code>, '
              f'protocol version {_e(study["version"])}. As of <span id="generated-at">'
              f'{_e(overview.generated_at.strftime("%Y-%m-%d %H:%M:%S UTC"))}</span>; reload for fresh numbers.</p>'
              f'</div><form method="post" action="{_e(home)}/logout"><span class="muted">{_e(researcher)}</span> '
              '<button type="submit" id="logout">Log out</button></form></header>')
    body = "\n".join([header, _enrollment(overview), _upload_health(overview), _model_usage(overview),
                      _withdrawn(overview), _headline(figures)])
    return _page(f"Study dashboard: {study['title']}", body)
