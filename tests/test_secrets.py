"""API keys and tokens: the OS keyring, a private file by the participant's choice, or STUDYAPP_API_KEY for one run."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import keyring
import platformdirs
import pytest
from keyring.backends import fail

from studyapp import secrets
from tests.support.keyring import MemoryKeyring, memory_keyring  # noqa: F401


@pytest.fixture
def no_keyring() -> Iterator[None]:
    previous = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    yield
    keyring.set_keyring(previous)


def test_without_a_keyring_the_app_says_so_and_takes_the_key_from_the_environment(
    no_keyring: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    status = secrets.keyring_status()
    assert not status.available and "STUDYAPP_API_KEY" in status.hint
    with pytest.raises(secrets.SecretStoreUnavailable, match="STUDYAPP_API_KEY"):
        secrets.set_api_key("default", "sk-nowhere")
    assert secrets.get_api_key("default") is None
    monkeypatch.setenv("STUDYAPP_API_KEY", "sk-from-env")
    assert secrets.get_api_key("default") == "sk-from-env"


def test_the_keyring_holds_keys_and_tokens_and_wins_over_the_environment(
    memory_keyring: MemoryKeyring, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STUDYAPP_API_KEY", "sk-from-env")
    secrets.set_api_key("default", "sk-in-keyring")
    assert secrets.get_api_key("default") == "sk-in-keyring"
    secrets.set_participant_token("study-1", "tok")
    assert secrets.get_participant_token("study-1") == "tok"
    secrets.delete_participant_token("study-1")
    assert secrets.get_participant_token("study-1") is None
    assert set(memory_keyring.passwords) == {("studyapp", "api_key:default")}


def test_a_token_kept_in_a_file_by_choice_is_private_and_read_like_any_other(no_keyring: None) -> None:
    path = secrets.secrets_file()
    # Without the choice nothing is written anywhere: no silent fallback to the file.
    with pytest.raises(secrets.SecretStoreUnavailable, match="--store-token-in-file"):
        secrets.set_participant_token("study-1", "tok")
    assert not path.exists()
    secrets.set_participant_token("study-1", "tok", in_file=True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert secrets.get_participant_token("study-1") == "tok"
    assert secrets.participant_token_location("study-1") == secrets.SecretLocation("file", path)
    secrets.set_api_key("default", "sk-in-file", in_file=True)
    assert secrets.get_api_key("default") == "sk-in-file"
    assert secrets.api_key_location("default").where == "file"
    secrets.delete_participant_token("study-1")
    assert secrets.get_participant_token("study-1") is None and path.exists()  # the API key is still there
    secrets.delete_secret("api_key", "default")
    assert not path.exists()  # nothing left: the file is gone


def test_a_secrets_file_others_can_read_is_refused_with_what_to_do(no_keyring: None) -> None:
    secrets.set_participant_token("study-1", "tok", in_file=True)
    path = secrets.secrets_file()
    path.chmod(0o644)
    with pytest.raises(secrets.SecretFileExposed, match=f"chmod 600 {path}") as refused:
        secrets.get_participant_token("study-1")
    assert "tok" not in str(refused.value)
    assert "0644" in secrets.participant_token_location("study-1").problem
    path.chmod(0o600)
    assert secrets.get_participant_token("study-1") == "tok"
    # Deleting works whatever the mode: forgetting a secret is always allowed.
    path.chmod(0o640)
    secrets.delete_participant_token("study-1")
    assert not path.exists()


def test_a_damaged_secrets_file_says_how_to_recover(no_keyring: None) -> None:
    path = secrets.ensure_file_store()
    path.write_text("{not json", encoding="utf-8")
    path.chmod(0o600)
    with pytest.raises(secrets.SecretStoreUnavailable, match=r"damaged.*Delete it"):
        secrets.get_participant_token("study-1")
    # Found before an enrollment code is spent.
    with pytest.raises(secrets.SecretStoreUnavailable, match="damaged"):
        secrets.ensure_file_store()


def test_a_damaged_secrets_file_does_not_hide_what_the_keyring_holds(memory_keyring: MemoryKeyring) -> None:
    secrets.set_participant_token("study-1", "in-keyring")
    secrets.ensure_file_store().write_text("{not json", encoding="utf-8")
    assert secrets.get_participant_token("study-1") == "in-keyring"
    secrets.set_participant_token("study-1", "again")
    assert secrets.get_participant_token("study-1") == "again"


def test_storing_in_one_place_removes_the_other(memory_keyring: MemoryKeyring) -> None:
    secrets.set_participant_token("study-1", "in-keyring")
    secrets.set_participant_token("study-1", "in-file", in_file=True)
    assert memory_keyring.passwords == {}
    assert secrets.get_participant_token("study-1") == "in-file"
    secrets.set_participant_token("study-1", "back-in-keyring")
    assert not secrets.secrets_file().exists()
    assert secrets.participant_token_location("study-1").where == "keyring"
    assert secrets.get_participant_token("study-1") == "back-in-keyring"


def test_the_secrets_file_lives_outside_the_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("STUDYAPP_CONFIG_DIR")
    monkeypatch.setenv("STUDYAPP_DATA_DIR", str(tmp_path / "data"))
    assert secrets.secrets_file().parent == Path(platformdirs.user_config_dir("studyapp", appauthor=False))
    assert not secrets.secrets_file().is_relative_to(tmp_path / "data")


def test_an_api_key_in_a_file_others_can_read_reaches_the_participant_as_a_model_error(no_keyring: None) -> None:
    import asyncio

    from studyapp.llm.base import ChatModel, ModelAuthError
    from studyapp.llm.config import ModelSettings
    from studyapp.llm.factory import make_model

    secrets.set_api_key("default", "sk-exposed", in_file=True)
    secrets.secrets_file().chmod(0o644)
    model = make_model(ModelSettings(model="m", base_url="http://127.0.0.1:9/v1"))
    assert isinstance(model, ChatModel)

    async def first_delta() -> None:
        async for _ in model.stream([{"role": "user", "content": "hi"}]):
            pass

    with pytest.raises(ModelAuthError, match="chmod 600") as refused:
        asyncio.run(first_delta())
    assert "sk-exposed" not in str(refused.value)


def test_a_participant_token_in_a_file_others_can_read_reaches_the_participant_as_a_model_error(
        no_keyring: None) -> None:
    """A role through the study's server authenticates with the token: a loose token file is said at each call."""
    import asyncio

    from studyapp.llm.base import ModelAuthError
    from studyapp.llm.config import ModelSettings
    from studyapp.llm.factory import make_model

    secrets.set_participant_token("study-1", "tok-exposed", in_file=True)
    secrets.secrets_file().chmod(0o644)
    model = make_model(ModelSettings(model="m", base_url="http://127.0.0.1:9/llm/v1", via_study="study-1"))

    async def first_delta() -> None:
        async for _ in model.stream([{"role": "user", "content": "hi"}]):
            pass

    with pytest.raises(ModelAuthError, match=r"participant token cannot be used.*chmod 600") as refused:
        asyncio.run(first_delta())
    assert "tok-exposed" not in str(refused.value)


def test_where_the_platform_puts_config_and_data_in_one_folder_the_secrets_go_beside_it(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # macOS and Windows: platformdirs answers the same folder for both.
    monkeypatch.delenv("STUDYAPP_CONFIG_DIR")
    monkeypatch.delenv("STUDYAPP_DATA_DIR", raising=False)
    shared = str(tmp_path / "Application Support" / "studyapp")
    monkeypatch.setattr(platformdirs, "user_config_dir", lambda *a, **k: shared)
    monkeypatch.setattr(platformdirs, "user_data_dir", lambda *a, **k: shared)
    assert secrets.secrets_file().parent == tmp_path / "Application Support" / "studyapp-config"
    assert not secrets.secrets_file().is_relative_to(shared)
