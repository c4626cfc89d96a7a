"""Worker processes for tests: ``python -m memcompress worker`` as real children, configured only
through ``MEMCOMPRESS_*`` environment variables, as in production."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

# PYTHONPATH: a worker started from a checkout that is not the installed one runs that checkout.
PASSED_THROUGH = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "VIRTUAL_ENV", "PYTHONPATH")


def requests_key(queue: str) -> str:
    """The requests set of a test's workers: one per test queue, so tests never drain each other's."""
    return f"{queue}:requests"


def worker_env(
    mongo_uri: str, db_name: str, redis_url: str, queue: str, **settings: object
) -> dict[str, str]:
    """A clean environment (nothing inherited but PATH and friends) plus ``MEMCOMPRESS_<NAME>`` settings."""
    env = {name: os.environ[name] for name in PASSED_THROUGH if name in os.environ}
    env |= {
        "MEMCOMPRESS_MONGODB_URI": mongo_uri,
        "MEMCOMPRESS_MONGODB_DB": db_name,
        "MEMCOMPRESS_REDIS_URL": redis_url,
        "MEMCOMPRESS_QUEUE_NAME": queue,
        "MEMCOMPRESS_REQUESTS_KEY": requests_key(queue),
        "MEMCOMPRESS_METRICS_PORT": "0",
        "MEMCOMPRESS_SCAN_CRON": "0 0 1 1 *",  # tests queue users themselves unless they say otherwise
    }
    env |= {f"MEMCOMPRESS_{name.upper()}": str(value) for name, value in settings.items()}
    return env


@dataclass
class WorkerProcess:
    process: subprocess.Popen[bytes]
    log_path: Path
    stopped: bool = field(default=False)

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float = 60) -> int:
        return self.process.wait(timeout=timeout)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_worker(env: dict[str, str], *, burst: bool = False) -> WorkerProcess:
    log_path = Path(tempfile.mkstemp(prefix="memcompress-worker-", suffix=".log")[1])
    argv = [sys.executable, "-m", "memcompress", "worker"]
    if burst:
        argv.append("--burst")
    with log_path.open("wb") as log:
        process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    return WorkerProcess(process, log_path)


async def eventually(check: Callable[[], Awaitable[bool]], within_s: float = 60) -> None:
    """Wait until ``check()`` is true; fail the test after ``within_s`` seconds."""
    deadline = time.monotonic() + within_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within_s:g}s")
        await asyncio.sleep(0.1)
