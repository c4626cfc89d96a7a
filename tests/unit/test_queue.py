"""The app-side enqueue API, against fakeredis (the real-server behaviour is in tests/integration)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from fakeredis import FakeAsyncRedis

from memcompress import enqueue_compression
from memcompress.keys import DEFAULT_QUEUE_NAME, job_id, recheck_key


async def test_a_burst_collapses_into_one_deferred_job_and_sets_the_recheck_flag() -> None:
    redis = FakeAsyncRedis()
    results = [await enqueue_compression(redis, "u1", delay=30) for _ in range(20)]
    assert results.count(True) == 1
    assert await redis.zcard(DEFAULT_QUEUE_NAME) == 1
    assert await redis.zscore(DEFAULT_QUEUE_NAME, job_id("u1")) is not None
    assert await redis.get(recheck_key("u1")) == b"30"
    assert await enqueue_compression(redis, "u2", delay=0, queue_name="other") is True
    assert await redis.zcard("other") == 1


@pytest.mark.parametrize(("user_id", "delay"), [("", 1.0), ("  ", 1.0), ("u", -1.0)])
async def test_bad_arguments_are_refused_before_touching_redis(user_id: str, delay: float) -> None:
    redis = FakeAsyncRedis()
    with pytest.raises(ValueError, match=r"user_id|delay"):
        await enqueue_compression(redis, user_id, delay=delay)
    assert await redis.dbsize() == 0


def test_the_enqueue_api_loads_no_worker_dependency() -> None:
    code = (
        "import sys, memcompress; memcompress.enqueue_compression; "
        "heavy = {'pymongo', 'openai', 'pydantic', 'pydantic_settings', 'prometheus_client', 'click'}; "
        "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
