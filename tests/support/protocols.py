"""Small study protocols for tests: one required category (ratings), a schedule that compares often."""

from __future__ import annotations


def ratings_study(study_id: str, title: str, extra: str = "") -> str:
    """A protocol TOML asking only for ratings; ``extra`` appends sections (e.g. ``[display]``)."""
    return f'''
[study]
id = "{study_id}"
title = "{title}"
version = "1"
duration_days = 7

[[consent]]
version = "1"
title = "Consent"
text = "You agree."

[categories.ratings]
required = true

[comparisons]
min_turns_between = 0
daily_cap = 5
probability = 0.5
min_attributes = 0
{extra}'''


# Every role of the study through its server's model gateway (via = "study"), one judge; add sections after it.
STUDY_ROUTES = '''
[models.assistant]
model = "gpt-4o-mini"
via = "study"

[models.extractor]
model = "gpt-4o-mini"
via = "study"

[models.selector]
model = "small-model"
via = "study"

[[models.judge]]
model = "gpt-4o"
via = "study"
'''

