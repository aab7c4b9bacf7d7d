"""A fault-injecting HTTP proxy for sync tests: sits between the uploader and a real server.

For each request it picks a mode from a plan: pass it on, drop the connection before forwarding,
forward it and drop the connection after the server committed (the reply never arrives), cut the
reply half-way, or answer 500 / 429 itself. Every connection carries one request (``Connection:
close``), so each fault hits exactly one attempt.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Callable

MODES = ("pass", "drop_before", "drop_after", "cut_reply", "http500", "http429")


def _response(status: int, reason: str, extra: str = "") -> bytes:
    body = b'{"detail":"injected fault"}'
    return (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"{extra}Connection: close\r\n\r\n").encode() + body


class FaultProxy:
    def __init__(self, upstream_port: int, plan: Callable[[int, str], str], *, retry_after: str = "0") -> None:
        self.upstream_port = upstream_port
        self.plan = plan  # (request number, request line) -> mode
        self.retry_after = retry_after
        self.counts: Counter[str] = Counter()
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
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            up_writer.write(("\r\n".join([*kept, "Connection: close", "", ""])).encode("latin-1") + body)
            await up_writer.drain()
            reply = await up_reader.read()  # until the server closes: the request is fully handled
            up_writer.close()
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
