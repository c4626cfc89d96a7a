"""The app-side protocol end to end: an app that knows nothing of memcompress — a separate Python process
with redis-py alone — sends ``ZADD <requests> NX <due> <user_id>``, and running ``memcompress worker``
processes compress the user: once for a burst, and again after a job for a request made while it ran.
Also the claim itself on the real server, with many clients at once."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from redis.asyncio import Redis

from memcompress.keys import job_id
from memcompress.models import MemoryEvent
from memcompress.repositories.database import COMPACTION_LOG, MongoDatabase
from memcompress.repositories.indexes import ensure_indexes
from memcompress.repositories.job_queue import RedisJobQueue
from memcompress.repositories.user_memory import MongoUserMemoryRepository
from memcompress.testing.factories import T0, make_events
from memcompress.testing.invariant import check_invariant
from memcompress.testing.llm_server import FakeLLM
from memcompress.testing.workers import WorkerProcess, eventually, requests_key, start_worker, worker_env
from tests.integration.conftest import append

pytestmark = pytest.mark.redis

# The app: redis-py and the standard library, in a process of its own.
APP = """
import sys, time
import redis

url, key, user, delay, count = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), int(sys.argv[5])
client = redis.Redis.from_url(url)
added = sum(client.zadd(key, {user: time.time() + delay}, nx=True) for _ in range(count))
assert not [name for name in sys.modules if name.startswith("memcompress")], "the app imported memcompress"
print(added)
"""


async def app_requests(redis_url: str, key: str, user: str, *, delay: float, count: int = 1) -> int:
    """What a non-memcompress app does after appending a user's messages; returns how many ZADDs added."""
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", APP, redis_url, key, user, str(delay), str(count)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return int(done.stdout)


Start = Callable[..., WorkerProcess]


@pytest.fixture
def queue() -> str:
    return f"test:{uuid.uuid4().hex[:10]}"


@pytest.fixture
def start(mongo_uri: str, db_name: str, redis_url: str, queue: str, llm: FakeLLM) -> Iterator[Start]:
    started: list[WorkerProcess] = []

    def run(**settings: Any) -> WorkerProcess:
        defaults = {"llm_base_url": llm.base_url, "llm_api_key": "k", "llm_max_retries": 0}
        defaults |= {"llm_timeout_s": 5, "job_timeout_s": 20, "lock_ttl_s": 25}
        worker = start_worker(worker_env(mongo_uri, db_name, redis_url, queue, **(defaults | settings)))
        started.append(worker)
        return worker

    yield run
    for worker in started:
        worker.stop()
        print(f"--- worker {worker.process.pid} log ---\n{worker.log[-4000:]}")  # shown when a test fails
        worker.log_path.unlink(missing_ok=True)


@pytest.fixture
async def memory(database: MongoDatabase) -> MongoUserMemoryRepository:
    await ensure_indexes(database)
    return MongoUserMemoryRepository(database)


async def _runs(database: MongoDatabase, user: str) -> list[dict[str, Any]]:
    """The user's compaction records, oldest first."""
    cursor = database.collection(COMPACTION_LOG).find({"user_id": user}).sort("started_at", 1)
    return [doc async for doc in cursor]


async def _settled(redis: Redis, queue: str, user: str) -> bool:
    """No request waiting, no job queued or running: nothing more can happen to the user (the tests'
    workers never scan)."""
    return (
        await redis.zscore(requests_key(queue), user) is None
        and await redis.zscore(queue, job_id(user, queue)) is None
        and not await redis.exists(f"arq:in-progress:{job_id(user, queue)}")
    )


async def _assert_nothing_lost(database: MongoDatabase, llm: FakeLLM, events: list[MemoryEvent]) -> None:
    report = await check_invariant(database, llm, events)
    assert (report.lost, report.summarised_twice, report.checked) == ([], [], len(events))


async def test_a_burst_of_100_requests_from_a_plain_redis_client_is_one_compression(
    start: Start,
    memory: MongoUserMemoryRepository,
    database: MongoDatabase,
    redis: Redis,
    redis_url: str,
    llm: FakeLLM,
    queue: str,
) -> None:
    user, idle = f"user-{uuid.uuid4().hex[:8]}", f"idle-{uuid.uuid4().hex[:8]}"
    events = make_events(user, 60)
    await append(database, events + make_events(idle, 60))
    start()
    start()  # two processes drain the same requests

    assert await app_requests(redis_url, requests_key(queue), user, delay=1, count=100) == 1

    async def compressed() -> bool:
        return any(run["outcome"] == "compressed" for run in await _runs(database, user))

    await eventually(compressed, within_s=60)
    await eventually(lambda: _settled(redis, queue, user), within_s=30)
    assert [run["outcome"] for run in await _runs(database, user)] == ["compressed"]
    assert llm.requests == 1
    assert await memory.count_events(user) == 20
    assert await memory.count_events(idle) == 60  # nobody asked for this one
    await _assert_nothing_lost(database, llm, events)


async def test_a_request_made_while_the_users_job_runs_is_served_after_that_job(
    start: Start,
    memory: MongoUserMemoryRepository,
    database: MongoDatabase,
    redis: Redis,
    redis_url: str,
    llm: FakeLLM,
    queue: str,
) -> None:
    user = f"user-{uuid.uuid4().hex[:8]}"
    events = make_events(user, 60)
    await append(database, events)
    llm.latency_s = 1.5
    start()
    assert await app_requests(redis_url, requests_key(queue), user, delay=0) == 1

    async def llm_called() -> bool:
        return llm.requests >= 1

    await eventually(llm_called)  # the job has read the history and is summarising it
    burst = make_events(user, 40, start=T0 + timedelta(hours=1), tag="burst")
    await append(database, burst)
    assert await app_requests(redis_url, requests_key(queue), user, delay=0) == 1

    async def two_runs() -> bool:
        return len(await _runs(database, user)) >= 2

    await eventually(two_runs, within_s=60)
    await eventually(lambda: _settled(redis, queue, user), within_s=30)
    first, second = await _runs(database, user)
    assert (first["outcome"], second["outcome"]) == ("compressed", "compressed")
    assert second["started_at"] >= first["finished_at"]  # after the job, not folded into it
    assert await memory.count_events(user) == 20
    await _assert_nothing_lost(database, llm, events + burst)


async def test_many_clients_claiming_at_once_queue_each_request_exactly_once(
    redis_url: str, queue: str
) -> None:
    users = [f"user-{i:03d}-{uuid.uuid4().hex[:6]}" for i in range(400)]
    clients = [Redis.from_url(redis_url) for _ in range(8)]
    key = requests_key(queue)
    try:
        await clients[0].zadd(key, dict.fromkeys(users, time.time() - 1))
        busy = users[:20]  # these users' jobs are already queued: their requests must wait
        for user in busy:  # queued as the scan queues a job (its own request, claimed at once)
            assert await RedisJobQueue(clients[0], queue, f"{key}:scan").request(user, delay_s=60)

        cutoff = time.time()

        async def drain(client: Redis) -> Counter[str]:
            """Claim until nothing due is left, whoever claimed it (waiting ones are due later)."""
            queue_ = RedisJobQueue(client, queue, key)
            handed: Counter[str] = Counter()
            while await client.zcount(key, "-inf", cutoff):
                handed.update((await queue_.claim_due_requests(limit=9)).queued)
            return handed

        handed = sum(await asyncio.gather(*(drain(client) for client in clients)), Counter())
        assert set(handed) == set(users) - set(busy) and set(handed.values()) == {1}
        assert {member.decode() for member in await clients[0].zrange(key, 0, -1)} == set(busy)
        assert await clients[0].zcard(queue) == len(users)
    finally:
        await clients[0].delete(key, queue, *(f"arq:job:{job_id(user, queue)}" for user in users))
        for client in clients:
            await client.aclose()
