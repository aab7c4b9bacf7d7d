"""The study's own questions in the protocol ([[questions]]): every rule, the round trip, the example."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from studyapp.cli import cli
from studyapp.study.protocol import ProtocolError, load_protocol, parse_protocol, protocol_from_dict, protocol_from_json
from studyapp.study.questions import Question
from tests.study.test_protocol import EXAMPLE, errors_of
from tests.study.test_protocol import MINIMAL as WITHOUT_ANSWERS

# Questions need the category their answers travel in.
MINIMAL = WITHOUT_ANSWERS.replace("[comparisons]", "[categories.question_answers]\nrequired = false\n\n[comparisons]")

LIKERT = '''
[[questions]]
id = "written_for_you"
text = "Did that reply feel like it was written for you?"
type = "likert"
points = 5
labels = ["Not at all", "Completely"]
when = "after_turn"
probability = 0.15
daily_cap = 2
'''

CHOICE = '''
[[questions]]
id = "felt_understood"
text = "Which answer made you feel more understood?"
type = "choice"
options = ["Response 1", "Response 2", "Neither", "Both equally"]
when = "after_comparison"
'''


def question(**keys: object) -> str:
    """One [[questions]] table; keys given as None are left out."""
    table = {"id": "q1", "text": "How was it?", "type": "yes_no", "when": "at_end"} | keys
    lines = [f"{k} = {json.dumps(v)}" for k, v in table.items() if v is not None]
    return "\n[[questions]]\n" + "\n".join(lines) + "\n"


def parsed(*questions: str) -> tuple[Question, ...]:
    return parse_protocol(MINIMAL + "".join(questions)).questions


def only_error(*questions: str) -> str:
    [error] = errors_of(MINIMAL + "".join(questions))
    return error


# Good questions -------------------------------------------------------------------------------------------


def test_a_protocol_without_questions_has_none_and_publishes_as_before() -> None:
    p = parse_protocol(MINIMAL)
    assert p.questions == ()
    assert "questions" not in p.to_dict()
    assert "questions" not in p.summary()
    assert protocol_from_dict(p.to_dict()) == p


def test_each_type_and_when_parses_with_its_keys() -> None:
    likert, choice, yes_no, text, daily = parsed(
        LIKERT, CHOICE, question(id="yn", when="after_comparison"),
        question(id="free", type="text"),
        question(id="mood", type="likert", points=3, labels=["Bad", "So-so", "Good"], when="daily", at="08:30"),
    )
    assert likert == Question(id="written_for_you", version="1",
                              text="Did that reply feel like it was written for you?", type="likert",
                              when="after_turn", points=5, labels=("Not at all", "Completely"),
                              probability=0.15, daily_cap=2)
    assert choice.options == ("Response 1", "Response 2", "Neither", "Both equally")
    assert (yes_no.type, yes_no.when) == ("yes_no", "after_comparison")
    # A text question's answer is at most 500 characters unless the file says otherwise.
    assert text.max_length == 500
    assert (daily.labels, daily.at, daily.weekday) == (("Bad", "So-so", "Good"), "08:30", None)


def test_weekly_takes_a_time_and_a_weekday_and_version_is_kept() -> None:
    [q] = parsed(question(type="likert", points=7, labels=["Not at all", "Perfectly"], when="weekly",
                          at="19:00", weekday="sunday", version="2"))
    assert (q.at, q.weekday, q.version) == ("19:00", "sunday", "2")


def test_probability_one_and_the_range_ends_are_allowed() -> None:
    [a, b, c] = parsed(
        question(id="a", when="after_turn", probability=1, daily_cap=1),
        question(id="b", type="likert", points=2, labels=["No", "Yes"]),
        question(id="c", type="text", max_length=2000),
    )
    assert (a.probability, b.points, c.max_length) == (1.0, 2, 2000)


# Bad questions: each message names the key, the value and what is allowed ------------------------------------


@pytest.mark.parametrize(("keys", "message"), [
    ({"id": None}, "questions[1].id is missing"),
    ({"id": "has space"}, "questions[1].id = 'has space' is not a valid question id: use 1-64 letters, digits"),
    ({"text": None}, "questions[1].text is missing"),
    ({"text": "  "}, "questions[1].text is empty"),
    ({"version": 2}, "questions[1].version = 2 is an integer: it must be a string"),
    ({"type": None}, "questions[1].type is missing"),
    ({"type": "slider"}, "questions[1].type = 'slider' is not a question type: it must be one of likert, choice, "
                         "yes_no, text"),
    ({"when": None}, "questions[1].when is missing"),
    ({"when": "hourly"}, "questions[1].when = 'hourly' is not a time to ask: it must be one of after_comparison, "
                         "after_turn, daily, weekly, at_end"),
    ({"type": "likert", "labels": ["a", "b"]}, "questions[1].points is missing"),
    ({"type": "likert", "points": 12, "labels": ["a", "b"]},
     "questions[1].points = 12 is out of range: it must be an integer from 2 to 11"),
    ({"type": "likert", "points": 1, "labels": ["a", "b"]},
     "questions[1].points = 1 is out of range: it must be an integer from 2 to 11"),
    ({"type": "likert", "points": 5.0, "labels": ["a", "b"]},
     "questions[1].points = 5.0 is a float: it must be an integer"),
    ({"type": "likert", "points": 5}, "questions[1].labels is missing"),
    ({"type": "likert", "points": 5, "labels": ["a", "b", "c"]},
     "questions[1].labels = ['a', 'b', 'c'] has 3 labels: give the two end labels (lowest, highest) or one label "
     "per point (5)"),
    ({"type": "likert", "points": 3, "labels": ["a", " ", "c"]}, "has an empty label"),
    ({"type": "choice"}, "questions[1].options is missing"),
    ({"type": "choice", "options": ["Only"]}, "has 1 options: a choice question needs 2 to 12"),
    ({"type": "choice", "options": [str(i) for i in range(13)]}, "has 13 options: a choice question needs 2 to 12"),
    ({"type": "choice", "options": ["Yes", "yes "]}, "repeats 'Yes', 'yes ': every option must be different"),
    ({"type": "choice", "options": ["Yes", ""]}, "has an empty option"),
    ({"type": "choice", "options": "Yes, No"}, "questions[1].options = 'Yes, No' is a string: it must be an array "
                                               "of strings"),
    ({"type": "text", "max_length": 0}, "questions[1].max_length = 0 is out of range: it must be an integer from 1 "
                                        "to 2000"),
    ({"type": "text", "max_length": 2001}, "questions[1].max_length = 2001 is out of range"),
    ({"when": "after_turn", "daily_cap": 1}, "questions[1].probability is missing"),
    ({"when": "after_turn", "probability": 0, "daily_cap": 1},
     "questions[1].probability = 0 is out of range: it must be more than 0 and at most 1"),
    ({"when": "after_turn", "probability": 1.5, "daily_cap": 1}, "questions[1].probability = 1.5 is out of range"),
    ({"when": "after_turn", "probability": 0.5}, "questions[1].daily_cap is missing"),
    ({"when": "after_turn", "probability": 0.5, "daily_cap": 0},
     "questions[1].daily_cap = 0 is out of range: it must be at least 1"),
    ({"when": "daily"}, "questions[1].at is missing"),
    ({"when": "daily", "at": "7pm"}, "questions[1].at = '7pm' is not a time of day: write it as \"HH:MM\""),
    ({"when": "daily", "at": "24:00"}, "questions[1].at = '24:00' is not a time of day"),
    ({"when": "weekly", "at": "19:00"}, "questions[1].weekday is missing"),
    ({"when": "weekly", "at": "19:00", "weekday": "Sun"},
     "questions[1].weekday = 'Sun' is not a day of the week: it must be one of monday, tuesday"),
    # Keys of another type or another when are errors, saying where they belong.
    ({"options": ["a", "b"]}, "questions[1].options does not belong to a question with type = 'yes_no': options is "
                              "only for type = 'choice'; remove it, or change the question's type"),
    ({"type": "text", "points": 5}, "questions[1].points does not belong to a question with type = 'text': points "
                                    "is only for type = 'likert'"),
    ({"at": "19:00"}, "questions[1].at does not belong to a question with when = 'at_end': at is only for when = "
                      "'daily' or 'weekly'"),
    ({"when": "after_comparison", "probability": 0.5},
     "questions[1].probability does not belong to a question with when = 'after_comparison'"),
    ({"when": "daily", "at": "08:00", "weekday": "monday"},
     "questions[1].weekday does not belong to a question with when = 'daily': weekday is only for when = 'weekly'"),
    ({"required": True}, "questions[1].required is not a known key; allowed here: id, version, text, type, when"),
    ({"txet": "x"}, "questions[1].txet is not a known key (did you mean 'text'?)"),
])
def test_a_bad_question_is_refused_with_its_path_and_what_is_allowed(keys: dict[str, object], message: str) -> None:
    assert message in only_error(question(**keys))


def test_an_unknown_type_does_not_add_errors_for_its_keys() -> None:
    # The researcher mistyped the type: its points and labels are not reported as well.
    assert "is not a question type" in only_error(question(type="likrt", points=5, labels=["a", "b"]))


def test_labels_are_not_counted_against_points_that_are_wrong() -> None:
    assert "questions[1].points = 12 is out of range" in only_error(
        question(type="likert", points=12, labels=[str(i) for i in range(12)]))


def test_ids_must_be_unique_and_the_path_counts_from_one() -> None:
    error = only_error(question(id="same"), question(id="other"), question(id="same"))
    assert error.startswith("questions[3].id = 'same' repeats questions[1].id: every question needs its own id")


def test_every_problem_of_every_question_is_collected() -> None:
    errors = errors_of(MINIMAL + question(type="likert", points=20, labels=["a", ""])
                       + question(id="q2", when="weekly", at="25:00", weekday="someday"))
    assert [e.split(" ")[0] for e in errors] == [
        "questions[1].points", "questions[1].labels", "questions[2].at", "questions[2].weekday"]


def test_questions_need_the_question_answers_category() -> None:
    [error] = errors_of(WITHOUT_ANSWERS + question())
    assert "[categories] does not list question_answers" in error
    assert "add [categories.question_answers]" in error


@pytest.mark.parametrize("value", ['"not an array"', '{ id = "q" }', '[1, 2]'])
def test_questions_must_be_an_array_of_tables(value: str) -> None:
    # A plain key belongs before the first table of the file.
    [error] = errors_of(f"questions = {value}\n" + MINIMAL)
    assert error.startswith("questions = ") and "it must be an array of tables ([[questions]]" in error


# The round trip: published as JSON, read back with the same validation ----------------------------------------


def test_questions_travel_through_to_dict_and_back() -> None:
    p = parse_protocol(MINIMAL + LIKERT + CHOICE + question(id="weekly", type="text", when="weekly", at="19:00",
                                                            weekday="sunday"))
    published = p.to_dict()["questions"]
    # Only each question's own keys travel (no None for the keys of other types).
    assert published[0] == {"id": "written_for_you", "version": "1",
                            "text": "Did that reply feel like it was written for you?", "type": "likert",
                            "when": "after_turn", "points": 5, "labels": ["Not at all", "Completely"],
                            "probability": 0.15, "daily_cap": 2}
    assert published[2] == {"id": "weekly", "version": "1", "text": "How was it?", "type": "text", "when": "weekly",
                            "max_length": 500, "at": "19:00", "weekday": "sunday"}
    back = protocol_from_json(p.to_json())
    assert back.questions == p.questions
    assert back == p


def test_a_published_protocol_with_a_bad_question_is_refused() -> None:
    data = parse_protocol(MINIMAL + LIKERT).to_dict()
    data["questions"][0]["points"] = 40
    data["questions"][0]["options"] = ["a", "b"]
    with pytest.raises(ProtocolError) as info:
        protocol_from_dict(data)
    assert info.value.errors == [
        "questions[1].options does not belong to a question with type = 'likert': options is only for "
        "type = 'choice'; remove it, or change the question's type",
        "questions[1].points = 40 is out of range: it must be an integer from 2 to 11",
    ]


# The example and the check command ----------------------------------------------------------------------------


def test_the_example_asks_a_question_at_each_kind_of_moment() -> None:
    p = load_protocol(EXAMPLE)
    assert [(q.id, q.type, q.when) for q in p.questions] == [
        ("felt_understood", "choice", "after_comparison"),
        ("wrong_assumption", "yes_no", "after_comparison"),
        ("written_for_you", "likert", "after_turn"),
        ("kept_up_this_week", "likert", "weekly"),
        ("anything_else", "text", "at_end"),
    ]
    assert protocol_from_dict(p.to_dict()).questions == p.questions


def test_check_command_counts_the_questions_by_when(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["study", "check", str(EXAMPLE)])
    assert result.exit_code == 0, result.output
    assert "questions: 5 (after_comparison 2, after_turn 1, weekly 1, at_end 1)" in result.output
    assert "weekly: kept_up_this_week v1 (likert, 7 points; sunday at 19:00)" in result.output
    bad = tmp_path / "bad.toml"
    bad.write_text(MINIMAL + question(type="likert", points=12, labels=["a", "b"]), encoding="utf-8")
    result = CliRunner().invoke(cli, ["study", "check", str(bad)])
    assert result.exit_code == 1
    assert "questions[1].points = 12 is out of range: it must be an integer from 2 to 11" in result.output
    assert "Traceback" not in result.output
