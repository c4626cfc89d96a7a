"""``compress_user`` run by a real arq worker (burst mode) against the real Redis-compatible server."""

from __future__ import annotations

import uuid

import pytest
from arq.connections import ArqRedis
from arq.worker import Worker, func

from memcompress.jobs.compress import compress_user, retry_delay
from memcompress.repositories.database import MongoDatabase
from tests.integration.conftest import DepsFactory
from tests.support import llm_server
from tests.support.factories import make_events
from tests.support.llm_server import FakeLLM

pytestmark = pytest.mark.redis


async def test_arq_runs_the_job_and_retries_a_retryable_failure(
    make_deps: DepsFactory,
    database: MongoDatabase,
    llm: FakeLLM,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("memcompress.jobs.compress.retry_delay", lambda job_try: 0.05)
    deps = make_deps()
    user = f"user-{uuid.uuid4().hex[:8]}"
    await deps.memory.append_events(make_events(user, 60))
    llm.fail_next(llm_server.HTTP_500)
    queue = f"test:{uuid.uuid4().hex}"
    pool = ArqRedis.from_url(redis_url)
    try:
        job = await pool.enqueue_job("compress_user", user, _job_id=f"compress:{user}", _queue_name=queue)
        assert job is not None
        duplicate = await pool.enqueue_job(
            "compress_user", user, _job_id=f"compress:{user}", _queue_name=queue
        )
        assert duplicate is None  # one job per user
        worker = Worker(
            functions=[func(compress_user, name="compress_user", keep_result=0)],
            redis_pool=pool,
            queue_name=queue,
            burst=True,
            ctx={"deps": deps},
            handle_signals=False,
            poll_delay=0.05,
            max_tries=3,
        )
        await worker.main()
        assert (worker.jobs_complete, worker.jobs_retried, worker.jobs_failed) == (1, 1, 0)
        await worker.close()
    finally:
        await pool.aclose()
    assert await deps.memory.count_events(user) == 20
    assert llm.requests == 2


def test_retry_delay_backs_off_with_jitter() -> None:
    delays = [retry_delay(t) for t in (1, 2, 3, 10, 50)]
    assert 2.5 <= delays[0] <= 5
    assert 5 <= delays[1] <= 10
    assert 150 <= delays[4] <= 300
    assert len({retry_delay(4) for _ in range(20)}) > 1
