"""Fixtures for the privacy tests: a real database file, protocols written as TOML, the real anonymizer."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlite_utils import Database

from studyapp.privacy.anonymize import Anonymizer
from studyapp.privacy.consent import ConsentService
from studyapp.store.db import open_database
from studyapp.study.protocol import Protocol, parse_protocol

CONSENT_TEXT = "You chat with an assistant. We collect what you agree to below, anonymized on your computer.\n"


def make_protocol(*, study_id: str = "s1", version: str = "1", consent_version: str = "1",
                  consent_text: str = CONSENT_TEXT, required: tuple[str, ...] = ("ratings",),
                  optional: tuple[str, ...] = ("attribute_labels", "relevance_labels", "attributes",
                                               "conversation_text"),
                  review_uploads: bool = False, require_ner: bool = False) -> Protocol:
    categories = "\n".join(
        f'[categories.{c}]\nrequired = {"true" if c in required else "false"}\ndescription = "About {c}."'
        for c in (*required, *optional))
    text = f'''
[study]
id = "{study_id}"
title = "Privacy test study"
version = "{version}"
duration_days = 7

[[consent]]
version = "{consent_version}"
title = "Consent"
text = """{consent_text}"""

{categories}

[privacy]
review_uploads = {"true" if review_uploads else "false"}
require_ner = {"true" if require_ner else "false"}

[comparisons]
min_turns_between = 2
daily_cap = 5
probability = 0.5
min_attributes = 0
'''
    return parse_protocol(text)


@pytest.fixture
def protocol_factory() -> Callable[..., Protocol]:
    return make_protocol


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "studyapp.db"


@pytest.fixture
def db(db_path: Path) -> Iterator[Database]:
    db_path.parent.mkdir(parents=True, exist_ok=True)
    database = open_database(db_path)
    yield database
    database.close()


@pytest.fixture
def consent(db: Database) -> ConsentService:
    return ConsentService(db)


@pytest.fixture
def anonymizer(db: Database) -> Anonymizer:
    return Anonymizer(db)
