"""``compress_user`` run by a real arq worker (in this process, burst mode) against the real servers:
retries with backoff, dead letters, the busy-lock retry."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from arq.connections import ArqRedis
from arq.worker import Worker, func

from memcompress.jobs.compress import CompressionDeps
from memcompress.jobs.tasks import JobServices, compress_user, recheck_after_job, retry_delay
from memcompress.keys import job_id, lock_key
from memcompress.repositories import MongoDeadLetters
from memcompress.repositories.database import COMPACTION_LOG, MongoDatabase
from tests.integration.conftest import DepsFactory
from tests.support import llm_server
from tests.support.factories import make_events
from tests.support.llm_server import FakeLLM

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
    monkeypatch.setattr("memcompress.jobs.tasks.retry_delay", lambda job_try: 0.05)


async def _run(
    pool: ArqRedis,
    deps: CompressionDeps,
    database: MongoDatabase,
    user: str,
    max_tries: int = 3,
    job_timeout_s: float = 30,
) -> Worker:
    queue = f"test:{uuid.uuid4().hex}"
    services = JobServices(
        deps=deps,
        dead_letters=MongoDeadLetters(database, deps.metrics),
        queue_name=queue,
        max_tries=max_tries,
        job_timeout_s=job_timeout_s,
    )
    job = await pool.enqueue_job("compress_user", user, _job_id=job_id(user), _queue_name=queue)
    assert job is not None
    assert await pool.enqueue_job("compress_user", user, _job_id=job_id(user), _queue_name=queue) is None
    worker = Worker(
        functions=[func(compress_user, name="compress_user", keep_result=0, max_tries=max_tries + 1)],
        redis_pool=pool,
        queue_name=queue,
        burst=True,
        ctx={"services": services},
        after_job_end=recheck_after_job,
        handle_signals=False,
        poll_delay=0.05,
        keep_result=0,
    )
    await worker.main()
    await worker.close()
    return worker


async def test_a_retryable_failure_is_retried_and_completes(
    make_deps: DepsFactory, database: MongoDatabase, llm: FakeLLM, pool: ArqRedis
) -> None:
    deps = make_deps()
    user = f"user-{uuid.uuid4().hex[:8]}"
    await deps.memory.append_events(make_events(user, 60))
    llm.fail_next(llm_server.HTTP_500)
    worker = await _run(pool, deps, database, user)
    assert (worker.jobs_complete, worker.jobs_retried, worker.jobs_failed) == (1, 1, 0)
    assert await deps.memory.count_events(user) == 20
    assert llm.requests == 2
    assert await pool.exists(job_id(user)) == 0  # keep_result=0: the user can be queued again at once


async def test_exhausted_retries_end_as_a_dead_letter_with_the_reason(
    make_deps: DepsFactory, database: MongoDatabase, llm: FakeLLM, pool: ArqRedis
) -> None:
    deps = make_deps()
    user = f"user-{uuid.uuid4().hex[:8]}"
    await deps.memory.append_events(make_events(user, 60))
    llm.fail_next(*[llm_server.HTTP_500] * 3)
    worker = await _run(pool, deps, database, user, max_tries=3)
    assert (worker.jobs_complete, worker.jobs_retried) == (1, 2)
    [letter] = await MongoDeadLetters(database).list()
    assert (letter.user_id, letter.tries, letter.error_class) == (user, 3, "RetryableSummarizerError")
    assert "500" in letter.reason
    assert await deps.memory.count_events(user) == 60  # nothing trimmed
    assert deps.metrics.registry.get_sample_value("memcompress_dead_letters_total") == 1

    # Once the LLM is back, a new job compresses the user and clears the dead letter.
    await _run(pool, deps, database, user)
    assert await MongoDeadLetters(database).count() == 0
    assert await deps.memory.count_events(user) == 20


async def test_the_jobs_own_time_limit_is_a_retry_then_a_dead_letter(
    make_deps: DepsFactory, database: MongoDatabase, llm: FakeLLM, pool: ArqRedis
) -> None:
    llm.latency_s = 1.0
    deps = make_deps()
    user = f"user-{uuid.uuid4().hex[:8]}"
    await deps.memory.append_events(make_events(user, 60))
    worker = await _run(pool, deps, database, user, max_tries=2, job_timeout_s=0.3)
    assert (worker.jobs_complete, worker.jobs_retried) == (1, 1)
    runs = [d async for d in database.collection(COMPACTION_LOG).find({"user_id": user})]
    assert [(r["outcome"], r["error_class"]) for r in runs] == [("failed", "JobTimeout")] * 2
    [letter] = await MongoDeadLetters(database).list()
    assert (letter.error_class, letter.tries) == ("JobTimeout", 2)
    assert await deps.memory.count_events(user) == 60
    assert await deps.redis.exists(lock_key(user)) == 0  # the cancelled run released its lock


async def test_out_of_time_but_moving_forward_continues_in_a_fresh_job(
    make_deps: DepsFactory, database: MongoDatabase, llm: FakeLLM, pool: ArqRedis
) -> None:
    llm.latency_s = 0.4
    deps = make_deps(chunk_chars=1000)  # ~12 events per chunk: several LLM calls
    user = f"user-{uuid.uuid4().hex[:8]}"
    await deps.memory.append_events(make_events(user, 80))
    queue = f"test:{uuid.uuid4().hex}"
    services = JobServices(deps, MongoDeadLetters(database), queue, max_tries=1, job_timeout_s=1.0)
    ctx = {"services": services, "job_try": 1}
    result = await compress_user(ctx, user)  # max_tries=1: a retry would have been a dead letter
    assert result["outcome"] == "failed" and result["events_folded"] > 0
    assert await MongoDeadLetters(database).count() == 0
    await recheck_after_job(ctx)  # what arq runs after the job: the user is queued again
    assert await pool.zscore(queue, job_id(user)) is not None
    [run] = [d async for d in database.collection(COMPACTION_LOG).find({"user_id": user})]
    assert (run["error_class"], run["chunks"] > 0) == ("JobTimeout", True)


async def test_a_permanent_failure_is_dead_lettered_at_once(
    make_deps: DepsFactory, database: MongoDatabase, llm: FakeLLM, pool: ArqRedis
) -> None:
    deps = make_deps()
    user = f"user-{uuid.uuid4().hex[:8]}"
    await deps.memory.append_events(make_events(user, 60))
    llm.fail_next(llm_server.HTTP_400)
    worker = await _run(pool, deps, database, user)
    assert (worker.jobs_complete, worker.jobs_retried) == (1, 0)
    [letter] = await MongoDeadLetters(database).list()
    assert letter.tries == 1
    assert llm.requests == 1


async def test_a_held_lock_is_retried_after_it_expires(
    make_deps: DepsFactory,
    database: MongoDatabase,
    llm: FakeLLM,
    pool: ArqRedis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("memcompress.jobs.tasks.random.uniform", lambda low, high: 0.0)
    deps = make_deps()
    user = f"user-{uuid.uuid4().hex[:8]}"
    await deps.memory.append_events(make_events(user, 60))
    await deps.redis.set(lock_key(user), b"a crashed worker", px=600)
    worker = await _run(pool, deps, database, user)
    assert (worker.jobs_complete, worker.jobs_retried) == (1, 1)
    outcomes = [d["outcome"] async for d in database.collection(COMPACTION_LOG).find({"user_id": user})]
    assert sorted(outcomes) == ["busy", "compressed"]


async def test_a_job_whose_every_try_died_is_dead_lettered_without_running(
    make_deps: DepsFactory, database: MongoDatabase, llm: FakeLLM
) -> None:
    deps = make_deps()
    services = JobServices(deps, MongoDeadLetters(database), "q", max_tries=3, job_timeout_s=30)
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
