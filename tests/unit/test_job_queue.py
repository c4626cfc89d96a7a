"""``RedisJobQueue``'s requests: the claim script's decisions, on fakeredis with Lua (the same checks
against real servers, with many processes, are in tests/integration/test_requests.py)."""

from __future__ import annotations

import asyncio

import pytest
from arq.connections import ArqRedis
from arq.constants import expires_extra_ms, in_progress_key_prefix, job_key_prefix
from arq.jobs import deserialize_job_raw
from fakeredis import FakeAsyncRedis

from memcompress.keys import DEFAULT_QUEUE_NAME, JOB_FUNCTION, job_id, lock_key, user_from_job_id
from memcompress.repositories.job_queue import RedisJobQueue
from memcompress.repositories.queue_admin import RedisQueueAdmin
from memcompress.timing import LOOK_AGAIN_S
from tests.unit.conftest import T0, Clock

QUEUE = "q"
REQUESTS = "q:requests"


@pytest.fixture
def queue(redis: FakeAsyncRedis, clock: Clock) -> RedisJobQueue:
    return RedisJobQueue(redis, QUEUE, REQUESTS, clock=clock)


def test_job_ids_and_lock_keys_are_per_queue_and_the_default_queue_keeps_its_names() -> None:
    assert (job_id("u", DEFAULT_QUEUE_NAME), lock_key("u", DEFAULT_QUEUE_NAME)) == (
        "compress:u",
        "memcompress:lock:u",
    )
    assert (job_id("u", "q"), lock_key("u", "q")) == ("compress|q|u", "memcompress:lock|q|u")
    # A default-queue user id shaped like another queue's names, and queue names that are prefixes of
    # each other: every (queue, user) has names of its own.
    pairs = [(DEFAULT_QUEUE_NAME, "q:u"), (DEFAULT_QUEUE_NAME, "|q|u"), (DEFAULT_QUEUE_NAME, "q|u")]
    pairs += [("q", "u"), ("q", "a:u"), ("q:a", "u"), ("q", "|u"), (DEFAULT_QUEUE_NAME, "u")]
    assert len({job_id(user, queue) for queue, user in pairs}) == len(pairs)
    assert len({lock_key(user, queue) for queue, user in pairs}) == len(pairs)
    for queue, user in pairs:
        assert user_from_job_id(job_id(user, queue), queue) == user
    assert user_from_job_id(job_id("u", "q"), DEFAULT_QUEUE_NAME) is None
    assert user_from_job_id(job_id("u", DEFAULT_QUEUE_NAME), "q") is None


async def _requests(redis: FakeAsyncRedis) -> dict[str, float]:
    return {member.decode(): score for member, score in await redis.zrange(REQUESTS, 0, -1, withscores=True)}


async def _queued(redis: FakeAsyncRedis) -> list[str]:
    return [member.decode() for member in await redis.zrange(QUEUE, 0, -1)]


async def _finish_job(redis: FakeAsyncRedis, user: str) -> None:
    """What arq's finish_job removes when a job ends."""
    await redis.delete(job_key_prefix + job_id(user, QUEUE), in_progress_key_prefix + job_id(user, QUEUE))
    await redis.zrem(QUEUE, job_id(user, QUEUE))


async def test_a_due_request_becomes_the_job_arq_itself_would_queue(
    redis: FakeAsyncRedis, queue: RedisJobQueue, clock: Clock
) -> None:
    await redis.zadd(REQUESTS, {"u1": T0 - 5, "later": T0 + 1}, nx=True)
    claimed = await queue.claim_due_requests(limit=10)
    assert (claimed.queued, claimed.waiting) == (["u1"], [])
    assert await _requests(redis) == {"later": T0 + 1}
    assert await redis.zscore(QUEUE, job_id("u1", QUEUE)) == T0 * 1000
    ours = await redis.get(job_key_prefix + job_id("u1", QUEUE))
    assert deserialize_job_raw(ours) == (JOB_FUNCTION, ("u1",), {}, None, int(T0 * 1000))
    assert 0 < await redis.pttl(job_key_prefix + job_id("u1", QUEUE)) <= expires_extra_ms

    # arq's own enqueue of the same job writes the same data and sees ours as the same job
    pool = ArqRedis(redis.connection_pool)
    assert await pool.enqueue_job(JOB_FUNCTION, "u1", _job_id=job_id("u1", QUEUE), _queue_name=QUEUE) is None
    await pool.enqueue_job(JOB_FUNCTION, "u2", _job_id=job_id("u2", QUEUE), _queue_name=QUEUE)
    theirs = deserialize_job_raw(await redis.get(job_key_prefix + job_id("u2", QUEUE)))
    assert theirs[:4] == (JOB_FUNCTION, ("u2",), {}, None)


async def test_a_request_waits_while_the_job_is_queued_or_running_and_is_queued_after_it(
    redis: FakeAsyncRedis, queue: RedisJobQueue, clock: Clock
) -> None:
    assert await queue.request("u1")  # queued, say by the scan
    await redis.zadd(REQUESTS, {"u1": T0}, nx=True)
    claimed = await queue.claim_due_requests(limit=10)
    assert (claimed.queued, claimed.waiting) == ([], ["u1"])
    assert await _requests(redis) == {"u1": T0 + LOOK_AGAIN_S}  # due again a moment later
    assert (await queue.claim_due_requests(limit=10)).count == 0  # not due until then

    await redis.zrem(QUEUE, job_id("u1", QUEUE))  # only arq's in-progress key left: running
    await redis.set(in_progress_key_prefix + job_id("u1", QUEUE), b"1")
    clock.now += LOOK_AGAIN_S
    assert (await queue.claim_due_requests(limit=10)).waiting == ["u1"]

    await _finish_job(redis, "u1")
    clock.now += LOOK_AGAIN_S
    assert (await queue.claim_due_requests(limit=10)).queued == ["u1"]
    assert await _queued(redis) == [job_id("u1", QUEUE)] and await _requests(redis) == {}


async def test_a_starting_job_covers_the_requests_made_before_it_and_not_those_after(
    redis: FakeAsyncRedis, queue: RedisJobQueue, clock: Clock
) -> None:
    assert await queue.request("u1")
    await redis.zadd(REQUESTS, {"u1": T0 + 30}, nx=True)  # asked before the job started
    await queue.clear_recheck("u1")  # the job starts
    assert await _requests(redis) == {}
    await redis.zadd(REQUESTS, {"u1": T0}, nx=True)  # asked while it runs
    assert (await queue.claim_due_requests(limit=10)).waiting == ["u1"]

    await _finish_job(redis, "u1")
    await queue.claim_request("u1")  # the job's after_job_end: served at once
    assert await _queued(redis) == [job_id("u1", QUEUE)] and await _requests(redis) == {}


async def test_after_a_job_a_request_not_yet_due_stays_for_its_time(
    redis: FakeAsyncRedis, queue: RedisJobQueue, clock: Clock
) -> None:
    await redis.zadd(REQUESTS, {"u1": T0 + 30}, nx=True)
    await queue.claim_request("u1")
    assert await _requests(redis) == {"u1": T0 + 30} and await _queued(redis) == []
    clock.now += 30
    assert (await queue.claim_due_requests(limit=10)).queued == ["u1"]


async def test_a_burst_of_100_requests_is_one_job(
    redis: FakeAsyncRedis, queue: RedisJobQueue, clock: Clock
) -> None:
    added = [await redis.zadd(REQUESTS, {"u1": T0 + i / 100}, nx=True) for i in range(100)]
    assert sum(added) == 1
    clock.now += 2
    assert (await queue.claim_due_requests(limit=10)).queued == ["u1"]
    assert (await queue.claim_due_requests(limit=10)).count == 0
    assert await _queued(redis) == [job_id("u1", QUEUE)]


async def test_claims_take_the_earliest_due_first_and_at_most_the_limit(
    redis: FakeAsyncRedis, queue: RedisJobQueue
) -> None:
    await redis.zadd(REQUESTS, {f"u{i}": T0 - i for i in range(5)})
    assert (await queue.claim_due_requests(limit=2)).queued == ["u4", "u3"]
    assert (await queue.claim_due_requests(limit=10)).queued == ["u2", "u1", "u0"]


async def test_concurrent_claims_queue_each_request_once(redis: FakeAsyncRedis, clock: Clock) -> None:
    users = [f"u{i:03d}" for i in range(300)]
    await redis.zadd(REQUESTS, dict.fromkeys(users, T0))
    queues = [RedisJobQueue(redis, QUEUE, REQUESTS, clock=clock) for _ in range(6)]

    async def drain(queue: RedisJobQueue) -> list[str]:
        mine: list[str] = []
        while claimed := await queue.claim_due_requests(limit=7):
            if not claimed.count:
                return mine
            mine += claimed.queued
            await asyncio.sleep(0)
        return mine

    shares = await asyncio.gather(*(drain(q) for q in queues))
    everyone = [user for share in shares for user in share]
    assert sorted(everyone) == users  # once each
    assert sorted(await _queued(redis)) == [job_id(u, QUEUE) for u in users]


async def test_an_operator_request_is_queued_at_once_due_then_or_waits_for_the_users_job(
    redis: FakeAsyncRedis, queue: RedisJobQueue, clock: Clock
) -> None:
    assert await queue.request("u1") is True  # no job: queued, due now
    assert await _queued(redis) == [job_id("u1", QUEUE)] and await _requests(redis) == {}
    assert await queue.request("u1") is False  # waits for that job
    assert await _requests(redis) == {"u1": T0 + LOOK_AGAIN_S}

    assert await queue.request("u2", delay_s=60) is True  # no job: queued, deferred by the delay
    assert await redis.zscore(QUEUE, job_id("u2", QUEUE)) == (T0 + 60) * 1000
    assert 60_000 < await redis.pttl(job_key_prefix + job_id("u2", QUEUE)) <= 60_000 + expires_extra_ms
    assert await queue.request("u2", delay_s=90) is False  # waits for the deferred job, at its time
    assert (await _requests(redis))["u2"] == T0 + 90
    assert await queue.request("u2", delay_s=10) is False  # brought forward, still behind the job
    assert (await _requests(redis))["u2"] == T0 + 10

    await queue.set_recheck("u3", delay_s=5)
    await queue.set_recheck("u3", delay_s=50)
    assert (await _requests(redis))["u3"] == T0 + 5  # the earlier one is kept


async def test_a_request_pushed_back_while_a_job_ran_is_queued_due_at_its_time(
    redis: FakeAsyncRedis, queue: RedisJobQueue, clock: Clock
) -> None:
    await redis.zadd(REQUESTS, {"u1": T0 + 0.5})
    await queue.claim_request("u1")  # due within LOOK_AGAIN_S: queued, not early
    assert await redis.zscore(QUEUE, job_id("u1", QUEUE)) == (T0 + 0.5) * 1000
    assert await _requests(redis) == {}


async def test_a_member_that_is_no_user_id_is_dropped_not_retried_forever(
    redis: FakeAsyncRedis, queue: RedisJobQueue
) -> None:
    await redis.zadd(REQUESTS, {b"\xff\xfe": T0, "u1": T0})
    assert (await queue.claim_due_requests(limit=10)).queued == ["u1"]
    assert await redis.zcard(REQUESTS) == 0


async def test_forgetting_a_user_removes_its_request_and_status_counts_them(
    redis: FakeAsyncRedis, queue: RedisJobQueue, clock: Clock
) -> None:
    await redis.zadd(REQUESTS, {"gone": T0 + 60, "stays": T0 - 1, "later": T0 + 5})
    status = await RedisQueueAdmin(redis, QUEUE, REQUESTS, clock=clock).status()
    assert (status["requests"], status["requests_due"]) == (3, 1)
    assert (await queue.erase_user("gone"))["request"] == 1
    assert set(await _requests(redis)) == {"stays", "later"}
