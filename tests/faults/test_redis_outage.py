"""A worker outlives Redis refusing connections for a moment (a restart or failover).

The fault suite found that it did not: the refused connect surfaced as a bare ``OSError``, which the
redis-py ``Retry`` did not retry, so arq's poll raised and the process exited 1. ``OSError`` is now in
``memcompress.bootstrap.REDIS_RETRY_ON``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest
from redis.asyncio import Redis

from memcompress.embedded import Server, free_port, mongo_server, valkey_server
from memcompress.keys import job_id
from memcompress.queue import request_compression
from memcompress.testing.workers import WorkerProcess, eventually, requests_key, start_worker, worker_env

pytestmark = pytest.mark.integration


@pytest.fixture
def servers() -> Iterator[tuple[Server, Server]]:
    mongo, valkey = mongo_server().start(), valkey_server(free_port()).start()
    try:
        yield mongo, valkey
    finally:
        valkey.close()
        mongo.close()


async def test_a_worker_outlives_two_seconds_of_redis_refusing_connections(
    servers: tuple[Server, Server],
) -> None:
    mongo, valkey = servers
    queue = f"outage:{uuid.uuid4().hex[:8]}"
    env = worker_env(
        mongo.url, f"mc_outage_{uuid.uuid4().hex[:8]}", valkey.url, queue, summarizer="extractive"
    )
    worker: WorkerProcess = start_worker(env)
    try:

        async def polling() -> bool:
            return "redis_version=" in worker.log

        await eventually(polling, within_s=30)
        await asyncio.sleep(1.5)  # past on_startup: the worker is polling the queue

        await asyncio.to_thread(valkey.stop)
        await asyncio.sleep(2)
        await asyncio.to_thread(valkey.start)
        await asyncio.sleep(2)
        assert worker.process.poll() is None, worker.log[-300:]

        redis = Redis.from_url(valkey.url)
        try:
            # an app's request: the worker's drainer, too, outlived the outage
            assert await request_compression(redis, "someone", 0, key=requests_key(queue))
        finally:
            await redis.aclose()

        async def ran_the_job() -> bool:
            return f"← {job_id('someone', queue)}:compress_user" in worker.log

        await eventually(ran_the_job, within_s=30)
    finally:
        worker.stop()
        worker.log_path.unlink(missing_ok=True)
