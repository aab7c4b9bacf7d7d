"""OpenAICompatModel against a genuine OpenAI-compatible server: llama_cpp.server with SmolLM2."""

from __future__ import annotations

import pytest

from studyapp.llm.base import ChatParams, ModelUnreachable
from studyapp.llm.openai_compat import OpenAICompatModel
from tests.support.llama_server import LlamaServer

pytestmark = pytest.mark.slow

GREEDY = ChatParams(temperature=0.0, max_tokens=16, seed=1)


async def test_streams_a_short_reply(llama_server: LlamaServer) -> None:
    model = OpenAICompatModel(llama_server.base_url, llama_server.model)
    try:
        deltas = [d async for d in model.stream([{"role": "user", "content": "Say hello."}], GREEDY)]
        assert len(deltas) > 1
        assert "".join(deltas).strip()
        # The non-streaming path reads the same kind of answer. (Not the identical text: llama.cpp reuses the
        # cached prompt on the second request, and since 0.3.3x that can tip a greedy near-tie a few tokens in.)
        completed = await model.complete([{"role": "user", "content": "Say hello."}], GREEDY)
        assert completed.strip() and completed.split()[0] == "".join(deltas).split()[0]
    finally:
        await model.aclose()


async def test_complete_json_returns_parseable_json(llama_server: LlamaServer) -> None:
    schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
    model = OpenAICompatModel(llama_server.base_url, llama_server.model)
    try:
        result = await model.complete_json([{"role": "user", "content": "Give a name for a cat as JSON."}],
                                           schema, ChatParams(temperature=0.0, max_tokens=32))
    finally:
        await model.aclose()
    assert isinstance(result.value, dict), result.raw
    assert isinstance(result.value["name"], str)
    # llama-cpp-python's server rejects json_schema and takes the schema with JSON mode (grammar-constrained).
    assert model.json_mode == "json_object_schema"


async def test_models_and_ping(llama_server: LlamaServer) -> None:
    model = OpenAICompatModel(llama_server.base_url, llama_server.model)
    try:
        assert llama_server.model in await model.list_models()
        assert llama_server.model in await model.ping()
    finally:
        await model.aclose()


async def test_wrong_base_url_path(llama_server: LlamaServer) -> None:
    # A base URL without /v1 is the commonest settings mistake; the message points at it.
    model = OpenAICompatModel(llama_server.base_url.removesuffix("/v1"), llama_server.model)
    try:
        with pytest.raises(Exception) as caught:
            [d async for d in model.stream([{"role": "user", "content": "Hi"}], GREEDY)]
    finally:
        await model.aclose()
    assert "/v1" in str(caught.value)
    assert not isinstance(caught.value, ModelUnreachable)
