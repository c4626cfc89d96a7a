"""``compress_user`` run by a real arq worker (in this process, burst mode) against the real servers:
retries with backoff, dead letters, the busy-lock retry."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from arq.connections import ArqRedis
from arq.worker import func

from memcompress.jobs import Services
from memcompress.jobs.queued import retry_delay
from memcompress.keys import JOB_FUNCTION, job_id, lock_key
from memcompress.repositories.database import COMPACTION_LOG, MongoDatabase
from memcompress.repositories.run_records import MongoDeadLetters
from memcompress.summarizers.openai_chat import OpenAISummarizer
from memcompress.testing import llm_server
from memcompress.testing.factories import make_events
from memcompress.testing.llm_server import FakeLLM
from memcompress.worker.runner import MemcompressWorker
from memcompress.worker.tasks import after_job_end, compress_user
from tests.integration.conftest import ServicesFactory, append

pytestmark = pytest.mark.redis


@pytest.fixture
async def pool(redis_url: str) -> AsyncIterator[ArqRedis]:
    pool = ArqRedis.from_url(redis_url)
    try:
        yield pool
    finally:
        await pool.aclose()


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("memcompress.jobs.queued.retry_delay", lambda job_try: 0.05)


def _queued(
    make_services: ServicesFactory, max_tries: int = 3, job_timeout_s: float = 30, **settings: Any
) -> Services:
    """Services as a worker has them, on a queue of the test's own."""
    return make_services(
        **settings,
        queue_name=f"test:{uuid.uuid4().hex}",
        max_tries=max_tries,
        job_timeout_s=job_timeout_s,
        lock_ttl_s=max(job_timeout_s + 1, 10.0),
        llm_timeout_s=min(2.0, job_timeout_s / 2),
    )


async def _run(pool: ArqRedis, services: Services, user: str) -> MemcompressWorker:
    queue, max_tries = services.queue.name, services.job_policy.max_tries
    job = await pool.enqueue_job(
        JOB_FUNCTION, user, _job_id=job_id(user, services.queue.name), _queue_name=queue
    )
    assert job is not None
    assert (
        await pool.enqueue_job(
            JOB_FUNCTION, user, _job_id=job_id(user, services.queue.name), _queue_name=queue
        )
        is None
    )
    worker = MemcompressWorker(
        functions=[func(compress_user, name=JOB_FUNCTION)],
        redis_pool=pool,
        queue_name=queue,
        burst=True,
        ctx={"services": services},
        after_job_end=after_job_end,
        max_tries=max_tries + 1,
        handle_signals=False,
        poll_delay=0.05,
        keep_result=0,
    )
    await worker.main()
    await worker.close()
    return worker


async def test_a_retryable_failure_is_retried_and_completes(
    make_services: ServicesFactory, database: MongoDatabase, llm: FakeLLM, pool: ArqRedis
) -> None:
    services = _queued(make_services)
    user = f"user-{uuid.uuid4().hex[:8]}"
    await append(database, make_events(user, 60))
    llm.fail_next(llm_server.HTTP_500)
    worker = await _run(pool, services, user)
    assert (worker.jobs_complete, worker.jobs_retried, worker.jobs_failed) == (1, 1, 0)
    assert await services.memory.count_events(user) == 20
    assert llm.requests == 2
    assert (
        await pool.exists(job_id(user, services.queue.name)) == 0
    )  # keep_result=0: the user can be queued again at once


async def test_exhausted_retries_end_as_a_dead_letter_with_the_reason(
    make_services: ServicesFactory, database: MongoDatabase, llm: FakeLLM, pool: ArqRedis
) -> None:
    services = _queued(make_services, max_tries=3)
    user = f"user-{uuid.uuid4().hex[:8]}"
    await append(database, make_events(user, 60))
    llm.fail_next(*[llm_server.HTTP_500] * 3)
    worker = await _run(pool, services, user)
    assert (worker.jobs_complete, worker.jobs_retried, worker.jobs_failed) == (0, 2, 1)  # a failure
    [letter] = await MongoDeadLetters(database).list()
    assert (letter.user_id, letter.tries, letter.error_class) == (user, 3, "RetryableSummarizerError")
    assert "500" in letter.reason
    assert await services.memory.count_events(user) == 60  # nothing trimmed
    assert services.metrics.registry.get_sample_value("memcompress_dead_letters_total") == 1

    # Once the LLM is back, a new job compresses the user and clears the dead letter.
    await _run(pool, services, user)
    assert await MongoDeadLetters(database).count() == 0
    assert await services.memory.count_events(user) == 20


async def test_the_jobs_own_time_limit_is_a_retry_then_a_dead_letter(
    make_services: ServicesFactory, database: MongoDatabase, llm: FakeLLM, pool: ArqRedis
) -> None:
    llm.latency_s = 1.0
    services = _queued(make_services, max_tries=2, job_timeout_s=0.3)
    user = f"user-{uuid.uuid4().hex[:8]}"
    await append(database, make_events(user, 60))
    worker = await _run(pool, services, user)
    assert (worker.jobs_complete, worker.jobs_retried, worker.jobs_failed) == (0, 1, 1)
    runs = [d async for d in database.collection(COMPACTION_LOG).find({"user_id": user})]
    assert [(r["outcome"], r["error_class"]) for r in runs] == [("failed", "JobTimeout")] * 2
    [letter] = await MongoDeadLetters(database).list()
    assert (letter.error_class, letter.tries) == ("JobTimeout", 2)
    assert await services.memory.count_events(user) == 60
    assert await pool.exists(lock_key(user, services.queue.name)) == 0  # the cancelled run released its lock


async def test_out_of_time_but_moving_forward_continues_in_a_fresh_job(
    make_services: ServicesFactory,
    database: MongoDatabase,
    llm: FakeLLM,
    pool: ArqRedis,
    patient_summarizer: OpenAISummarizer,
) -> None:
    # ~12 events per chunk: several LLM calls; max_tries=1: a retry would have been a dead letter.
    # The first chunk is answered, the second held until the job's time limit (one chunk keeps within
    # it on a loaded machine) stops the job.
    services = _queued(
        make_services, max_tries=1, job_timeout_s=4.0, chunk_chars=1000, summarizer=patient_summarizer
    )
    user = f"user-{uuid.uuid4().hex[:8]}"
    await append(database, make_events(user, 80))
    ctx = {"services": services, "job_try": 1}
    llm.hold(passes=1)
    result = await compress_user(ctx, user)
    llm.release()
    assert result["outcome"] == "failed" and result["events_folded"] > 0
    assert await MongoDeadLetters(database).count() == 0
    await after_job_end(ctx)  # what arq runs after the job: the user is queued again
    assert await pool.zscore(services.queue.name, job_id(user, services.queue.name)) is not None
    [run] = [d async for d in database.collection(COMPACTION_LOG).find({"user_id": user})]
    assert (run["error_class"], run["chunks"]) == ("JobTimeout", 1)


async def test_a_permanent_failure_is_dead_lettered_at_once(
    make_services: ServicesFactory,
    database: MongoDatabase,
    llm: FakeLLM,
    pool: ArqRedis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    services = _queued(make_services)
    user = f"user-{uuid.uuid4().hex[:8]}"
    await append(database, make_events(user, 60))
    llm.fail_next(llm_server.HTTP_400)
    with caplog.at_level(logging.INFO, logger="memcompress.worker.tasks"):
        worker = await _run(pool, services, user)
    assert (worker.jobs_complete, worker.jobs_retried, worker.jobs_failed) == (0, 0, 1)  # arq's j_failed
    [line] = [r for r in caplog.records if r.name == "memcompress.worker.tasks"]
    fields = {
        name: getattr(line, name, None) for name in ("outcome", "events_folded", "llm_calls", "job_try")
    }
    assert fields == {"outcome": "dead_letter", "events_folded": 0, "llm_calls": 1, "job_try": 1}
    assert isinstance(getattr(line, "duration_s", None), float)
    [letter] = await MongoDeadLetters(database).list()
    assert letter.tries == 1
    assert llm.requests == 1


async def test_a_held_lock_is_retried_after_it_expires(
    make_services: ServicesFactory,
    database: MongoDatabase,
    llm: FakeLLM,
    pool: ArqRedis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("memcompress.jobs.queued.random.uniform", lambda low, high: 0.0)
    services = _queued(make_services)
    user = f"user-{uuid.uuid4().hex[:8]}"
    await append(database, make_events(user, 60))
    await pool.set(lock_key(user, services.queue.name), b"a crashed worker", px=600)
    worker = await _run(pool, services, user)
    assert (worker.jobs_complete, worker.jobs_retried) == (1, 1)
    outcomes = [d["outcome"] async for d in database.collection(COMPACTION_LOG).find({"user_id": user})]
    assert sorted(outcomes) == ["busy", "compressed"]


async def test_a_job_whose_every_try_died_is_dead_lettered_without_running(
    make_services: ServicesFactory, database: MongoDatabase, llm: FakeLLM
) -> None:
    services = _queued(make_services, max_tries=3)
    result = await compress_user({"services": services, "job_try": 4}, "user-x")
    assert result["outcome"] == "dead_letter"
    [letter] = await MongoDeadLetters(database).list()
    assert letter.user_id == "user-x" and "abandoned" in letter.reason
    assert llm.requests == 0


def test_retry_delay_backs_off_with_jitter() -> None:
    delays = [retry_delay(t) for t in (1, 2, 3, 10, 50)]
    assert 2.5 <= delays[0] <= 5
    assert 5 <= delays[1] <= 10
    assert 150 <= delays[4] <= 300
    assert len({retry_delay(4) for _ in range(20)}) > 1
