"""The erase fence's decisions in the use cases, against in-memory fakes (no servers): a run whose user
was erased leaves nothing; what a run writes, it writes under the lock; the queue takes back what it
queued for an erased user; ``forget`` writes its tombstone before anything else."""

from __future__ import annotations

import pytest
from fakeredis import FakeAsyncRedis

from memcompress.jobs import Services, forget_user, recheck_after_job, run_queued_compression
from memcompress.jobs.compress import compression
from memcompress.keys import user_from_job_id
from memcompress.models import CompactionRecord, Outcome
from memcompress.summarizers.base import PermanentSummarizerError
from memcompress.testing.factories import make_events
from memcompress.testing.workers import requests_key
from tests.unit.conftest import Clock
from tests.unit.fakes import QUEUE, FakeCompactionLog, FakeDeadLetters, FakeLocks, append
from tests.unit.stubs import Recording


def _fakes(services: Services) -> tuple[FakeCompactionLog, FakeDeadLetters, FakeLocks]:
    log, letters, locks = services.compaction_log, services.dead_letters, services.locks
    assert isinstance(log, FakeCompactionLog) and isinstance(letters, FakeDeadLetters)
    assert isinstance(locks, FakeLocks)
    return log, letters, locks


async def _queue(redis: FakeAsyncRedis) -> tuple[dict[str, float], dict[str, float]]:
    """The queued jobs (user -> due, ms) and the waiting requests (user -> due, s)."""
    jobs = {
        user_from_job_id(job.decode(), QUEUE) or "": due
        for job, due in await redis.zrange(QUEUE, 0, -1, withscores=True)
    }
    waiting = await redis.zrange(requests_key(QUEUE), 0, -1, withscores=True)
    return jobs, {user.decode(): due for user, due in waiting}


@pytest.mark.parametrize("profile", ["none yet", "already there"])
async def test_a_queued_run_of_an_erased_user_leaves_no_record_dead_letter_or_recheck(
    services: Services, redis: FakeAsyncRedis, profile: str
) -> None:
    await append(services, make_events("u", 20))
    if profile == "already there":
        await services.profiles.get("u")
    assert isinstance(services.summarizer, Recording)
    # A permanent failure: a dead letter, were the user not erased.
    services.summarizer.fail = PermanentSummarizerError("LLM answered HTTP 400")
    await services.erasures.mark("u", 60)

    decision = await run_queued_compression(services, "u", job_try=1)

    log, letters, _ = _fakes(services)
    assert decision.retry_in_s is None and decision.result["outcome"] == Outcome.SKIPPED.value
    assert (log.records, letters.letters, (await _queue(redis))[1]) == ([], {}, {})
    assert (await services.profiles.find("u") is None) == (profile == "none yet")


async def test_the_record_and_the_queue_decision_are_written_under_the_lock(services: Services) -> None:
    await append(services, make_events("u", 20))
    log, _, locks = _fakes(services)
    held_when: list[str] = []

    async def record(entry: CompactionRecord) -> None:
        held_when.append("record" if "u" in locks.held else "record without the lock")
        log.records.append(entry)

    log.record = record  # type: ignore[method-assign]
    async with compression(services, "u") as result:
        held_when.append("decision" if "u" in locks.held else "decision without the lock")
    assert result.outcome is Outcome.COMPRESSED
    assert held_when == ["record", "decision"]
    assert "u" not in locks.held


async def test_after_a_job_the_queue_takes_back_what_it_queued_for_an_erased_user(
    services: Services, redis: FakeAsyncRedis, clock: Clock
) -> None:
    queue = services.queue
    await queue.request("u", delay_s=5)  # the retried job, queued again (as arq re-queues it)
    await queue.set_recheck("u", delay_s=0)  # and a request waits for it
    await services.erasures.mark("u", 60)
    await recheck_after_job(services, "u")
    assert await _queue(redis) == ({}, {})

    await queue.set_recheck("w", delay_s=0)  # erased: the request the queue hands over itself goes too
    await services.erasures.mark("w", 60)
    await recheck_after_job(services, "w")
    assert await _queue(redis) == ({}, {})

    await queue.request("v", delay_s=5)  # another user, not erased: untouched
    await recheck_after_job(services, "v")
    assert await _queue(redis) == ({"v": (clock.now + 5) * 1000}, {})


async def test_forget_writes_its_tombstone_before_it_waits_for_the_lock(services: Services) -> None:
    _, _, locks = _fakes(services)
    locks.held["u"] = object()  # a running job
    with pytest.raises(TimeoutError):
        await forget_user(services, "u", wait_s=0.1)
    assert await services.erasures.erased("u")  # the running job's writes undo themselves
