"""The LLM budget held across worker processes: two real ``memcompress worker`` processes with a backlog of
100 users share ``MEMCOMPRESS_LLM_RPM`` through Redis, counted by the local LLM server itself."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from memcompress.jobs import scan_and_enqueue
from memcompress.repositories.database import MongoDatabase
from memcompress.repositories.indexes import ensure_indexes
from memcompress.testing.factories import make_events
from memcompress.testing.llm_server import FakeLLM
from memcompress.testing.workers import WorkerProcess, eventually, start_worker, worker_env
from tests.integration.conftest import ServicesFactory, append

pytestmark = pytest.mark.redis

RPM = 30
WINDOW_S = 10  # the budget holds in every 10 s: 5 requests, so that the test sees several windows
PER_WINDOW = RPM * WINDOW_S // 60
WINDOWS_SEEN = 4


@pytest.fixture
def workers() -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        worker.stop()
        print(f"--- worker {worker.process.pid} log ---\n{worker.log[-4000:]}")  # shown when a test fails
        worker.log_path.unlink(missing_ok=True)


async def test_two_workers_together_stay_within_the_requests_per_minute(
    workers: list[WorkerProcess],
    database: MongoDatabase,
    llm: FakeLLM,
    mongo_uri: str,
    db_name: str,
    redis_url: str,
    make_services: ServicesFactory,
) -> None:
    queue = f"test:{uuid.uuid4().hex[:10]}"
    await ensure_indexes(database)
    # Ids of this run only: the workers are stopped with jobs still queued, and arq's job keys are not
    # per queue, so a later run on the same Redis (CI's Redis 7 keeps them) must not collide with them.
    tag = uuid.uuid4().hex[:6]
    await append(database, [e for i in range(100) for e in make_events(f"user-{tag}-{i:03d}", 55)])
    result = await scan_and_enqueue(make_services(queue_name=queue, threshold=50))
    assert result.enqueued == 100

    env = worker_env(
        mongo_uri,
        db_name,
        redis_url,
        queue,
        llm_base_url=llm.base_url,
        llm_api_key="test-key",
        llm_max_retries=0,
        llm_timeout_s=5,
        max_jobs=16,
        job_timeout_s=30,
        job_completion_wait_s=0,
        llm_rpm=RPM,
        llm_rate_window_s=WINDOW_S,
    )
    workers.extend(start_worker(env) for _ in range(2))

    async def enough_requests() -> bool:
        assert all(worker.process.poll() is None for worker in workers), "a worker exited"
        return llm.requests > PER_WINDOW * WINDOWS_SEEN

    await eventually(enough_requests, within_s=WINDOW_S * (WINDOWS_SEEN + 4))
    for worker in workers:
        worker.stop()
    # 32 jobs at once would send their requests within a second or two without the budget.
    assert PER_WINDOW <= llm.most_in_any_window(WINDOW_S) <= PER_WINDOW + 1, sorted(llm.per_second.items())
    assert llm.failed == 0
