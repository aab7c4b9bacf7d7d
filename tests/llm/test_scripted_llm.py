"""The scripted server other test folders rely on: it must behave like an OpenAI-compatible server."""

from __future__ import annotations

import asyncio
import json

import httpx

from tests.support.scripted_llm import ScriptedLLM, run_scripted_llm, split_tokens

CHAT = {"model": "m", "messages": [{"role": "user", "content": "ping"}]}


async def events(client: httpx.AsyncClient, url: str, body: dict) -> list[str]:
    async with client.stream("POST", url, json={**body, "stream": True}) as response:
        return [line async for line in response.aiter_lines() if line]


def test_split_tokens_keeps_every_character() -> None:
    text = "Hello there,  participant!\nNew line "
    assert "".join(split_tokens(text)) == text
    assert split_tokens("a b") == ["a", " b"]


async def test_queue_order_default_echo_and_recording(scripted_llm: ScriptedLLM) -> None:
    scripted_llm.add_text("first")
    scripted_llm.add_json({"k": 1})
    scripted_llm.add_rule(lambda body: "rule saw " + body["messages"][-1]["content"])
    url = scripted_llm.base_url + "/chat/completions"
    async with httpx.AsyncClient() as client:
        answers = [(await client.post(url, json=CHAT)).json()["choices"][0]["message"]["content"] for _ in range(4)]
        scripted_llm.set_default("fixed")
        answers.append((await client.post(url, json=CHAT)).json()["choices"][0]["message"]["content"])
    assert answers == ["first", '{"k": 1}', "rule saw ping", "You said: ping", "fixed"]
    assert len(scripted_llm.requests) == 5 and scripted_llm.last_request == CHAT
    assert scripted_llm.pending == 0


async def test_stream_format_usage_and_models(scripted_llm: ScriptedLLM) -> None:
    scripted_llm.add_text("a b")
    async with httpx.AsyncClient() as client:
        lines = await events(client, scripted_llm.base_url + "/chat/completions",
                             {**CHAT, "stream_options": {"include_usage": True}})
        models = (await client.get(scripted_llm.base_url + "/models")).json()
    assert lines[-1] == "data: [DONE]"
    payloads = [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]
    assert [p["choices"][0]["delta"].get("content") for p in payloads[:3]] == ["", "a", " b"]
    assert payloads[3]["choices"][0]["finish_reason"] == "stop"
    assert payloads[4]["usage"]["completion_tokens"] == 2
    assert models["data"][0]["id"] == scripted_llm.model


async def test_errors_raw_sse_and_response_format_rejection() -> None:
    with run_scripted_llm(supported_response_formats={"text"}) as llm:
        llm.add_error(503, "busy", headers={"Retry-After": "2"})
        llm.add_raw_sse("data: {garbage\n\n")
        url = llm.base_url + "/chat/completions"
        async with httpx.AsyncClient() as client:
            busy = await client.post(url, json=CHAT)
            rejected = await client.post(url, json={**CHAT, "response_format": {"type": "json_object"}})
            raw = await events(client, url, CHAT)
    assert (busy.status_code, busy.text, busy.headers["retry-after"]) == (503, "busy", "2")
    assert rejected.status_code == 400 and "response_format" in rejected.json()["error"]["message"]
    assert raw == ["data: {garbage"]
    assert len(llm.requests) == 3  # rejected requests are recorded too


async def test_concurrent_streams_are_served_concurrently(scripted_llm: ScriptedLLM) -> None:
    # Both replies pause after one chunk; both can only be paused at once if they stream concurrently.
    first = scripted_llm.add_text("one two", hold_after=1)
    second = scripted_llm.add_text("three four", hold_after=1)
    url = scripted_llm.base_url + "/chat/completions"
    async with httpx.AsyncClient() as client:
        tasks = [asyncio.create_task(events(client, url, CHAT)) for _ in range(2)]
        await first.wait_held_async()
        await second.wait_held_async()
        first.release()
        second.release()
        results = await asyncio.gather(*tasks)
    assert all(lines[-1] == "data: [DONE]" for lines in results)
    assert first.finished.is_set() and second.finished.is_set()


async def test_paced_stream_sends_every_chunk() -> None:
    with run_scripted_llm(tokens_per_s=500) as llm:
        llm.add_text("w" + " w" * 19)
        async with httpx.AsyncClient() as client:
            lines = await events(client, llm.base_url + "/chat/completions", CHAT)
    assert len(lines) == 1 + 20 + 1 + 1  # role chunk, 20 tokens, finish chunk, [DONE]


def test_the_disconnect_log_filter_ends_on_a_cyclic_exception_chain() -> None:
    # starlette re-raises an exception group "from" its own member; the filter sits on uvicorn's logger for the
    # whole test run, so a loop there would turn any later server error into a RecursionError.
    from tests.support.scripted_llm import _contains_disconnect, _ScriptedDisconnect

    inner = RuntimeError("disk I/O error")
    group = BaseExceptionGroup("stream", [inner])
    inner.__cause__ = group
    assert _contains_disconnect(group) is False
    inner.__context__ = _ScriptedDisconnect()
    assert _contains_disconnect(group) is True
