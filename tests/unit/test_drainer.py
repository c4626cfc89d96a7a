"""The request drainer's decisions, on the fake queue (``RedisJobQueue``'s own claim is tested in
test_job_queue.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from memcompress.jobs.drainer import DrainResult, drain_due_requests, run_request_drainer
from memcompress.repositories.protocols import ClaimedRequests
from memcompress.summarizers.extractive import ExtractiveSummarizer
from tests.unit.fakes import FakeQueue, fake_services


def _services() -> tuple[Any, FakeQueue]:
    services = fake_services(ExtractiveSummarizer())
    assert isinstance(services.queue, FakeQueue)
    return services, services.queue


async def test_every_due_request_is_queued_in_full_batches_and_the_rest_waits_for_its_time() -> None:
    services, queue = _services()
    queue.requests = {f"u{i:03d}": 0.0 for i in range(250)} | {"later": 30.0}
    assert await drain_due_requests(services, batch=100) == DrainResult(queued=250, waiting=0)
    assert set(queue.queued) == {f"u{i:03d}" for i in range(250)}
    assert queue.requests == {"later": 30.0}
    assert await drain_due_requests(services, batch=100) == DrainResult()


async def test_a_user_with_a_job_waits_and_is_queued_once_the_job_has_ended() -> None:
    services, queue = _services()
    await queue.enqueue("busy")
    queue.requests = {"busy": 0.0, "free": 0.0}
    assert await drain_due_requests(services) == DrainResult(queued=1, waiting=1)
    assert queue.requests == {"busy": queue.look_again_s}  # looked at again a moment later

    queue.now = queue.look_again_s
    assert await drain_due_requests(services) == DrainResult(queued=0, waiting=1)
    del queue.queued["busy"]  # the job ended
    queue.now += queue.look_again_s
    assert await drain_due_requests(services) == DrainResult(queued=1, waiting=0)
    assert queue.requests == {}


async def test_a_full_batch_of_waiting_requests_does_not_spin() -> None:
    services, queue = _services()
    for i in range(10):
        await queue.enqueue(f"u{i}")
    queue.requests = {f"u{i}": 0.0 for i in range(10)}
    calls = 0
    claim = queue.claim_due_requests

    async def counted(*, limit: int) -> ClaimedRequests:
        nonlocal calls
        calls += 1
        return await claim(limit=limit)

    queue.claim_due_requests = counted  # type: ignore[method-assign]
    assert await drain_due_requests(services, batch=5) == DrainResult(queued=0, waiting=10)
    assert calls == 3  # two full batches, then an empty one: the waiting ones are due later now


async def test_one_tick_stops_after_max_batches() -> None:
    services, queue = _services()
    queue.requests = {f"u{i}": 0.0 for i in range(30)}
    assert await drain_due_requests(services, batch=5, max_batches=2) == DrainResult(queued=10)
    assert len(queue.requests) == 20


async def test_the_drainer_carries_on_after_a_failed_tick() -> None:
    services, queue = _services()
    queue.requests = {"u1": 0.0}
    failures = ["Redis went away"]
    claim = queue.claim_due_requests
    served = asyncio.Event()

    async def flaky(*, limit: int) -> ClaimedRequests:
        if failures:
            raise ConnectionError(failures.pop())
        claimed = await claim(limit=limit)
        if claimed.queued:
            served.set()
        return claimed

    queue.claim_due_requests = flaky  # type: ignore[method-assign]
    task = asyncio.create_task(run_request_drainer(services, every_s=0.01))
    try:
        async with asyncio.timeout(10):
            await served.wait()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert failures == [] and queue.requests == {} and "u1" in queue.queued
