"""The worker as it runs in production: ``python -m arq memcompress.worker.WorkerSettings`` processes,
configured by environment, on the real Mongo wire server, a real Redis-compatible server and the local
OpenAI-compatible HTTP server. Kills, shutdowns and a Redis restart, with every event accounted for."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import urllib.request
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from redis.asyncio import Redis

from memcompress.embedded import free_port, valkey_server
from memcompress.jobs import queue_report, scan_and_enqueue
from memcompress.keys import job_id
from memcompress.models import MemoryEvent
from memcompress.probe import probe
from memcompress.queue import request_compression
from memcompress.repositories.database import COMPACTION_LOG, MongoDatabase
from memcompress.repositories.indexes import ensure_indexes
from memcompress.repositories.job_queue import RedisJobQueue
from memcompress.repositories.user_memory import MongoUserMemoryRepository
from memcompress.testing.factories import make_events
from memcompress.testing.invariant import check_invariant
from memcompress.testing.llm_server import FakeLLM
from memcompress.testing.workers import WorkerProcess, eventually, requests_key, start_worker, worker_env
from tests.integration.conftest import ServicesFactory, append

pytestmark = pytest.mark.redis

Start = Callable[..., WorkerProcess]


@pytest.fixture
def queue() -> str:
    return f"test:{uuid.uuid4().hex[:10]}"


@pytest.fixture
def start(mongo_uri: str, db_name: str, redis_url: str, queue: str, llm: FakeLLM) -> Iterator[Start]:
    """Start worker processes (default: LLM at the local server, short timeouts); all stopped after."""
    started: list[WorkerProcess] = []

    def run(burst: bool = False, redis: str | None = None, **settings: Any) -> WorkerProcess:
        defaults: dict[str, Any] = {
            "llm_base_url": llm.base_url,
            "llm_api_key": "test-key",
            "llm_timeout_s": 5,
            "llm_max_retries": 0,
            "job_timeout_s": 20,
            "lock_ttl_s": 25,
        }
        env = worker_env(mongo_uri, db_name, redis or redis_url, queue, **(defaults | settings))
        worker = start_worker(env, burst=burst)
        started.append(worker)
        return worker

    yield run
    for worker in started:
        worker.stop()
        print(f"--- worker {worker.process.pid} log ---\n{worker.log[-4000:]}")  # shown when a test fails
        worker.log_path.unlink(missing_ok=True)


@pytest.fixture
async def indexed(database: MongoDatabase) -> MongoDatabase:
    """The test's database, with memcompress's indexes."""
    await ensure_indexes(database)
    return database


@pytest.fixture
def memory(indexed: MongoDatabase) -> MongoUserMemoryRepository:
    return MongoUserMemoryRepository(indexed)


async def _seed(database: MongoDatabase, users: list[str], count: int) -> list[MemoryEvent]:
    events = [e for user in users for e in make_events(user, count)]
    for i in range(0, len(events), 5000):
        await append(database, events[i : i + 5000])
    return events


async def _outcomes(database: MongoDatabase, user: str | None = None) -> Counter[tuple[str, str]]:
    query = {} if user is None else {"user_id": user}
    docs = database.collection(COMPACTION_LOG).find(query, {"user_id": 1, "outcome": 1})
    return Counter([(d["user_id"], d["outcome"]) async for d in docs])


def _called(llm: FakeLLM) -> Callable[[], Awaitable[bool]]:
    """A check for ``eventually``: the LLM has received a request (so a job is in the middle of a run)."""

    async def check() -> bool:
        return llm.requests >= 1

    return check


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


async def _assert_nothing_lost(database: MongoDatabase, llm: FakeLLM, events: list[MemoryEvent]) -> None:
    report = await check_invariant(database, llm, events)
    assert (report.lost, report.summarised_twice, report.checked) == ([], [], len(events))


async def test_three_workers_compress_300_users_exactly_once(
    start: Start,
    indexed: MongoDatabase,
    database: MongoDatabase,
    redis: Redis,
    llm: FakeLLM,
    queue: str,
    make_services: ServicesFactory,
) -> None:
    users = [f"user-{i:03d}-{uuid.uuid4().hex[:6]}" for i in range(300)]
    events = await _seed(indexed, users, 55)
    result = await scan_and_enqueue(make_services(queue_name=queue, threshold=50))
    assert (len(result.users), result.enqueued) == (300, 300)

    workers = [start(burst=True, max_jobs=8) for _ in range(3)]
    for worker in workers:
        assert worker.wait(timeout=600) == 0

    outcomes = await _outcomes(database)
    assert {user for user, outcome in outcomes if outcome == "compressed"} == set(users)
    assert all(n == 1 for n in outcomes.values()), [k for k, n in outcomes.items() if n > 1]
    assert llm.requests == 300
    await _assert_nothing_lost(database, llm, events)
    assert sum("compress_user" in w.log for w in workers) >= 2  # the work was shared


async def test_two_queues_on_one_redis_queue_lock_and_run_the_same_user_apart(
    start: Start,
    indexed: MongoDatabase,
    database: MongoDatabase,
    llm: FakeLLM,
    queue: str,
    make_services: ServicesFactory,
) -> None:
    """Two deployments on one Redis (a queue name each): neither blocks nor takes the other's user."""
    user = f"user-{uuid.uuid4().hex[:8]}"
    events = await _seed(indexed, [user], 70)
    ours, theirs = make_services(queue_name=queue), make_services(queue_name=f"test:{uuid.uuid4().hex[:10]}")
    assert await ours.queue.request(user) and await theirs.queue.request(user)
    async with ours.locks.hold(user), theirs.locks.hold(user):  # both held at once
        for services in (ours, theirs):
            status = await queue_report(services.queue_admin, services.locks)
            assert (status["queue_depth"], status["held_locks"][0]["user_id"]) == (1, user)
            assert status["held_locks_count"] == 1  # its own lock only
            assert [(j["user_id"], j["due"]) for j in await services.queue_admin.jobs(10)] == [(user, True)]

    assert start(burst=True).wait(timeout=120) == 0  # a worker of our queue
    assert await _outcomes(database, user) == Counter({(user, "compressed"): 1})
    assert await ours.queue_admin.depth() == 0
    assert [job["user_id"] for job in await theirs.queue_admin.jobs(10)] == [user]  # never taken
    await _assert_nothing_lost(database, llm, events)


async def enqueue_job(redis: Redis, user: str, *, queue_name: str) -> bool:
    """Queue the user's job at once, as the scan does (a request, claimed there and then)."""
    return await RedisJobQueue(redis, queue_name, requests_key(queue_name)).request(user)


async def test_a_burst_of_requests_is_one_job_and_a_burst_during_the_job_is_not_dropped(
    start: Start,
    memory: MongoUserMemoryRepository,
    database: MongoDatabase,
    redis: Redis,
    llm: FakeLLM,
    queue: str,
    mongo_uri: str,
    db_name: str,
    redis_url: str,
) -> None:
    user = f"user-{uuid.uuid4().hex[:8]}"
    events = await _seed(database, [user], 60)
    port = free_port()
    llm.latency_s = 1.5
    worker = start(metrics_port=port, log_format="json")

    key = requests_key(queue)
    added = [await request_compression(redis, user, 0.5, key=key) for _ in range(100)]
    assert added.count(True) == 1

    await eventually(_called(llm))  # the job is running; a new burst arrives now
    burst = make_events(user, 40, tag="burst")
    await append(database, burst)
    assert [await request_compression(redis, user, 0.5, key=key) for _ in range(10)].count(True) == 1

    async def compressed_twice() -> bool:
        return (await _outcomes(database, user))[(user, "compressed")] == 2

    await eventually(compressed_twice, within_s=60)
    assert await _outcomes(database, user) == Counter({(user, "compressed"): 2})
    assert await memory.count_events(user) == 20
    await _assert_nothing_lost(database, llm, events + burst)

    metrics = await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/metrics")
    assert 'memcompress_jobs_total{function="compress_user",status="complete"} 2.0' in metrics
    assert 'memcompress_llm_requests_total{summarizer="openai"} 2.0' in metrics
    assert 'user_memory_compressions_total{outcome="compressed"} 2.0' in metrics
    assert "memcompress_queue_depth " in metrics
    assert 'memcompress_build_info{version="' in metrics and "process_cpu_seconds_total " in metrics
    assert "python_info{" in metrics
    assert "_created" not in metrics and "user_memory_events_total" not in metrics  # never changed here
    for path in ("/healthz", "/readyz"):
        assert await asyncio.to_thread(probe, path, port) == (True, "ok")
    lines = [json.loads(line) for line in worker.log.splitlines() if line.startswith("{")]
    [ready] = [line for line in lines if line["message"] == "worker ready"]
    assert (ready["threshold"], ready["llm_base_url"]) == (50, llm.base_url)  # settings as fields
    ended = [line for line in lines if line["message"].startswith("compression job ended")]
    assert [line["outcome"] for line in ended] == ["compressed", "compressed"]
    assert all(
        {"duration_s", "events_folded", "llm_calls", "pid", "host", "user_id", "job_id"} <= set(line)
        for line in ended
    )
    check = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "memcompress", "worker", "--check"],
        env=worker_env(mongo_uri, db_name, redis_url, queue),
        capture_output=True,
    )
    assert check.returncode == 0, check.stderr  # the running worker wrote its health-check key
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0


async def test_a_job_killed_mid_llm_call_runs_again_after_the_in_progress_key_expires(
    start: Start,
    memory: MongoUserMemoryRepository,
    database: MongoDatabase,
    redis: Redis,
    llm: FakeLLM,
    queue: str,
) -> None:
    user = f"user-{uuid.uuid4().hex[:8]}"
    events = await _seed(database, [user], 70)
    llm.hold()  # the first run's LLM call stays in flight until the worker is killed
    # Short, so that the in-progress key soon expires; the second run's LLM answers at once.
    timeouts = {"llm_timeout_s": 4, "job_timeout_s": 5, "lock_ttl_s": 6}
    first = start(**timeouts)
    assert await enqueue_job(redis, user, queue_name=queue)

    await eventually(_called(llm))
    first.signal(signal.SIGKILL)
    assert first.wait() == -signal.SIGKILL
    assert await redis.exists(f"arq:in-progress:{job_id(user, queue)}") == 1  # arq still thinks it runs
    llm.release()

    second = start(burst=True, **timeouts)  # waits out the in-progress key (the job timeout + 10 s)
    assert second.wait(timeout=120) == 0
    assert await _outcomes(database, user) == Counter({(user, "compressed"): 1})
    assert await memory.count_events(user) == 20
    await _assert_nothing_lost(database, llm, events)


@pytest.mark.parametrize("completion_wait_s", [10, 0], ids=["finishes", "requeued"])
async def test_sigterm_during_a_job_finishes_it_or_requeues_it(
    start: Start,
    memory: MongoUserMemoryRepository,
    database: MongoDatabase,
    redis: Redis,
    llm: FakeLLM,
    queue: str,
    completion_wait_s: int,
) -> None:
    user = f"user-{uuid.uuid4().hex[:8]}"
    events = await _seed(database, [user], 70)
    llm.hold()  # the job is in its LLM call when the worker is told to stop
    worker = start(job_completion_wait_s=completion_wait_s)
    assert await enqueue_job(redis, user, queue_name=queue)

    await eventually(_called(llm))
    worker.signal(signal.SIGTERM)
    if completion_wait_s:
        llm.release()  # the answer comes while the worker waits for the job
    assert worker.wait(timeout=60) == 0
    llm.release()
    if completion_wait_s:
        assert await _outcomes(database, user) == Counter({(user, "compressed"): 1})
    else:
        assert await _outcomes(database, user) == Counter()  # cancelled before it wrote anything
        assert await redis.zscore(queue, job_id(user, queue)) is not None  # still queued
        assert start(burst=True).wait(timeout=60) == 0
        assert await _outcomes(database, user) == Counter({(user, "compressed"): 1})
    assert await memory.count_events(user) == 20
    await _assert_nothing_lost(database, llm, events)


@pytest.fixture
async def own_valkey() -> AsyncIterator[Any]:
    server = valkey_server().start()
    try:
        yield server
    finally:
        server.close()


async def test_redis_restarted_mid_run_the_worker_reconnects_and_the_scan_requeues(
    own_valkey: Any, start: Start, indexed: MongoDatabase, database: MongoDatabase, llm: FakeLLM
) -> None:
    users = [f"user-{i:02d}-{uuid.uuid4().hex[:6]}" for i in range(12)]
    events = await _seed(indexed, users, 60)
    llm.latency_s = 0.5
    port = free_port()
    worker = start(redis=own_valkey.url, scan_cron="*/2 * * * * *", max_jobs=2, metrics_port=port)

    async def some_compressed() -> bool:
        return sum(o == "compressed" for _, o in await _outcomes(database)) >= 2

    await eventually(some_compressed)
    own_valkey.stop()  # everything queued is lost: the server keeps nothing on disk
    # Liveness is the worker's event loop, not Redis: no restart for an outage it rides out.
    assert await asyncio.to_thread(probe, "/healthz", port) == (True, "ok")
    ready, answer = await asyncio.to_thread(probe, "/readyz", port)
    assert not ready and answer.startswith("Redis: ")
    own_valkey.start()

    async def all_compressed() -> bool:
        return {u for u, o in await _outcomes(database) if o == "compressed"} == set(users)

    await eventually(all_compressed, within_s=120)
    assert worker.process.poll() is None  # still running: it reconnected
    assert await asyncio.to_thread(probe, "/readyz", port) == (True, "ok")
    await _assert_nothing_lost(database, llm, events)


async def test_the_cron_scan_enqueues_exactly_the_users_the_aggregation_reports(
    start: Start,
    memory: MongoUserMemoryRepository,
    database: MongoDatabase,
    queue: str,
    make_services: ServicesFactory,
) -> None:
    tag = uuid.uuid4().hex[:6]
    sizes = {f"over-a-{tag}": 51, f"at-{tag}": 50, f"over-b-{tag}": 120, f"under-{tag}": 10}
    for user, count in sizes.items():
        await append(database, make_events(user, count))
    expected = [u.user_id for u in await memory.users_over_threshold(50)]
    assert expected == [f"over-b-{tag}", f"over-a-{tag}"]  # most events first

    start(scan_cron="* * * * * *", summarizer="extractive")

    async def both_compressed() -> bool:
        return {u for u, o in await _outcomes(database) if o == "compressed"} == set(expected)

    await eventually(both_compressed)
    scan = await make_services(queue_name=queue).queue_admin.last_scan()
    assert scan is not None and scan["users_found"] in (0, 2)  # later scans find nobody left
    assert {u for u, _ in await _outcomes(database)} == set(expected)  # nobody else was queued
