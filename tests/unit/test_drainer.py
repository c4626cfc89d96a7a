"""The request drainer's decisions, on the real queue adapter on fakeredis (``RedisJobQueue``'s claim
itself is tested in test_job_queue.py)."""

from __future__ import annotations

import asyncio

import pytest
from arq.constants import in_progress_key_prefix, job_key_prefix
from fakeredis import FakeAsyncRedis

from memcompress.jobs import Services
from memcompress.jobs.drainer import DrainResult, drain_due_requests, run_request_drainer
from memcompress.keys import job_id, user_from_job_id
from memcompress.repositories.protocols import ClaimedRequests
from memcompress.summarizers.extractive import ExtractiveSummarizer
from memcompress.testing.workers import requests_key
from memcompress.timing import LOOK_AGAIN_S
from tests.unit.conftest import T0, Clock
from tests.unit.fakes import QUEUE, fake_services

REQUESTS = requests_key(QUEUE)


@pytest.fixture
def services(redis: FakeAsyncRedis, clock: Clock) -> Services:
    return fake_services(ExtractiveSummarizer(), redis=redis, clock=clock)


async def _requests(redis: FakeAsyncRedis) -> dict[str, float]:
    return {member.decode(): score for member, score in await redis.zrange(REQUESTS, 0, -1, withscores=True)}


async def _queued(redis: FakeAsyncRedis) -> set[str]:
    return {user_from_job_id(member.decode(), QUEUE) or "" for member in await redis.zrange(QUEUE, 0, -1)}


async def test_every_due_request_is_queued_in_full_batches_and_the_rest_waits_for_its_time(
    services: Services, redis: FakeAsyncRedis
) -> None:
    await redis.zadd(REQUESTS, {f"u{i:03d}": T0 for i in range(250)} | {"later": T0 + 30})
    assert await drain_due_requests(services, batch=100) == DrainResult(queued=250, waiting=0)
    assert await _queued(redis) == {f"u{i:03d}" for i in range(250)}
    assert await _requests(redis) == {"later": T0 + 30}
    assert await drain_due_requests(services, batch=100) == DrainResult()


async def test_a_user_with_a_job_waits_and_is_queued_once_the_job_has_ended(
    services: Services, redis: FakeAsyncRedis, clock: Clock
) -> None:
    assert await services.queue.request("busy")
    await redis.zadd(REQUESTS, {"busy": T0, "free": T0})
    assert await drain_due_requests(services) == DrainResult(queued=1, waiting=1)
    assert await _requests(redis) == {"busy": T0 + LOOK_AGAIN_S}  # looked at again a moment later

    clock.now += LOOK_AGAIN_S
    assert await drain_due_requests(services) == DrainResult(queued=0, waiting=1)
    job = job_id("busy", QUEUE)  # the job ended: what arq's finish_job removes
    await redis.delete(job_key_prefix + job, in_progress_key_prefix + job)
    await redis.zrem(QUEUE, job)
    clock.now += LOOK_AGAIN_S
    assert await drain_due_requests(services) == DrainResult(queued=1, waiting=0)
    assert await _requests(redis) == {}


async def test_a_full_batch_of_waiting_requests_does_not_spin(
    services: Services, redis: FakeAsyncRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(10):
        assert await services.queue.request(f"u{i}")
    await redis.zadd(REQUESTS, {f"u{i}": T0 for i in range(10)})
    calls = 0
    claim = services.queue.claim_due_requests

    async def counted(*, limit: int) -> ClaimedRequests:
        nonlocal calls
        calls += 1
        return await claim(limit=limit)

    monkeypatch.setattr(services.queue, "claim_due_requests", counted)
    assert await drain_due_requests(services, batch=5) == DrainResult(queued=0, waiting=10)
    assert calls == 3  # two full batches, then an empty one: the waiting ones are due later now


async def test_one_tick_stops_after_max_batches(services: Services, redis: FakeAsyncRedis) -> None:
    await redis.zadd(REQUESTS, {f"u{i}": T0 for i in range(30)})
    assert await drain_due_requests(services, batch=5, max_batches=2) == DrainResult(queued=10)
    assert len(await _requests(redis)) == 20


async def test_the_drainer_carries_on_after_a_failed_tick(
    services: Services, redis: FakeAsyncRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    await redis.zadd(REQUESTS, {"u1": T0})
    failures = ["Redis went away"]
    claim = services.queue.claim_due_requests
    served = asyncio.Event()

    async def flaky(*, limit: int) -> ClaimedRequests:
        if failures:
            raise ConnectionError(failures.pop())
        claimed = await claim(limit=limit)
        if claimed.queued:
            served.set()
        return claimed

    monkeypatch.setattr(services.queue, "claim_due_requests", flaky)
    task = asyncio.create_task(run_request_drainer(services, every_s=0.01))
    try:
        async with asyncio.timeout(10):
            await served.wait()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert failures == [] and await _requests(redis) == {} and await _queued(redis) == {"u1"}
