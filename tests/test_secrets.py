"""API keys and tokens: the OS keyring, or STUDYAPP_API_KEY for one run where there is none."""

from __future__ import annotations

from collections.abc import Iterator

import keyring
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
