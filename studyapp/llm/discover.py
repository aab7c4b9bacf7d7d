"""Find OpenAI-compatible model servers already running on this computer (Ollama, LM Studio, llama.cpp's server).

On the first start the app asks each candidate's ``GET /v1/models`` with a short timeout and offers the servers
that answer, with the models they serve: a participant who runs one gets better answers than from the embedded
135M model without typing a URL. Nothing leaves the computer: only 127.0.0.1 is asked.

``STUDYAPP_LOCAL_SERVERS`` replaces the candidates (comma-separated base URLs ending in ``/v1``; empty: ask none).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from dataclasses import dataclass

import httpx

ENV_LOCAL_SERVERS = "STUDYAPP_LOCAL_SERVERS"

# (what participants know the program as, its usual base URL).
KNOWN_SERVERS: tuple[tuple[str, str], ...] = (
    ("Ollama", "http://127.0.0.1:11434/v1"),
    ("LM Studio", "http://127.0.0.1:1234/v1"),
    ("llama.cpp server", "http://127.0.0.1:8080/v1"),
)
PROBE_TIMEOUT_S = 1.0


@dataclass(frozen=True)
class LocalServer:
    name: str
    base_url: str
    models: tuple[str, ...]


def candidate_servers() -> list[tuple[str, str]]:
    """The servers to ask: the known ones, or those ``STUDYAPP_LOCAL_SERVERS`` names."""
    configured = os.environ.get(ENV_LOCAL_SERVERS)
    if configured is None:
        return list(KNOWN_SERVERS)
    known = {url: name for name, url in KNOWN_SERVERS}
    urls = [u.strip().rstrip("/") for u in configured.split(",") if u.strip()]
    return [(known.get(url, "OpenAI-compatible server"), url) for url in urls]


async def _probe(client: httpx.AsyncClient, name: str, base_url: str) -> LocalServer | None:
    try:
        response = await client.get(f"{base_url}/models")
        response.raise_for_status()
        data = response.json().get("data")
    except (httpx.HTTPError, ValueError, AttributeError):
        return None  # nothing there, or not an OpenAI-compatible server: nothing to offer
    if not isinstance(data, list):
        return None
    models = tuple(str(m["id"]) for m in data if isinstance(m, dict) and m.get("id"))
    return LocalServer(name, base_url, models) if models else None


async def find_local_servers(candidates: Sequence[tuple[str, str]] | None = None,
                             timeout_s: float = PROBE_TIMEOUT_S) -> list[LocalServer]:
    """The candidate servers that answer ``/v1/models`` with at least one model, in candidate order."""
    candidates = candidate_servers() if candidates is None else list(candidates)
    if not candidates:
        return []
    # No proxy from the environment: these are addresses on this computer.
    async with httpx.AsyncClient(timeout=timeout_s, trust_env=False) as client:
        found = await asyncio.gather(*(_probe(client, name, url) for name, url in candidates))
    return [server for server in found if server is not None]
