"""The worker's changes to arq: a job slot taken while Redis went away is given back, the poll adapts,
and no more jobs are claimed than the adaptive job limit allows."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import arq
import pytest
from arq import func
from arq.connections import ArqRedis
from arq.worker import Worker
from fakeredis import FakeAsyncRedis
from redis.exceptions import WatchError

from memcompress.keys import paused_key
from memcompress.timing import IDLE_POLL_S
from memcompress.worker.job_limit import AdaptiveJobLimit
from memcompress.worker.runner import ARQ_CHECKED_VERSION, MemcompressWorker


async def _noop(ctx: dict[str, Any]) -> None:
    return None


async def test_a_claim_that_loses_redis_gives_its_slot_back(monkeypatch: pytest.MonkeyPatch) -> None:
    async def claim_then_lose_redis(self: Worker, job_ids: list[bytes]) -> None:
        await self.sem.acquire()  # what arq does before it watches the job's in-progress key
        self.job_counter += 1
        raise WatchError("A ConnectionError occurred on while watching one or more keys")

    monkeypatch.setattr(Worker, "start_jobs", claim_then_lose_redis)
    worker = MemcompressWorker(functions=[_noop], handle_signals=False, max_jobs=2)
    worker._pool = FakeAsyncRedis()  # what arq's main() connects
    for _ in range(5):  # without the repair the second call would already block on the semaphore
        await worker.start_jobs([b"compress:u"])
    assert worker.job_counter == 0
    assert worker.sem._value == 3  # arq's semaphore holds max_jobs + 1


def test_arq_still_takes_a_claim_slot_the_way_the_repair_gives_it_back() -> None:
    """The repair touches arq's private ``sem`` and ``job_counter``; this fails when arq changes how
    ``start_jobs`` takes a slot, or when arq is upgraded: re-read ``Worker.start_jobs`` then, and update
    ``give_back_claim_slot`` and ``ARQ_CHECKED_VERSION`` together."""
    assert arq.VERSION == ARQ_CHECKED_VERSION
    source = inspect.getsource(Worker.start_jobs)
    acquire = source.index("await self.sem.acquire()")
    count = source.index("self.job_counter = self.job_counter + 1")
    claim = source.index("await pipe.watch(")
    assert acquire < count < claim


async def test_a_paused_queue_claims_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    claimed: list[list[bytes]] = []

    async def claim(self: Worker, job_ids: list[bytes]) -> None:
        claimed.append(job_ids)

    monkeypatch.setattr(Worker, "start_jobs", claim)
    worker = MemcompressWorker(functions=[_noop], handle_signals=False, queue_name="q")
    worker._pool = redis = FakeAsyncRedis()  # what arq's main() connects
    await redis.set(paused_key("q"), "since now")
    await worker.start_jobs([b"compress:u"])
    assert claimed == []
    await redis.delete(paused_key("q"))
    await worker.start_jobs([b"compress:u"])
    assert claimed == [[b"compress:u"]]


async def test_the_poll_backs_off_when_idle_and_a_finished_job_wakes_it() -> None:
    worker = MemcompressWorker(functions=[_noop], handle_signals=False, queue_name="q", poll_delay=0.01)
    worker._pool = FakeAsyncRedis()
    waits = []
    for _ in range(8):  # nothing due: the wait doubles up to the idle ceiling
        await worker._poll_iteration()
        waits.append(worker.next_poll_s)
    assert waits[0] == 0.02 and waits[-1] == IDLE_POLL_S and waits == sorted(waits)

    worker.next_poll_s = 3600.0  # without the wake-up the next iteration would wait an hour
    worker.job_counter, _ = 1, await worker.sem.acquire()
    worker._release_sem_dec_counter_on_complete()  # a job finished
    await asyncio.wait_for(worker._poll_iteration(), timeout=30)

    await worker.pool.zadd("q", {"compress:u": 0})  # a due job: the next poll comes at the busy pace
    await worker._poll_iteration()
    assert worker.next_poll_s == 0.01


async def test_it_claims_no_more_jobs_than_the_job_limit_and_leaves_the_rest_queued() -> None:
    release = asyncio.Event()

    async def wait(ctx: dict[str, Any]) -> None:
        await release.wait()

    limit = AdaptiveJobLimit(4, initial=1, window_s=1e9)  # held at one: no window ever ends
    worker = MemcompressWorker(
        functions=[func(wait, name="wait")], handle_signals=False, queue_name="q", max_jobs=4, job_limit=limit
    )
    fake = FakeAsyncRedis()
    worker._pool = pool = ArqRedis(connection_pool=fake.connection_pool)  # what arq's main() connects
    for i in range(3):
        await pool.enqueue_job("wait", _job_id=f"job-{i}", _queue_name="q")
    await worker._poll_iteration()
    assert worker.job_counter == 1  # arq alone would have claimed all three (max_jobs 4)
    assert await pool.zcard("q") == 3  # the other two wait in the queue: unclaimed, no time limit runs

    worker.job_limit = AdaptiveJobLimit(4, initial=3)  # as if the store kept up and the limit grew
    await worker._poll_iteration()
    assert worker.job_counter == 3
    release.set()
    await asyncio.gather(*worker.tasks.values())
