"""How much of each labeled span a scrubber removed, on words, whatever placeholder it wrote instead.

A token is a run of letters or digits (regex ``\\w+``). The source text's tokens are aligned with the output's
(difflib, no junk heuristic): a source token is *kept* when the alignment matches it to an output token, and
*removed* otherwise (a placeholder such as <PERSON_1> matches no source token).

- span removed: every token overlapping the span was removed (recall = spans removed / spans labeled);
- token recall: tokens of labeled spans removed / tokens of labeled spans (partial credit for "Baker" gone
  but "Street" kept);
- precision: removed tokens that lie in a labeled span / all removed tokens (per type it is not measurable:
  the two scrubbers name their placeholders differently);
- other words kept: tokens outside every span that were kept / tokens outside every span;
- precision by type: the removed tokens are attributed to the placeholder written in their place (``<PERSON_1>``
  and ``<PERSON>`` both name PERSON; a removal without one placeholder of one type counts as "other"), and for
  each type the share of them inside a labeled span is its precision. The type is the scrubber's own
  (LOCATION, DATE_TIME, ...), since the two scrubbers and the labels name types differently.
"""

from __future__ import annotations

import difflib
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

TOKEN = re.compile(r"\w+")


def tokens(text: str) -> list[tuple[str, int, int]]:
    return [(m.group(), m.start(), m.end()) for m in TOKEN.finditer(text)]


def kept_flags(source: str, output: str) -> list[bool]:
    """For each token of ``source``, whether it survives in ``output``."""
    src = [t for t, _, _ in tokens(source)]
    out = [t for t, _, _ in tokens(output)]
    kept = [False] * len(src)
    matcher = difflib.SequenceMatcher(None, src, out, autojunk=False)
    for block in matcher.get_matching_blocks():
        for i in range(block.a, block.a + block.size):
            kept[i] = True
    return kept


# The word a placeholder leaves in the output: "PERSON_1" of "<PERSON_1>", "PERSON" of "<PERSON>".
_PLACEHOLDER_WORD = re.compile(r"([A-Z][A-Z]*(?:_[A-Z]+)*)(?:_\d+)?")


def removed_types(source: str, output: str) -> list[str | None]:
    """For each token of ``source``: None when kept, else the type of the placeholder written in its place."""
    src = [t for t, _, _ in tokens(source)]
    out = [t for t, _, _ in tokens(output)]
    types: list[str | None] = [None] * len(src)
    matcher = difflib.SequenceMatcher(None, src, out, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            continue
        written = {m.group(1) for w in out[j1:j2] if (m := _PLACEHOLDER_WORD.fullmatch(w))}
        removed_as = next(iter(written)) if len(written) == 1 else "other"
        for i in range(i1, i2):
            types[i] = removed_as
    return types


@dataclass
class Tally:
    spans: Counter[str] = field(default_factory=Counter)
    spans_removed: Counter[str] = field(default_factory=Counter)
    span_tokens: Counter[str] = field(default_factory=Counter)
    span_tokens_removed: Counter[str] = field(default_factory=Counter)
    removed_tokens: int = 0
    removed_in_span: int = 0
    other_tokens: int = 0
    other_kept: int = 0
    clean_texts: int = 0
    clean_unchanged: int = 0
    removed_by_type: Counter[str] = field(default_factory=Counter)
    removed_in_span_by_type: Counter[str] = field(default_factory=Counter)

    def add(self, row: dict[str, Any], output: str) -> None:
        """Count one example: its text, labeled spans and the scrubber's output."""
        toks = tokens(row["text"])
        kept = kept_flags(row["text"], output)
        in_span = [False] * len(toks)
        for span in row["spans"]:
            inside = [i for i, (_, s, e) in enumerate(toks) if s < span["end"] and span["start"] < e]
            label = span["label"]
            self.spans[label] += 1
            self.span_tokens[label] += len(inside)
            gone = sum(1 for i in inside if not kept[i])
            self.span_tokens_removed[label] += gone
            if gone == len(inside):
                self.spans_removed[label] += 1
            for i in inside:
                in_span[i] = True
        for i, removed_as in enumerate(removed_types(row["text"], output)):
            if removed_as is not None:
                self.removed_by_type[removed_as] += 1
                self.removed_in_span_by_type[removed_as] += in_span[i]
        for i, k in enumerate(kept):
            if not k:
                self.removed_tokens += 1
                self.removed_in_span += in_span[i]
            elif not in_span[i]:
                self.other_kept += 1
            self.other_tokens += not in_span[i]
        if not row["spans"]:
            self.clean_texts += 1
            self.clean_unchanged += output == row["text"]

    def recall(self, label: str | None = None) -> float | None:
        labels = [label] if label else list(self.spans)
        return ratio(sum(self.spans_removed[x] for x in labels), sum(self.spans[x] for x in labels))

    def token_recall(self, label: str | None = None) -> float | None:
        labels = [label] if label else list(self.spans)
        return ratio(sum(self.span_tokens_removed[x] for x in labels), sum(self.span_tokens[x] for x in labels))

    def precision(self, removed_as: str | None = None) -> float | None:
        if removed_as is not None:
            return ratio(self.removed_in_span_by_type[removed_as], self.removed_by_type[removed_as])
        return ratio(self.removed_in_span, self.removed_tokens)

    def other_kept_share(self) -> float | None:
        return ratio(self.other_kept, self.other_tokens)


def ratio(a: int, b: int) -> float | None:
    return a / b if b else None


def tally(rows: Iterable[dict[str, Any]], outputs: Iterable[str]) -> Tally:
    result = Tally()
    for row, output in zip(rows, outputs, strict=True):
        result.add(row, output)
    return result


def leaks(row: dict[str, Any], output: str) -> list[str]:
    """The labeled spans of ``row`` that ``output`` does not fully remove (for looking at the tune split)."""
    toks = tokens(row["text"])
    kept = kept_flags(row["text"], output)
    return [f"{s['label']}: {s['text']!r}" for s in row["spans"]
            if any(kept[i] for i, (_, a, b) in enumerate(toks) if a < s["end"] and s["start"] < b)]
