"""Write the labeled evaluation sets tune.jsonl, test.jsonl and test2.jsonl (seeded: the same command, the same files).

    python bench/anonymization_eval/generate.py [--per-template N]

Each example is a template (templates_tune.py, templates_test.py or templates_test2.py) filled with Faker values
of one locale, or a hand-written line. The splits share no template, no seed and no text; the test split also
draws from three locales the tune split never sees, so a rule fitted to one locale's Faker formats shows up as a
gap.

test2 is a second held-out split, written after the scrubber had been tuned on tune and measured once on test,
to measure the next round of tuning: its templates were written independently of the scrubber's code and of the
other splits' templates and texts, in the forms people paste to an assistant (e-mail threads, chat exports of
several apps, minutes, forms), with fewer examples per template and more templates, and with eleven locales
neither other split draws from. Like test, it is not to be read while tuning.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
from pathlib import Path
from typing import Any

from faker import Faker

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import templates_test  # noqa: E402
import templates_test2  # noqa: E402
import templates_tune  # noqa: E402
from values import ENTITY_TYPES, SLOTS  # noqa: E402

SHARED_LOCALES = ("en_US", "en_GB", "de_DE", "fr_FR", "es_ES", "it_IT", "pt_BR", "nl_NL", "pl_PL", "hu_HU",
                  "en_IN", "sv_SE")
SPLITS: dict[str, dict[str, Any]] = {
    "tune": {"module": templates_tune, "seed": 1_000, "locales": SHARED_LOCALES},
    "test": {"module": templates_test, "seed": 9_000,
             "locales": (*SHARED_LOCALES, "cs_CZ", "ro_RO", "pt_PT")},
    # Five common locales and eleven that neither other split uses; more templates, fewer examples of each.
    "test2": {"module": templates_test2, "seed": 27_182, "per_template": 5,
              "locales": ("en_US", "en_GB", "de_DE", "fr_FR", "es_ES", "da_DK", "fi_FI", "tr_TR", "en_AU",
                          "en_NZ", "fr_CA", "es_MX", "de_AT", "de_CH", "nl_BE", "el_GR")},
}
PER_TEMPLATE = 12
SLOT = re.compile(r"\{(?P<base>[a-z_]+?)(?P<n>\d*)(?P<lc>_lc)?\}")
MARK = re.compile(r"\[(?P<value>[^\]|]+)\|(?P<type>[A-Z_]+)\]")


def fill(template: str, fake: Faker, rng: random.Random) -> tuple[str, list[dict[str, Any]]]:
    """The template with its slots filled, and the labeled spans; a repeated slot repeats its value."""
    values: dict[str, str] = {}
    out: list[str] = []
    spans: list[dict[str, Any]] = []
    pos = 0
    for m in SLOT.finditer(template):
        out.append(template[pos:m.start()])
        entity, maker = SLOTS[m["base"]]
        key = m["base"] + m["n"]
        if key not in values:
            values[key] = maker(fake, rng)
        value = values[key].lower() if m["lc"] else values[key]
        start = sum(map(len, out))
        out.append(value)
        spans.append({"start": start, "end": start + len(value), "label": entity, "text": value})
        pos = m.end()
    out.append(template[pos:])
    return "".join(out), spans


def parse_marked(line: str) -> tuple[str, list[dict[str, Any]]]:
    """A hand-written line with [value|TYPE] marks -> plain text and spans."""
    out: list[str] = []
    spans: list[dict[str, Any]] = []
    pos = 0
    for m in MARK.finditer(line):
        out.append(line[pos:m.start()])
        start = sum(map(len, out))
        out.append(m["value"])
        spans.append({"start": start, "end": start + len(m["value"]), "label": m["type"], "text": m["value"]})
        pos = m.end()
    out.append(line[pos:])
    return "".join(out), spans


def generate(split: str, per_template: int | None = None) -> list[dict[str, Any]]:
    """The split's rows; ``per_template`` overrides the split's own count (PER_TEMPLATE unless it sets one)."""
    config = SPLITS[split]
    per_template = per_template or config.get("per_template", PER_TEMPLATE)
    rng = random.Random(config["seed"])
    fakers = {loc: Faker(loc) for loc in config["locales"]}
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for template_id, kind, template in config["module"].TEMPLATES:
        made = 0
        wanted = per_template if SLOT.search(template) else 1  # a text without slots can be written only once
        while made < wanted:
            locale = rng.choice(config["locales"])
            fake = fakers[locale]
            fake.seed_instance(rng.randrange(2**32))
            text, spans = fill(template, fake, rng)
            if text in seen:  # e.g. the same short first name twice: keep the set free of duplicates
                continue
            seen.add(text)
            rows.append({"id": f"{template_id}-{made:02d}", "split": split, "template": template_id,
                         "kind": kind, "locale": locale, "text": text, "spans": spans})
            made += 1
    for i, line in enumerate(config["module"].HANDWRITTEN):
        text, spans = parse_marked(line)
        rows.append({"id": f"{split}-hand-{i:02d}", "split": split, "template": f"{split}-hand",
                     "kind": "handwritten", "locale": "hand", "text": text, "spans": spans})
    assert all(s["label"] in ENTITY_TYPES for r in rows for s in r["spans"])
    return rows


def write(rows: list[dict[str, Any]], path: Path) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def main() -> None:
    if os.environ.get("PYTHONHASHSEED") != "0":
        # A few Faker providers pick from sets (e.g. it_IT cities), whose order follows string hashing.
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, "PYTHONHASHSEED": "0"})
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-template", type=int, default=None,
                        help=f"examples per template in every split (default: the split's own, {PER_TEMPLATE} "
                             "for tune and test)")
    args = parser.parse_args()
    for split in SPLITS:
        rows = generate(split, args.per_template)
        write(rows, HERE / f"{split}.jsonl")
        print(f"{split}: {len(rows)} examples, {sum(len(r['spans']) for r in rows)} spans -> {split}.jsonl")


if __name__ == "__main__":
    main()
