"""A fault-injecting HTTP proxy for sync tests: sits between the uploader and a real server.

For each request it picks a mode from a plan: pass it on, drop the connection before forwarding,
forward it and drop the connection after the server committed (the reply never arrives), cut the
reply half-way, or answer 500 / 429 itself. Every connection carries one request (``Connection:
close``), so each fault hits exactly one attempt.

In front of ``studyapp-server serve --workers N`` it can also choose the worker (``alternate_workers``): which
worker process accepts a new connection is the kernel's choice, so the proxy opens a connection, asks
``GET /health`` on it, and keeps it for the request only if the worker that answered (``X-Studyapp-Worker``) is
not the one that answered the previous request; otherwise it closes it and opens another. Consecutive requests,
and so every retry of a batch whose reply was lost, then certainly go to different worker processes.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections import Counter
from collections.abc import Callable

MODES = ("pass", "drop_before", "drop_after", "cut_reply", "http500", "http429")
_WORKER = re.compile(rb"(?im)^x-studyapp-worker:[ \t]*(\d+)\r?$")
_LENGTH = re.compile(rb"(?im)^content-length:[ \t]*(\d+)\r?$")
# Connections tried for one request before the proxy gives up finding another worker (each is a fair draw).
MAX_PROBES = 200


def worker_of(reply: bytes) -> str | None:
    """The X-Studyapp-Worker of an HTTP reply (its head), if any."""
    found = _WORKER.search(reply.split(b"\r\n\r\n", 1)[0])
    return found.group(1).decode() if found else None


def _response(status: int, reason: str, extra: str = "") -> bytes:
    body = b'{"detail":"injected fault"}'
    return (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"{extra}Connection: close\r\n\r\n").encode() + body


class FaultProxy:
    def __init__(self, upstream_port: int, plan: Callable[[int, str], str], *, retry_after: str = "0",
                 alternate_workers: bool = False) -> None:
        self.upstream_port = upstream_port
        self.plan = plan  # (request number, request line) -> mode
        self.retry_after = retry_after
        self.alternate_workers = alternate_workers
        self.counts: Counter[str] = Counter()
        # The worker (X-Studyapp-Worker) each forwarded request went to, in order, and the upstream replies'
        # headers per worker; problems finding a worker (the test asserts there were none).
        self.forwarded_to: list[str] = []
        self.replies_from: Counter[str] = Counter()
        self.errors: list[str] = []
        self.probes = 0  # connections opened to find a worker
        self.requests = 0
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._server: asyncio.base_events.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the fault proxy did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        self._server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            length = 0
            kept = [lines[0]]
            for line in lines[1:]:
                name = line.split(":", 1)[0].strip().lower()
                if name == "content-length":
                    length = int(line.split(":", 1)[1])
                if name in ("connection", "keep-alive") or not line:
                    continue
                kept.append(line)
            body = await reader.readexactly(length)
            number = self.requests
            self.requests += 1
            mode = self.plan(number, lines[0])
            self.counts[mode] += 1
            if mode == "drop_before":
                return
            if mode == "http500":
                writer.write(_response(500, "Internal Server Error"))
                await writer.drain()
                return
            if mode == "http429":
                writer.write(_response(429, "Too Many Requests", f"Retry-After: {self.retry_after}\r\n"))
                await writer.drain()
                return
            up_reader, up_writer = await self._upstream()
            up_writer.write(("\r\n".join([*kept, "Connection: close", "", ""])).encode("latin-1") + body)
            await up_writer.drain()
            reply = await up_reader.read()  # until the server closes: the request is fully handled
            up_writer.close()
            worker = worker_of(reply)
            if worker is not None:
                self.replies_from[worker] += 1
            if mode == "drop_after":
                return
            if mode == "cut_reply":
                writer.write(reply[: len(reply) // 2])
                await writer.drain()
                return
            writer.write(reply)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()

    async def _upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A connection to the server for the next request: any, or (``alternate_workers``) one that a worker
        other than the previous request's accepted."""
        if not self.alternate_workers:
            return await asyncio.open_connection("127.0.0.1", self.upstream_port)
        previous = self.forwarded_to[-1] if self.forwarded_to else None
        for _ in range(MAX_PROBES):
            self.probes += 1
            reader, writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            writer.write(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")  # keep-alive: the request follows
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            length = _LENGTH.search(head)
            await reader.readexactly(int(length.group(1)) if length else 0)
            worker = worker_of(head)
            if worker is not None and worker != previous:
                self.forwarded_to.append(worker)
                return reader, writer
            writer.close()
        self.errors.append(f"no worker but {previous} accepted any of {MAX_PROBES} connections")
        raise ConnectionError(self.errors[-1])
