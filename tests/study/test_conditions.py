"""Randomized conditions in the protocol ([conditions]): validation, the participant's protocol, block orders."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from studyapp.cli import cli
from studyapp.study.conditions import block_order
from studyapp.study.current import CurrentStudy
from studyapp.study.protocol import ProtocolError, load_protocol, parse_protocol, protocol_from_dict
from tests.study.test_protocol import EXAMPLE, MINIMAL, errors_of

MEMORY = '''
[conditions]
block_size = 4

[conditions.memory_on]
description = "Replies use what the assistant learned."

[conditions.memory_off]
description = "Ordinary replies without it."
personalization.memory = "off"
'''


def test_two_conditions_parse_with_their_settings_and_defaults() -> None:
    p = parse_protocol(MINIMAL + MEMORY)
    assert p.conditions is not None
    assert p.conditions.names == ("memory_off", "memory_on")  # by name, however the file orders them
    assert p.conditions.block_size == 4 and p.conditions.reveal is False
    assert p.conditions.get("memory_off").overrides == {"personalization": {"memory": "off"}}
    assert p.conditions.get("memory_on").overrides == {}
    # The study's own settings are untouched: memory is on unless a condition says otherwise.
    assert p.personalization.memory_in_replies
    default = parse_protocol(MINIMAL + MEMORY.replace("block_size = 4\n", ""))
    assert default.conditions is not None and default.conditions.block_size == 4  # 2 x the number of conditions


def test_a_condition_may_change_only_settings_the_app_has() -> None:
    errors = errors_of(MINIMAL + MEMORY + '''
[conditions.memory_off.consent]
version = "2"
''')
    assert errors == ["conditions.memory_off.consent is not a setting a condition may change: a condition has a "
                      "description and may override only the tables comparisons, attribute_review, display, "
                      "models, personalization (the settings the app already has)"]


@pytest.mark.parametrize(("extra", "expected"), [
    ('[conditions.memory_off.comparisons]\nprobability = 2\n',
     "conditions.memory_off.comparisons.probability = 2 is out of range: it must be between 0 and 1"),
    ('[conditions.memory_off.comparisons]\nprobabilty = 0.5\n',
     "conditions.memory_off.comparisons.probabilty is not a known key (did you mean 'probability'?)"),
    ('[conditions.memory_off.display]\nshow_memory_use = "no"\n',
     "conditions.memory_off.display.show_memory_use = 'no' is a string: it must be a boolean"),
    ('[conditions.memory_off.models.assistant]\nmodel = "local"\nvia = "study"\n',
     "conditions.memory_off.models.assistant.model = \"local\" with via = \"study\""),
    ('[conditions.memory_off.models]\nteacher = "gpt"\n',
     "conditions.memory_off.models.teacher is not a known key"),
])
def test_a_conditions_settings_are_checked_as_the_studys_own(extra: str, expected: str) -> None:
    errors = errors_of(MINIMAL + MEMORY + extra)
    assert len(errors) == 1 and errors[0].startswith(expected), errors


@pytest.mark.parametrize(("conditions", "expected"), [
    ('[conditions]\n[conditions.only]\n', "[conditions] defines 1 condition: a study with conditions needs at "
                                         "least 2"),
    ('[conditions]\nblock_size = 3\n[conditions.a]\n[conditions.b]\n',
     "conditions.block_size = 3 is not a block size for 2 conditions: it must be a multiple of 2"),
    ('[conditions]\nblock_size = 0\n[conditions.a]\n[conditions.b]\n',
     "conditions.block_size = 0 is not a block size for 2 conditions"),
    ('[conditions]\nreveal = "yes"\n[conditions.a]\n[conditions.b]\n',
     "conditions.reveal = 'yes' is a string: it must be a boolean"),
    ('[conditions]\n[conditions.a]\n[conditions."b c"]\n', "[conditions.b c] is not a valid condition name"),
    ('[conditions]\na = 1\n[conditions.b]\n', "conditions.a = 1 is an integer: it must be a table"),
    ('[conditions]\n[conditions.a]\npersonalization = "off"\n[conditions.b]\n',
     "conditions.a.personalization = 'off' is a string: it must be a table"),
    ('[personalization]\nmemory = "sometimes"\n', "personalization.memory = 'sometimes' is not a memory setting"),
    ('condition = "a"\n', "condition is not a key of a study's protocol"),
])
def test_conditions_that_cannot_work_are_named(conditions: str, expected: str) -> None:
    # Top-level keys must come before the tables of MINIMAL.
    text = (conditions + MINIMAL) if conditions.startswith("condition =") else MINIMAL + conditions
    errors = errors_of(text)
    assert any(e.startswith(expected) for e in errors), errors


def test_the_participants_protocol_holds_their_condition_and_nothing_of_the_others() -> None:
    p = parse_protocol(MINIMAL + MEMORY)
    off = p.for_condition("memory_off")
    assert off.conditions is None and off.condition is None
    assert not off.personalization.memory_in_replies
    text = json.dumps(off.to_dict())
    assert "conditions" not in off.to_dict() and "memory_on" not in text and "memory_off" not in text
    on = p.for_condition("memory_on")
    assert on.personalization.memory_in_replies and "personalization" not in on.to_dict()
    # What the app receives validates as any protocol from the server does, and stays the same through the round trip.
    assert protocol_from_dict(off.to_dict()) == off
    revealed = parse_protocol(MINIMAL + MEMORY.replace("block_size = 4", "block_size = 4\nreveal = true"))
    told = revealed.for_condition("memory_off")
    assert told.condition == "memory_off" and "memory_on" not in json.dumps(told.to_dict())
    assert protocol_from_dict(told.to_dict()).condition == "memory_off"
    assert "condition: memory_off" in told.summary()
    with pytest.raises(ProtocolError) as info:
        protocol_from_dict(p.to_dict() | {"condition": "memory_on"})
    assert "condition is set beside [conditions]" in str(info.value)


def test_models_are_overridden_by_whole_role_entries() -> None:
    p = parse_protocol(MINIMAL + '''
[models.assistant]
model = "big"
base_url = "https://api.example.org/v1"

[conditions]
[conditions.big_model]
[conditions.small_model.models.assistant]
model = "small"
via = "study"
''')
    small = p.for_condition("small_model").models["assistant"]
    # The whole entry: the study's base_url is not carried into a via = "study" entry.
    assert (small.model, small.base_url, small.via) == ("small", None, "study")
    assert p.for_condition("big_model").models["assistant"].base_url == "https://api.example.org/v1"
    assert protocol_from_dict(p.to_dict()) == p


def test_block_orders_are_balanced_and_reproducible() -> None:
    names = ("a", "b", "c")
    orders = [block_order(1234, block, names, 6) for block in range(1, 40)]
    assert all(Counter(order) == {"a": 2, "b": 2, "c": 2} for order in orders)
    assert orders == [block_order(1234, block, names, 6) for block in range(1, 40)]
    # Blocks and seeds differ in their order (a shuffle, not a fixed rotation).
    assert len({tuple(o) for o in orders}) > 10
    assert [block_order(99, b, names, 6) for b in range(1, 40)] != orders
    # Every position of a block gets each condition about equally often over many blocks.
    firsts = Counter(block_order(7, b, names, 6)[0] for b in range(1, 3001))
    assert min(firsts.values()) > 850, firsts


def test_check_lists_the_conditions_and_what_each_changes(tmp_path: Path) -> None:
    p = load_protocol(EXAMPLE)
    assert p.conditions is not None and p.conditions.names == ("memory_off", "memory_on")
    result = CliRunner().invoke(cli, ["study", "check", str(EXAMPLE)])
    assert result.exit_code == 0, result.output
    assert ("conditions: 2 (memory_off, memory_on), assigned at enrollment in blocks of 4; never told to "
            "participants") in result.output
    assert "memory_on: the study's settings as they are" in result.output
    assert 'memory_off: personalization.memory = "off"' in result.output
    bad = tmp_path / "bad.toml"
    bad.write_text(MINIMAL + MEMORY + '[conditions.memory_off.privacy]\nreview_uploads = true\n', encoding="utf-8")
    result = CliRunner().invoke(cli, ["study", "check", str(bad)])
    assert result.exit_code == 1
    assert "conditions.memory_off.privacy is not a setting a condition may change" in result.output
    assert "Traceback" not in result.output


def test_the_status_line_names_the_condition_only_when_the_study_reveals_it() -> None:
    hidden = parse_protocol(MINIMAL + MEMORY).for_condition("memory_off")
    assert "memory_" not in CurrentStudy(hidden, None).status_line()
    shown = parse_protocol(MINIMAL + MEMORY.replace("block_size = 4", "reveal = true")).for_condition("memory_off")
    assert CurrentStudy(shown, None).status_line().startswith("A study · condition memory_off · day 1 of 7")
