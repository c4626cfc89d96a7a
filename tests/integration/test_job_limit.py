"""The worker's adaptive job limit on the real servers: a job waiting for a slot is not timed out."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from redis.asyncio import Redis

from memcompress.repositories.database import MongoDatabase
from memcompress.settings import load_settings
from memcompress.testing.llm_server import FakeLLM
from memcompress.worker.arq_settings import worker_settings
from memcompress.worker.job_limit import AdaptiveJobLimit
from memcompress.worker.runner import MemcompressWorker
from tests.integration.conftest import until_held
from tests.integration.test_worker import _outcomes, _seed, enqueue_job, indexed  # noqa: F401

pytestmark = pytest.mark.redis

JOB_TIMEOUT_S = 6.0
HELD_S = 3.5  # each job's LLM call is held this long: well within its own limit, but two of them are not


async def test_a_job_waiting_for_a_slot_is_not_timed_out(
    mongo_uri: str,
    db_name: str,
    redis_url: str,
    redis: Redis,
    database: MongoDatabase,
    indexed: MongoDatabase,  # noqa: F811
    llm: FakeLLM,
) -> None:
    queue = f"test:{uuid.uuid4().hex[:10]}"
    users = [f"waits-{i}-{uuid.uuid4().hex[:6]}" for i in range(3)]
    await _seed(indexed, users, 55)
    settings = load_settings(
        mongodb_uri=mongo_uri,
        mongodb_db=db_name,
        redis_url=redis_url,
        queue_name=queue,
        requests_key=f"{queue}:requests",
        llm_base_url=llm.base_url,
        llm_api_key="test-key",
        llm_timeout_s=5,
        llm_max_retries=0,
        job_timeout_s=JOB_TIMEOUT_S,
        max_jobs=4,
        threshold=50,
        scan_cron="0 0 1 1 *",
    )
    # The limit held at one slot (no window ever ends), as after the store was seen saturated.
    limit = AdaptiveJobLimit(4, initial=1, window_s=1e9)
    worker = MemcompressWorker(**worker_settings(settings), burst=True, handle_signals=False, job_limit=limit)
    llm.hold()
    for user in users:
        assert await enqueue_job(redis, user, queue_name=queue)
    running = asyncio.create_task(worker.main())
    try:
        # One job at a time, each held at the LLM for HELD_S: the last one waits 2 x HELD_S in the
        # queue, longer than JOB_TIMEOUT_S, before its own run starts.
        for _ in users[:-1]:
            await until_held(llm)
            await asyncio.sleep(HELD_S)
            assert llm.held == 1  # the other jobs were not claimed (max_jobs alone would run them all)
            llm.hold(passes=1)  # this one is answered; the next request is held again
        await until_held(llm)
        llm.release()
        await asyncio.wait_for(running, timeout=120)
    finally:
        llm.release()
        running.cancel()
        await worker.close()
    outcomes = await _outcomes(database)
    assert {user for user, outcome in outcomes if outcome == "compressed"} == set(users)
    assert sum(outcomes.values()) == len(users)  # one run each: none timed out and ran again
