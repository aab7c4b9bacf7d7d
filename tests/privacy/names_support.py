"""What the name tests share: a check that names are gone, other words stay, and a second pass changes nothing."""

from __future__ import annotations

import re

from studyapp.privacy.anonymize import Anonymizer


def assert_removed(anonymizer: Anonymizer, text: str, names: list[str], kept: list[str]) -> str:
    out = anonymizer.anonymize(text)
    for name in names:
        for word in re.findall(r"\w+", name):
            # not inside a placeholder ("<PERSON_1>" holds no name, but its word must not count as one)
            assert not re.search(rf"(?<![\w<]){re.escape(word)}(?!\w)", out, re.IGNORECASE), \
                f"{word!r} left in {out!r}"
    assert re.search(r"<PERSON_\d+>", out), out
    for word in kept:
        assert word in out, f"{word!r} was removed from {out!r}"
    assert anonymizer.anonymize(out) == out  # placeholders are never analyzed again
    return out
