"""Which model serves which role: the participant's own chat model, or the enrolled study's choices."""

from __future__ import annotations

from pathlib import Path

from studyapp.context import AppContext
from studyapp.llm.openai_compat import OpenAICompatModel
from studyapp.study.current import save_enrollment
from studyapp.study.protocol import parse_protocol
from studyapp.tui.services import Services

PROTOCOL = """
[study]
id = "roles"
title = "Roles"
version = "1"
duration_days = 7

[[consent]]
version = "1"
title = "Consent"
text = "Yes."

[categories.ratings]
required = true

[comparisons]
min_turns_between = 2
daily_cap = 5
probability = 0.5
min_attributes = 1

[attribute_review]
every_new_attributes = 3
batch_size = 3
max_per_day = 9

[models.assistant]
model = "chat-model"
base_url = "http://127.0.0.1:9/v1"

[models.extractor]
model = "extract-model"
base_url = "http://127.0.0.1:9/v1"

[[models.judge]]
model = "judge-a"
base_url = "http://127.0.0.1:9/v1"

[[models.judge]]
model = "judge-b"
base_url = "http://127.0.0.1:9/v1"
"""


def chat_model() -> OpenAICompatModel:
    return OpenAICompatModel("http://127.0.0.1:9/v1", "participant-model")


def test_without_a_study_every_role_uses_the_participants_model(tmp_path: Path) -> None:
    services = Services(AppContext.create(tmp_path), model_factory=chat_model)
    assert services.role_model("extractor") is services.chat.model
    assert services.judge_models() == [services.chat.model]


async def test_an_enrolled_study_chooses_its_models(tmp_path: Path) -> None:
    app_ctx = AppContext.create(tmp_path)
    save_enrollment(app_ctx.db, parse_protocol(PROTOCOL), participant_id="p1", server_url="http://127.0.0.1:9")
    services = Services(app_ctx, model_factory=chat_model)
    extractor = services.role_model("extractor")
    assert isinstance(extractor, OpenAICompatModel) and extractor.model == "extract-model"
    # A role the study leaves out falls back to the chat model; the same spec gives the same instance.
    assert services.role_model("selector") is services.chat.model
    assert services.role_model("extractor") is extractor
    assert [m.name for m in services.judge_models()] == ["judge-a", "judge-b"]
    # Enrolling switches the chat to the study's assistant model.
    await services.reload_study()
    settings = services.model_settings()
    assert (settings.model, settings.base_url) == ("chat-model", "http://127.0.0.1:9/v1")
    await services.aclose()


async def test_an_unreachable_study_extractor_shows_in_the_status_line_and_doctor(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from studyapp.cli import cli

    app_ctx = AppContext.create(tmp_path)
    save_enrollment(app_ctx.db, parse_protocol(PROTOCOL), participant_id="p1", server_url="http://127.0.0.1:9")
    services = Services(app_ctx, model_factory=chat_model)
    saved = services.chat.save_user_message(None, "I run marathons and I am vegetarian.", memory_enabled=True)
    [result] = await services.extract(saved.conversation.id)
    assert result.status == "unavailable"
    [line] = [p for p in services.status_parts() if p.startswith("Model problem:")]
    assert "extractor (extract-model)" in line
    await services.aclose()
    app_ctx.close()

    doctor = CliRunner().invoke(cli, ["doctor", "--no-model-check", "--data-dir", str(tmp_path)])
    assert "study models:    extractor (extract-model) failing since" in doctor.output, doctor.output


async def test_a_study_model_that_works_again_clears_its_problem(tmp_path: Path) -> None:
    from studyapp.study.roles import note_outcome, role_problems

    app_ctx = AppContext.create(tmp_path)
    note_outcome(app_ctx.db, "selector", "m", "HTTP 503")
    note_outcome(app_ctx.db, "selector", "m", "HTTP 502")
    [problem] = role_problems(app_ctx.db)
    assert problem.error == "HTTP 502"
    note_outcome(app_ctx.db, "selector", "m", None)
    assert role_problems(app_ctx.db) == []
    app_ctx.close()
