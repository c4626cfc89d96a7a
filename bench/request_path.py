"""The files of ``memcompress`` one app request crosses, from its ``ZADD`` to the trim, and the hops
between them: counted by a profiler hook, not by hand.

    .venv/bin/python bench/request_path.py            # user_memory, archive retention (the defaults)
    .venv/bin/python bench/request_path.py --files    # also list the files and the hops

One user over the threshold is seeded, the app's request is one ``ZADD`` from plain redis-py, and the
worker's path runs in this process as a worker runs it: the drainer's claim, then arq's three calls of
a job (``on_job_start``, ``compress_user``, ``after_job_end``). Start-up (settings, connections, index
checks) happens before the hook is set and is not counted. A *file* is a module of ``memcompress``
with code that ran; a *hop* is a distinct (caller's file, callee's file) pair of a call between two of
them. Servers: embedded (or MEMCOMPRESS_BENCH_MONGODB_URI / MEMCOMPRESS_BENCH_REDIS_URL). Prints
numbers, asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import Any

from common import bench_servers, make_events, print_machine
from redis.asyncio import Redis

import memcompress
from memcompress.bootstrap import open_services
from memcompress.jobs.drainer import drain_due_requests
from memcompress.keys import job_id
from memcompress.settings import load_settings
from memcompress.testing.app_layouts import append_as_app
from memcompress.worker.tasks import after_job_end, compress_user, on_job_start

PACKAGE = Path(memcompress.__file__).resolve().parent
EVENTS = 60  # over the default threshold (50), so the fold trims


class PathTracer:
    """A ``sys.setprofile`` hook: which package files ran, and which of them called which."""

    def __init__(self) -> None:
        self.files: Counter[str] = Counter()
        self.hops: set[tuple[str, str]] = set()

    def _own(self, frame: FrameType | None) -> str | None:
        if frame is None:
            return None
        path = Path(frame.f_code.co_filename)
        return str(path.relative_to(PACKAGE)) if path.is_relative_to(PACKAGE) else None

    def __call__(self, frame: FrameType, event: str, arg: Any) -> None:
        if event != "call" or (callee := self._own(frame)) is None:
            return
        self.files[callee] += 1
        caller = frame.f_back
        while caller is not None and self._own(caller) is None:  # through library frames (a driver's hooks)
            caller = caller.f_back
        if (source := self._own(caller)) is not None and source != callee:
            self.hops.add((source, callee))


async def trace_one_request(mongo_url: str, redis_url: str) -> tuple[PathTracer, int, int]:
    tag = uuid.uuid4().hex[:8]
    settings = load_settings(
        mongodb_uri=mongo_url,
        redis_url=redis_url,
        mongodb_db=f"memcompress_path_{tag}",
        queue_name=f"memcompress:path:{tag}",
        requests_key=f"memcompress:path:{tag}:requests",
        summarizer="extractive",
    )
    user = f"path-user-{tag}"
    tracer = PathTracer()
    async with open_services(settings) as services:
        await services.maintenance.ensure_indexes()
        await append_as_app(settings, make_events(user, EVENTS))
        app = Redis.from_url(redis_url)  # the app: plain redis-py
        await app.zadd(settings.requests_key, {user: time.time() - 1}, nx=True)
        await app.aclose()
        ctx: dict[str, Any] = {
            "services": services,
            "job_id": job_id(user, settings.queue_name),
            "job_try": 1,
        }
        sys.setprofile(tracer)
        try:
            await drain_due_requests(services)
            await on_job_start(ctx)
            await compress_user(ctx, user)
            await after_job_end(ctx)
        finally:
            sys.setprofile(None)
        left = await services.memory.count_events(user)
        await services.maintenance.drop_database()
    return tracer, EVENTS, left


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--files", action="store_true", help="list the files and the hops")
    args = parser.parse_args()
    print_machine()
    with bench_servers() as servers:
        tracer, seeded, left = asyncio.run(trace_one_request(servers.mongo_url, servers.redis_url))
    print(
        f"request path: {len(tracer.files)} files, {len(tracer.hops)} hops ({seeded} events -> {left} stored)"
    )
    if args.files:
        for name, calls in sorted(tracer.files.items()):
            print(f"  {name:45} {calls:6} calls")
        for source, target in sorted(tracer.hops):
            print(f"  {source} -> {target}")
    return 0 if left < seeded else 1


if __name__ == "__main__":
    sys.exit(main())
