"""`studyapp pipeline extract|select|generate` against the scripted server: JSON in, JSON out, clear errors."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from studyapp.cli import cli
from studyapp.store.db import open_database
from studyapp.store.memory import MemoryStore


@pytest.fixture
def run(scripted_llm, tmp_path, monkeypatch):
    # Anything that would open "the participant's database" implicitly would land here: it must stay empty.
    monkeypatch.setenv("STUDYAPP_DATA_DIR", str(tmp_path / "implicit"))
    monkeypatch.delenv("STUDYAPP_MODEL", raising=False)
    monkeypatch.delenv("STUDYAPP_BASE_URL", raising=False)

    def invoke(*args: str, data=None):
        payload = data if isinstance(data, str) else json.dumps(data)
        return CliRunner().invoke(
            cli, ["pipeline", *args, "--model", scripted_llm.model, "--base-url", scripted_llm.base_url],
            input=payload, catch_exceptions=False,
        )

    yield invoke
    implicit = tmp_path / "implicit"
    assert not (implicit / "studyapp.db").exists()


def test_extract_prints_proposals_with_input_positions(run, scripted_llm):
    scripted_llm.add_json({"attributes": [
        {"statement": "The user bakes bread.", "reason": "said so", "confidence": 0.9, "evidence": [2, 7]},
        {"statement": "The user is hungry.", "reason": "guess", "confidence": 0.1, "evidence": [1]},
    ]})
    result = run("extract", "-", data={"messages": [
        {"role": "user", "content": "Hi!"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "I bake bread every Sunday."},
    ]})
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["status"] == "ok" and out["template"] == "extract@1"
    assert out["proposals"] == [{"statement": "The user bakes bread.", "reason": "said so", "confidence": 0.9,
                                 "evidence": [2]}]
    assert out["dropped"][0]["statement"] == "The user is hungry."


def test_extract_with_memory_shows_the_reconciliation_plan(run, scripted_llm):
    scripted_llm.add_json({"attributes": [
        {"statement": "The user lives in Rome.", "reason": "moved", "confidence": 0.9, "evidence": [1]}]})
    scripted_llm.add_json({"decisions": [{"new": 1, "action": "update", "target": 1,
                                          "text": "The user lives in Rome.", "reason": "moved"}]})
    result = run("extract", data={"messages": [{"role": "user", "content": "I moved to Rome."}],
                                  "memory": ["The user lives in Milan."]})
    out = json.loads(result.output)
    assert out["reconciliation"]["status"] == "ok"
    assert out["reconciliation"]["notes"] == ["updated 'The user lives in Milan.' to 'The user lives in Rome.'"]


def test_select_prints_a_decision_for_every_attribute(run, scripted_llm):
    scripted_llm.add_json({"decisions": [{"id": 2, "use": True, "rationale": "diet"}]})
    result = run("select", data={"memory": ["The user lives in Oslo.", {"text": "The user is vegan."}],
                                 "prompt": "What should I cook?"})
    out = json.loads(result.output)
    assert out["selected"] == ["The user is vegan."]
    assert [(d["index"], d["selected"], d["rationale"]) for d in out["decisions"]] == [
        (0, False, "no decision from model"), (1, True, "diet")]


def test_generate_both_arms_records_templates(run, scripted_llm):
    result = run("generate", data={"memory": ["The user is vegan."], "prompt": "Dinner idea?"})
    out = json.loads(result.output)
    assert out["answers"]["generic"]["template"] == "assistant@1"
    assert out["answers"]["personalized"]["template"] == "assistant_personalized@1"
    generic_req, personal_req = scripted_llm.requests
    assert "vegan" not in generic_req["messages"][0]["content"]
    assert "- The user is vegan." in personal_req["messages"][0]["content"]
    assert generic_req["messages"][1:] == personal_req["messages"][1:]


@pytest.mark.parametrize(("args", "data", "message"), [
    (("select",), "{not json", "The input is not valid JSON (line 1, column 2"),
    (("select",), "[1, 2]", "The input must be a JSON object"),
    (("select",), {"memory": ["x"]}, 'The input needs "prompt"'),
    (("select",), {"memory": [3], "prompt": "hi"}, '"memory"[0] must be a non-empty string'),
    (("extract",), {"messages": [{"role": "assistant", "content": "hi"}]}, "has no user message"),
    (("extract",), {"messages": [{"role": "robot", "content": "hi"}]}, "must be user, assistant or system"),
    (("generate",), {"prompt": "hi"}, 'The personalized arm needs "memory"'),
    (("extract", "/no/such/file.json"), None, "Cannot read /no/such/file.json"),
])
def test_bad_input_gets_a_clear_error(run, scripted_llm, args, data, message):
    result = run(*args, data=data)
    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output
    assert scripted_llm.requests == []


def test_model_errors_are_reported_without_traceback(run, scripted_llm):
    scripted_llm.add_error(401, {"error": {"message": "bad key", "type": "invalid_request_error"}})
    result = run("generate", "--arm", "generic", data={"prompt": "hi"})
    assert result.exit_code == 1 and result.output.startswith("Error: ")
    assert "Traceback" not in result.output


def test_data_dir_memory_is_read_not_written(run, scripted_llm, tmp_path):
    data_dir = tmp_path / "participant"
    data_dir.mkdir()
    db = open_database(data_dir / "studyapp.db")
    MemoryStore(db).add_participant_attribute("The user is vegan.")
    db.close()
    scripted_llm.add_json({"decisions": [{"id": 1, "use": True, "rationale": "diet"}]})
    result = run("select", "--data-dir", str(data_dir), data={"prompt": "Dinner?"})
    assert json.loads(result.output)["selected"] == ["The user is vegan."]
    assert "1. The user is vegan." in scripted_llm.requests[0]["messages"][-1]["content"]
    db = open_database(data_dir / "studyapp.db")
    assert db.execute("SELECT count(*) FROM selections").fetchone()[0] == 0
    db.close()


def test_data_dir_without_a_database_is_an_error_not_a_new_file(run, scripted_llm, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run("select", "--data-dir", str(empty), data={"prompt": "Dinner?"})
    assert result.exit_code == 1 and "There is no studyapp database in" in result.output
    assert list(empty.iterdir()) == []
