"""The study protocol: the example and the built-in study load; every kind of bad file is refused clearly."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from studyapp.cli import cli
from studyapp.server.cli import cli as server_cli
from studyapp.study.protocol import (
    MAX_PUBLISHED_BYTES,
    ModelSpec,
    ProtocolError,
    builtin_protocol,
    load_protocol,
    parse_protocol,
    protocol_from_dict,
    protocol_from_json,
    published_size,
)
from studyapp.sync.server_client import MAX_ANSWER_BYTES

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "study.toml"

MINIMAL = '''
[study]
id = "s1"
title = "A study"
version = "1"
duration_days = 7

[[consent]]
version = "1"
title = "Consent"
text = "You agree."

[categories.ratings]
required = true

[comparisons]
min_turns_between = 3
daily_cap = 2
probability = 0.25
min_attributes = 1
'''


def errors_of(text: str, **kwargs: object) -> list[str]:
    with pytest.raises(ProtocolError) as info:
        parse_protocol(text, **kwargs)  # type: ignore[arg-type]
    assert info.value.errors, "a ProtocolError always lists its problems"
    return info.value.errors


def replace(text: str, old: str, new: str) -> str:
    assert old in text
    return text.replace(old, new)


# Good files -----------------------------------------------------------------------------------------


def test_example_file_is_valid_and_complete() -> None:
    p = load_protocol(EXAMPLE)
    assert p.id == "personalization-diary-2026"
    assert p.duration_days == 14
    assert [c.version for c in p.consent] == ["1", "2"]
    # The current consent comes from a file next to the protocol, hashed byte for byte.
    consent_file = EXAMPLE.parent / "study-consent.md"
    assert p.current_consent.text == consent_file.read_text(encoding="utf-8")
    assert p.current_consent.sha256 == hashlib.sha256(consent_file.read_bytes()).hexdigest()
    assert p.required_categories == ["ratings", "relevance_labels"]
    assert "conversation_text" not in p.categories
    assert p.review_uploads and p.require_ner
    assert p.comparisons.min_turns_between == 5 and p.comparisons.seed is None
    assert [j.model for j in p.judges] == ["gpt-4o", "local"]
    # The researchers provide the models through the study's server; the second judge runs on the device.
    assert {role: (spec.model, spec.via) for role, spec in p.models.items()} == {
        "assistant": ("gpt-4o-mini", "study"), "extractor": ("gpt-4o-mini", "study"),
        "selector": ("gpt-4o-mini", "study"), "judge": ("gpt-4o", "study"), "judge.2": ("local", "direct")}
    assert all(spec.base_url is None for spec in p.models.values())
    assert p.raw_text == EXAMPLE.read_text(encoding="utf-8")


def test_builtin_study_compares_early_with_local_models() -> None:
    p = builtin_protocol()
    assert p.server_url is None
    assert p.comparisons.min_turns_between <= 2
    assert p.comparisons.probability >= 0.5
    assert p.comparisons.min_attributes == 0
    assert {role: spec.model for role, spec in p.models.items()} == dict.fromkeys(
        ("assistant", "extractor", "selector", "judge"), "local"
    )


def test_minimal_file_gets_defaults() -> None:
    p = parse_protocol(MINIMAL)
    assert p.rating_scale.points == 5 and len(p.rating_scale.labels) == 5
    assert p.rating_scale.labels[0] == "Response 1 much better"
    assert p.attribute_review.batch_size >= 1
    assert p.models["judge"].model == "local"
    assert p.review_uploads is False and p.require_ner is False
    assert p.categories["ratings"].description  # a default description the participant can read


def test_to_dict_round_trips_through_json() -> None:
    p = load_protocol(EXAMPLE)
    data = json.loads(p.to_json())
    assert data["consent"][-1]["sha256"] == p.current_consent.sha256
    again = protocol_from_json(p.to_json())
    assert again == p  # raw_text is not compared
    assert again.current_consent.sha256 == p.current_consent.sha256


def test_consent_tampered_in_transit_is_refused() -> None:
    data = load_protocol(EXAMPLE).to_dict()
    data["consent"][-1]["text"] += " And something else."
    with pytest.raises(ProtocolError) as info:
        protocol_from_dict(data)
    assert any("consent[2].sha256" in e and "does not match" in e for e in info.value.errors)


def test_judging_can_be_turned_off() -> None:
    p = parse_protocol(MINIMAL + "\n[models]\njudge = []\n")
    assert p.judges == []


def test_category_shorthand() -> None:
    p = parse_protocol(replace(MINIMAL, "[categories.ratings]\nrequired = true", "[categories]\nratings = true"))
    assert p.categories["ratings"].required is False


# Bad files: every error names the key, the value and what is allowed -----------------------------------


def test_invalid_toml_names_the_line() -> None:
    text = MINIMAL.replace('title = "A study"', 'title = "A study')
    errors = errors_of(text, source="broken.toml")
    assert len(errors) == 1
    assert "not valid TOML" in errors[0] and "line 4" in errors[0]


def test_error_message_names_the_source() -> None:
    with pytest.raises(ProtocolError) as info:
        parse_protocol("[study]\n", source="my-study.toml")
    assert str(info.value).startswith("my-study.toml:")


def test_missing_sections_are_all_reported() -> None:
    errors = errors_of('[study]\nid = "x"\ntitle = "t"\nversion = "1"\nduration_days = 3\n')
    joined = "\n".join(errors)
    assert "[[consent]] is missing" in joined
    assert "[categories] is missing" in joined
    assert "[comparisons] is missing" in joined


def test_missing_study_table_is_one_error_not_one_per_key() -> None:
    text = MINIMAL.split("[[consent]]", 1)[1]
    errors = errors_of("[[consent]]" + text)
    assert [e for e in errors if "study" in e] == ["[study] is missing: add a [study] table"]


def test_missing_keys() -> None:
    text = replace(MINIMAL, 'version = "1"\nduration_days = 7', "")
    text = replace(text, "probability = 0.25\n", "")
    errors = errors_of(text)
    assert "study.version is missing: add version = <string>" in errors
    assert "study.duration_days is missing: add duration_days = <integer>" in errors
    assert "comparisons.probability is missing: add probability = <number>" in errors


def test_wrong_types() -> None:
    text = replace(MINIMAL, "duration_days = 7", 'duration_days = "seven"')
    text = replace(text, "daily_cap = 2", "daily_cap = true")
    text = replace(text, 'version = "1"\nduration', "version = 1\nduration")
    text = replace(text, "required = true", 'required = "yes"')
    errors = errors_of(text)
    assert "study.duration_days = 'seven' is a string: it must be an integer" in errors
    assert "comparisons.daily_cap = True is a boolean: it must be an integer" in errors
    assert "study.version = 1 is an integer: it must be a string" in errors
    assert "categories.ratings.required = 'yes' is a string: it must be a boolean" in errors


def test_section_of_the_wrong_type() -> None:
    text = replace(MINIMAL, "[comparisons]\nmin_turns_between = 3\ndaily_cap = 2\nprobability = 0.25\n"
                   "min_attributes = 1\n", "")
    errors = errors_of('comparisons = "often"\n' + text)
    assert errors == ["comparisons = 'often' is a string: it must be a table ([comparisons])"]


def test_out_of_range_values() -> None:
    text = replace(MINIMAL, "probability = 0.25", "probability = 1.5")
    text = replace(text, "duration_days = 7", "duration_days = 0")
    text = replace(text, "min_turns_between = 3", "min_turns_between = -1")
    text += "\n[rating_scale]\npoints = 7\nlabels = ['a', 'b']\n\n[attribute_review]\nbatch_size = 0\n"
    errors = errors_of(text)
    assert "comparisons.probability = 1.5 is out of range: it must be between 0 and 1" in errors
    assert "study.duration_days = 0 is out of range: it must be between 1 and 3650" in errors
    assert "comparisons.min_turns_between = -1 is out of range: it must be at least 0" in errors
    assert any(e.startswith("rating_scale.points = 7 is not supported: it must be 5") for e in errors)
    assert any(e.startswith("rating_scale.labels = ['a', 'b'] has 2 labels: it must list 5") for e in errors)
    assert "attribute_review.batch_size = 0 is out of range: it must be between 1 and 50" in errors


def test_unknown_category() -> None:
    errors = errors_of(MINIMAL + "\n[categories.rating]\nrequired = false\n[categories.heart_rate]\n")
    assert any(e.startswith("[categories.rating] is not a known data category (did you mean 'ratings'?)")
               and "allowed: ratings, attribute_labels" in e for e in errors)
    assert any(e.startswith("[categories.heart_rate] is not a known data category;") for e in errors)


def test_unknown_keys_with_suggestions() -> None:
    text = replace(MINIMAL, "daily_cap = 2", "daily_cap = 2\ndaily_limit = 4")
    text += "\n[modles.assistant]\nmodel = 'local'\n"
    errors = errors_of(text)
    assert any(e.startswith("comparisons.daily_limit is not a known key (did you mean 'daily_cap'?)") for e in errors)
    assert any(e.startswith("modles is not a known key (did you mean 'models'?)") for e in errors)


def test_duplicate_consent_versions() -> None:
    text = MINIMAL + '\n[[consent]]\nversion = "1"\ntitle = "Again"\ntext = "Other text."\n'
    errors = errors_of(text)
    assert any(e.startswith("consent[2].version = '1' repeats consent[1].version") for e in errors)


def test_consent_text_and_file_problems(tmp_path: Path) -> None:
    text = MINIMAL + '\n[[consent]]\nversion = "2"\ntitle = "Both"\ntext = "x"\nfile = "c.md"\n'
    text += '\n[[consent]]\nversion = "3"\ntitle = "Neither"\n'
    errors = errors_of(text)
    assert any(e.startswith("consent[2] has both text and file") for e in errors)
    assert any(e.startswith("consent[3].text is missing") for e in errors)


def test_missing_consent_file(tmp_path: Path) -> None:
    study = tmp_path / "study.toml"
    study.write_text(replace(MINIMAL, 'text = "You agree."', 'file = "consent/v1.md"'), encoding="utf-8")
    with pytest.raises(ProtocolError) as info:
        load_protocol(study)
    assert len(info.value.errors) == 1
    error = info.value.errors[0]
    assert error.startswith("consent[1].file = 'consent/v1.md' does not exist")
    assert str(tmp_path / "consent" / "v1.md") in error
    # Once the file is there, it loads, and the hash is of its exact bytes (CRLF kept).
    (tmp_path / "consent").mkdir()
    (tmp_path / "consent" / "v1.md").write_bytes(b"Line one.\r\nLine two.\r\n")
    p = load_protocol(study)
    assert p.current_consent.text == "Line one.\r\nLine two.\r\n"
    assert p.current_consent.sha256 == hashlib.sha256(b"Line one.\r\nLine two.\r\n").hexdigest()


def test_relative_consent_file_without_a_folder() -> None:
    errors = errors_of(replace(MINIMAL, 'text = "You agree."', 'file = "c.md"'))
    assert any(e.startswith("consent[1].file = 'c.md' cannot be read") for e in errors)


def test_missing_protocol_file(tmp_path: Path) -> None:
    with pytest.raises(ProtocolError) as info:
        load_protocol(tmp_path / "nope.toml")
    assert "does not exist" in info.value.errors[0]


def test_bad_urls_and_models() -> None:
    text = replace(MINIMAL, 'duration_days = 7', 'duration_days = 7\nserver_url = "http://study.example.org"')
    text += (
        '\n[models.assistant]\nmodel = "local"\nbase_url = "http://127.0.0.1:8080/v1"\n'
        '[models.extractor]\nbase_url = "ftp://x"\n'
        "[models.selector]\nmodel = 3\n"
        '[models.critic]\nmodel = "x"\n'
    )
    errors = errors_of(text)
    assert any(e.startswith("study.server_url = 'http://study.example.org' uses plain http: it must use https")
               for e in errors)
    assert any(e.startswith("models.assistant.base_url = 'http://127.0.0.1:8080/v1' is set for model = \"local\"")
               for e in errors)
    assert "models.extractor.model is missing: add model = <string>" in errors
    assert any(e.startswith("models.extractor.base_url = 'ftp://x' is not a URL") for e in errors)
    assert "models.selector.model = 3 is an integer: it must be a string" in errors
    assert any(e.startswith("models.critic is not a known key") and "assistant, extractor, selector, judge" in e
               for e in errors)


# Models through the study's server (via = "study") -------------------------------------------------------


def test_a_role_may_use_the_studys_server_and_the_protocol_round_trips() -> None:
    text = MINIMAL + ('\n[models.assistant]\nmodel = "gpt-4o-mini"\nvia = "study"\n'
                      '[models.extractor]\nmodel = "llama3"\nbase_url = "http://127.0.0.1:8080/v1"\nvia = "direct"\n'
                      '[[models.judge]]\nmodel = "judge-model"\nvia = "study"\n'
                      '[[models.judge]]\nmodel = "local"\n')
    p = parse_protocol(text)
    assert p.models["assistant"] == ModelSpec("gpt-4o-mini", None, "study")
    assert p.models["assistant"].via_study and not p.models["extractor"].via_study
    assert p.models["extractor"] == ModelSpec("llama3", "http://127.0.0.1:8080/v1")
    assert [j.via for j in p.judges] == ["study", "direct"]
    data = p.to_dict()
    assert data["models"]["assistant"] == {"model": "gpt-4o-mini", "via": "study"}
    # The default is not written out, so a protocol without via publishes exactly as before.
    assert data["models"]["extractor"] == {"model": "llama3", "base_url": "http://127.0.0.1:8080/v1"}
    assert data["models"]["judge"] == [{"model": "judge-model", "via": "study"}, {"model": "local"}]
    assert protocol_from_json(p.to_json()) == p
    assert "assistant=gpt-4o-mini (via the study's server)" in p.summary()
    assert "model gateway: the server participants enroll with/llm/v1" in p.summary()


def test_a_protocol_without_via_is_read_and_published_as_before() -> None:
    text = MINIMAL + '\n[models.assistant]\nmodel = "llama3"\nbase_url = "http://127.0.0.1:8080/v1"\n'
    p = parse_protocol(text)
    assert p.models["assistant"] == ModelSpec("llama3", "http://127.0.0.1:8080/v1", "direct")
    assert p.to_dict()["models"] == {"assistant": {"model": "llama3", "base_url": "http://127.0.0.1:8080/v1"},
                                     "extractor": {"model": "local"}, "selector": {"model": "local"},
                                     "judge": [{"model": "local"}]}
    assert "via" not in p.to_json() and "model gateway" not in p.summary()


def test_via_study_errors_name_the_key_and_what_to_do() -> None:
    text = MINIMAL + ('\n[models.assistant]\nmodel = "gpt-4o-mini"\nvia = "study"\n'
                      'base_url = "https://api.openai.com/v1"\n'
                      '[models.extractor]\nmodel = "local"\nvia = "study"\n'
                      '[models.selector]\nmodel = "m"\nvia = "server"\n'
                      '[models.judge]\nmodel = "m"\nvia = true\n')
    errors = errors_of(text)
    assert any(e.startswith("models.assistant.base_url = 'https://api.openai.com/v1' is set with via = \"study\": "
                            "the study's models are reached through the study's server") and "remove base_url" in e
               for e in errors), errors
    assert any(e.startswith('models.extractor.model = "local" with via = "study"') and "name a model the server" in e
               for e in errors), errors
    assert any(e.startswith("models.selector.via = 'server' is not a route: it must be \"direct\"")
               for e in errors), errors
    assert "models.judge.via = True is a boolean: it must be a string" in errors
    assert len(errors) == 4


def test_via_study_errors_also_reach_study_check(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(MINIMAL + '\n[models.assistant]\nmodel = "m"\nvia = "study"\nbase_url = "https://x.org/v1"\n',
                   encoding="utf-8")
    result = CliRunner().invoke(cli, ["study", "check", str(bad)])
    assert result.exit_code == 1
    assert "models.assistant.base_url = 'https://x.org/v1' is set with via = \"study\"" in result.output
    assert "Traceback" not in result.output


def test_a_protocol_from_the_server_with_a_bad_route_is_refused() -> None:
    data = parse_protocol(MINIMAL).to_dict()
    data["models"]["assistant"] = {"model": "m", "via": "study", "base_url": "https://elsewhere.org/v1"}
    with pytest.raises(ProtocolError) as info:
        protocol_from_dict(data)
    assert any(e.startswith("models.assistant.base_url = 'https://elsewhere.org/v1' is set with via")
               for e in info.value.errors)


def test_bad_study_id() -> None:
    errors = errors_of(replace(MINIMAL, 'id = "s1"', 'id = "my study!"'))
    assert any(e.startswith("study.id = 'my study!' is not a valid study id") for e in errors)


def test_all_errors_collected_at_once() -> None:
    text = replace(MINIMAL, "probability = 0.25", "probability = 2")
    text = replace(text, "daily_cap = 2", "daily_cap = -1")
    text = replace(text, "[categories.ratings]", "[categories.ratingz]")
    assert len(errors_of(text)) == 3


# The command ------------------------------------------------------------------------------------------


def test_check_command_prints_a_summary() -> None:
    result = CliRunner().invoke(cli, ["study", "check", str(EXAMPLE)])
    assert result.exit_code == 0, result.output
    assert "personalization-diary-2026" in result.output
    assert "OK: the protocol is valid." in result.output


def test_check_command_prints_every_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(replace(replace(MINIMAL, "probability = 0.25", "probability = 2"), "daily_cap = 2",
                           "daily_cap = 'x'"), encoding="utf-8")
    result = CliRunner().invoke(cli, ["study", "check", str(bad)])
    assert result.exit_code == 1
    assert "2 problems" in result.output
    assert "comparisons.probability = 2" in result.output
    assert "comparisons.daily_cap = 'x'" in result.output
    assert "Traceback" not in result.output


def test_check_command_builtin_json() -> None:
    result = CliRunner().invoke(cli, ["study", "check", "--builtin", "--json"])
    assert result.exit_code == 0
    assert json.loads(result.output)["study"]["id"] == "local"


def test_check_command_on_a_missing_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["study", "check", str(tmp_path / "nope.toml")])
    assert result.exit_code == 1
    assert "does not exist" in result.output and "Traceback" not in result.output


def test_single_consent_table_and_declined_category() -> None:
    text = replace(MINIMAL, "[[consent]]", "[consent]")
    text = replace(text, "[categories.ratings]\nrequired = true\n", "")
    text += "\n[categories]\nratings = true\nconversation_text = false\n"
    p = parse_protocol(text)
    assert [c.version for c in p.consent] == ["1"]
    assert list(p.categories) == ["ratings"]


# [display]: whether replies say which memories shaped them --------------------------------------------


def test_memory_use_is_shown_unless_the_study_hides_it() -> None:
    assert parse_protocol(MINIMAL).display.show_memory_use is True
    assert builtin_protocol().display.show_memory_use is True
    assert load_protocol(EXAMPLE).display.show_memory_use is True
    hidden = parse_protocol(MINIMAL + "\n[display]\nshow_memory_use = false\n")
    assert hidden.display.show_memory_use is False
    assert "display: 'Shaped by your memory' under replies hidden" in hidden.summary()
    # It travels to the participant's install (and into the studies table) and back.
    assert hidden.to_dict()["display"] == {"show_memory_use": False}
    assert protocol_from_json(hidden.to_json()) == hidden
    # A protocol stored before the key existed still validates, and shows the line.
    older = hidden.to_dict()
    del older["display"]
    assert protocol_from_dict(older).display.show_memory_use is True


def test_display_errors_name_the_key_and_what_is_allowed() -> None:
    assert errors_of(MINIMAL + '\n[display]\nshow_memory_use = "no"\n') == [
        "display.show_memory_use = 'no' is a string: it must be a boolean"]
    assert errors_of(MINIMAL + "\n[display]\nshow_memory_use = 0\n") == [
        "display.show_memory_use = 0 is an integer: it must be a boolean"]
    assert errors_of(MINIMAL + "\n[display]\nshow_memory = true\n") == [
        "display.show_memory is not a known key (did you mean 'show_memory_use'?); allowed here: show_memory_use"]
    assert errors_of("display = false\n" + MINIMAL) == [
        "display = False is a boolean: it must be a table ([display])"]
    data = parse_protocol(MINIMAL).to_dict()
    data["display"] = {"show_memory_use": "yes"}
    with pytest.raises(ProtocolError) as info:
        protocol_from_dict(data)
    assert info.value.errors == ["display.show_memory_use = 'yes' is a string: it must be a boolean"]


# Consent files stay inside the protocol's folder; a protocol that travelled as data names no files -------------

@pytest.mark.parametrize("kind", ["parent", "absolute", "symlink"])
def test_a_consent_file_outside_the_protocols_folder_is_refused(tmp_path: Path, kind: str) -> None:
    folder = tmp_path / "study"
    folder.mkdir()
    secret = tmp_path / "secret.md"
    secret.write_text("The researcher's private notes.", encoding="utf-8")
    name = {"parent": "../secret.md", "absolute": str(secret), "symlink": "consent.md"}[kind]
    if kind == "symlink":
        (folder / "consent.md").symlink_to(secret)
    study = folder / "study.toml"
    study.write_text(replace(MINIMAL, 'text = "You agree."', f"file = {json.dumps(name)}"), encoding="utf-8")
    with pytest.raises(ProtocolError) as info:
        load_protocol(study)
    [error] = info.value.errors
    assert error.startswith(f"consent[1].file = {name!r} is outside the protocol's folder")
    assert str(folder) in error
    # `study check` says the same, and the server refuses to publish it.
    checked = CliRunner().invoke(cli, ["study", "check", str(study)])
    assert checked.exit_code == 1
    assert "outside the protocol's folder" in checked.output
    published = CliRunner().invoke(server_cli, ["init", "--protocol", str(study), "--db", str(tmp_path / "s.db")])
    assert published.exit_code != 0
    assert "outside the protocol's folder" in published.output
    assert "private notes" not in checked.output + published.output


def test_a_consent_file_inside_the_folder_may_be_given_by_absolute_path(tmp_path: Path) -> None:
    (tmp_path / "texts").mkdir()
    (tmp_path / "texts" / "v1.md").write_text("You agree, from a file.", encoding="utf-8")
    study = tmp_path / "study.toml"
    study.write_text(replace(MINIMAL, 'text = "You agree."', f"file = {json.dumps(str(tmp_path / 'texts' / 'v1.md'))}"),
                     encoding="utf-8")
    assert load_protocol(study).current_consent.text == "You agree, from a file."


def test_a_protocol_too_large_for_the_apps_to_accept_is_refused_before_it_is_published(tmp_path: Path) -> None:
    """Consent files each within their own limit can still make a protocol the apps refuse to read (non-ASCII text
    takes up to 6 bytes a character in the server's answer): `study check` and `init` say so instead."""
    consent = "Согласие участника. " * 6800  # about 250 KiB of UTF-8, about 700 KiB as the server sends it
    for name in ("v1.md", "v2.md"):
        (tmp_path / name).write_text(consent, encoding="utf-8")
    one = replace(MINIMAL, 'text = "You agree."', 'file = "v1.md"')
    study = tmp_path / "study.toml"
    study.write_text(one, encoding="utf-8")
    protocol = load_protocol(study)
    assert published_size(one, protocol) <= MAX_PUBLISHED_BYTES < MAX_ANSWER_BYTES["enroll"]
    two = one + '\n[[consent]]\nversion = "2"\ntitle = "Consent, second version"\nfile = "v2.md"\n'
    study.write_text(two, encoding="utf-8")
    with pytest.raises(ProtocolError) as info:
        load_protocol(study)
    [error] = info.value.errors
    assert "KiB" in error and "shorten the consent documents" in error
    published = CliRunner().invoke(server_cli, ["init", "--protocol", str(study), "--db", str(tmp_path / "s.db")])
    assert published.exit_code != 0 and "shorten the consent documents" in published.output


def test_a_device_or_folder_is_not_a_consent_file(tmp_path: Path) -> None:
    (tmp_path / "zero").symlink_to("/dev/zero")
    (tmp_path / "texts").mkdir()
    for name, problem in (("zero", "outside the protocol's folder"), ("texts", "not a regular file")):
        study = tmp_path / "study.toml"
        study.write_text(replace(MINIMAL, 'text = "You agree."', f'file = "{name}"'), encoding="utf-8")
        with pytest.raises(ProtocolError) as info:
            load_protocol(study)
        assert problem in info.value.errors[0]


def test_a_protocol_received_as_data_or_text_names_no_files(tmp_path: Path) -> None:
    secret = tmp_path / "private.txt"
    secret.write_text("The participant's private diary.", encoding="utf-8")
    data = parse_protocol(MINIMAL).to_dict()
    data["consent"] = [{"version": "1", "title": "Consent", "file": str(secret)}]
    with pytest.raises(ProtocolError) as info:
        protocol_from_dict(data, source="https://study.example.org/v1/protocol")
    [error] = info.value.errors
    assert error.startswith(f"consent[1].file = {str(secret)!r} is not allowed here")
    assert "inline" in error
    # Without a folder (a protocol given as text), an absolute path is refused too.
    errors = errors_of(replace(MINIMAL, 'text = "You agree."', f"file = {json.dumps(str(secret))}"))
    assert any(e.startswith(f"consent[1].file = {str(secret)!r} cannot be read") for e in errors)
