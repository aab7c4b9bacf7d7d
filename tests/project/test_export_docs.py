"""docs/ARCHITECTURE.md section 8 lists every export file and column as studyapp/server/export.py writes them.

For each file of ``RECORD_TYPES``, in order, the section has a heading "### `<file>`", bullet lines naming its consent
category and record key, and a table ``| column | type | meaning |`` with one row per column in export order. A
column added, renamed, moved or retyped in the code without the docs (or the other way round) fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from studyapp.events import CATEGORIES, EVENT_KINDS
from studyapp.server import export
from studyapp.server.validation import RECORD_KEYS

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "ARCHITECTURE.md"
SECTION = "## 8. Export contract"
# export.py's column types as the docs name them.
TYPE_NAMES = {export.S: "string", export.F: "float", export.INT: "integer", export.B: "boolean",
              export.L: "list of strings"}
HEADER = ["column", "type", "meaning"]
SINCE = "(since 2)"
FILE_HEADING = re.compile(r"^### `([a-z_]+)`\s*$")


def section(text: str) -> list[str]:
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith(SECTION)]
    assert len(starts) == 1, f"{DOC.name} needs exactly one heading starting {SECTION!r}"
    start = starts[0] + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("## ")), len(lines))
    return lines[start:end]


def cells(line: str) -> list[str]:
    assert line.startswith("|") and line.endswith("|"), f"not a table row: {line!r}"
    return [c.strip() for c in line[1:-1].split("|")]


def parse(lines: list[str]) -> dict[str, dict]:
    """file -> {"bullets": [...], "columns": [(column, type, meaning)]}, in the order of the headings."""
    files: dict[str, dict] = {}
    current: dict | None = None
    for line in lines:
        if line.startswith("### "):
            match = FILE_HEADING.match(line)
            assert match, f"a subsection of section 8 is one export file, headed ### `file`: {line!r}"
            assert match[1] not in files, f"file {match[1]} is documented twice"
            current = files[match[1]] = {"bullets": [], "table": []}
        elif current is None:
            assert not line.startswith("|"), f"a column table before the first file heading: {line!r}"
        elif line.startswith("- "):
            current["bullets"].append(line)
        elif line.startswith("  ") and current["bullets"] and not current["table"]:
            current["bullets"][-1] += " " + line.strip()
        elif line.startswith("|"):
            current["table"].append(line)
    for name, doc in files.items():
        table = doc.pop("table")
        assert len(table) >= 2, f"{name}: no column table"
        assert cells(table[0]) == HEADER, f"{name}: the table's header must be | column | type | meaning |"
        assert set("".join(cells(table[1]))) <= set("-:"), f"{name}: the header's separator row is missing"
        rows = [cells(line) for line in table[2:]]
        for row in rows:
            assert len(row) == 3, f"{name}: a row needs exactly three cells (no | in a meaning): {row}"
        doc["columns"] = [(column.strip("`"), kind, meaning) for column, kind, meaning in rows]
    return files


@pytest.fixture(scope="module")
def documented() -> dict[str, dict]:
    return parse(section(DOC.read_text(encoding="utf-8")))


def column_types(rt: export.RecordType) -> list[tuple[str, str]]:
    """Every column of a file with its type, study_id, participant_id and condition first (as export.parquet_schema
    has it)."""
    return [*export.LEADING, *rt.columns]


def test_every_file_is_documented_in_export_order(documented: dict[str, dict]) -> None:
    assert tuple(documented) == export.RECORD_TYPE_NAMES


@pytest.mark.parametrize("rt", export.RECORD_TYPES, ids=lambda rt: rt.name)
def test_every_column_is_documented_with_its_type_and_meaning(documented: dict[str, dict],
                                                               rt: export.RecordType) -> None:
    docs = documented[rt.name]["columns"]
    assert [c for c, _, _ in docs] == export.column_names(rt), f"{rt.name}: the documented columns differ"
    for (column, kind), (_, doc_type, meaning) in zip(column_types(rt), docs, strict=True):
        assert doc_type == TYPE_NAMES[kind], f"{rt.name}.{column} is {TYPE_NAMES[kind]}, documented as {doc_type!r}"
        assert meaning, f"{rt.name}.{column} has no meaning"
        assert SINCE not in meaning or meaning.startswith(SINCE + " "), \
            f"{rt.name}.{column}: {SINCE} goes at the start of the meaning"


@pytest.mark.parametrize("rt", export.RECORD_TYPES, ids=lambda rt: rt.name)
def test_each_file_names_its_consent_category_and_record_key(documented: dict[str, dict],
                                                             rt: export.RecordType) -> None:
    bullets = documented[rt.name]["bullets"]
    category = [b for b in bullets if b.startswith("- Consent category:")]
    kept = [b for b in bullets if b.startswith("- Kept:")]
    assert len(category) == 1 and len(kept) == 1, f"{rt.name}: needs one '- Consent category:' and one '- Kept:' line"
    named = set(re.findall(r"`([a-z_0-9]+)`", category[0]))
    wanted = {EVENT_KINDS[kind][0] for kind in rt.kinds} - {None}
    assert named & set(CATEGORIES) == wanted, f"{rt.name}: its consent category is {sorted(wanted) or 'none'}"
    if not wanted:
        assert "none" in category[0]
    if rt.kind is None:
        return  # the participants table: not events
    keys = {field for kind in rt.kinds for field in RECORD_KEYS.get(kind, ())}
    assert set(re.findall(r"`([a-z_0-9]+)`", kept[0])) & set(export.column_names(rt)) == keys, \
        f"{rt.name}: its record key is {sorted(keys) or 'none (every event is kept)'}"
    if not keys:
        assert "every event" in kept[0]


def test_schema_json_names_the_types_as_this_section_does() -> None:
    assert export.TYPE_NAMES == TYPE_NAMES
