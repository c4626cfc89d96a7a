"""The app-side request helper, against fakeredis with sync and asyncio clients (the workers serving
the requests are tested in tests/unit/test_job_queue.py and tests/integration/test_requests.py)."""

from __future__ import annotations

import inspect
import subprocess
import sys
import time
from typing import Any

import pytest
from fakeredis import FakeAsyncRedis, FakeRedis

import memcompress
from memcompress import enqueue_compression, request_compression
from memcompress.keys import DEFAULT_REQUESTS_KEY


def test_a_sync_client_adds_one_request_per_burst_due_after_the_delay() -> None:
    redis = FakeRedis()
    before = time.time()
    results = [request_compression(redis, "u1", 30) for _ in range(20)]
    after = time.time()
    assert results == [True] + [False] * 19
    assert redis.zcard(DEFAULT_REQUESTS_KEY) == 1
    due = redis.zscore(DEFAULT_REQUESTS_KEY, "u1")
    assert due is not None and before + 30 <= due <= after + 30


async def test_an_asyncio_client_gets_an_awaitable_with_the_same_answer() -> None:
    redis = FakeAsyncRedis()
    pending = request_compression(redis, "u1", delay=5)
    assert inspect.isawaitable(pending)
    assert await redis.zcard(DEFAULT_REQUESTS_KEY) == 0  # nothing sent before it is awaited
    assert await pending is True
    assert await request_compression(redis, "u1", delay=0) is False
    assert await redis.zcard(DEFAULT_REQUESTS_KEY) == 1


def test_a_waiting_request_is_kept_and_each_user_has_its_own() -> None:
    redis = FakeRedis()
    assert request_compression(redis, "u1", 30)
    first = redis.zscore(DEFAULT_REQUESTS_KEY, "u1")
    assert not request_compression(redis, "u1", 0)  # NX: the request already waiting covers this one
    assert redis.zscore(DEFAULT_REQUESTS_KEY, "u1") == first
    assert request_compression(redis, "u2", 0)
    assert request_compression(redis, "u1", 0, key="other:requests")
    assert redis.zcard(DEFAULT_REQUESTS_KEY) == 2 and redis.zcard("other:requests") == 1


@pytest.mark.parametrize(
    ("user_id", "delay", "key", "error"),
    [
        ("", 1.0, DEFAULT_REQUESTS_KEY, ValueError),
        ("  ", 1.0, DEFAULT_REQUESTS_KEY, ValueError),
        ("x" * 257, 1.0, DEFAULT_REQUESTS_KEY, ValueError),  # over the workers' limit: they would drop it
        (42, 1.0, DEFAULT_REQUESTS_KEY, TypeError),
        (None, 1.0, DEFAULT_REQUESTS_KEY, TypeError),
        ("u", -1.0, DEFAULT_REQUESTS_KEY, ValueError),
        ("u", float("nan"), DEFAULT_REQUESTS_KEY, ValueError),
        ("u", float("inf"), DEFAULT_REQUESTS_KEY, ValueError),
        ("u", "30", DEFAULT_REQUESTS_KEY, TypeError),
        ("u", True, DEFAULT_REQUESTS_KEY, TypeError),
        ("u", 1.0, "", ValueError),
    ],
)
@pytest.mark.parametrize("client", [FakeRedis, FakeAsyncRedis])
def test_bad_arguments_are_refused_before_touching_redis(
    client: type[Any], user_id: Any, delay: Any, key: str, error: type[Exception]
) -> None:
    redis = client()
    with pytest.raises(error, match=r"user_id|delay|key"):
        request_compression(redis, user_id, delay, key=key)
    assert FakeRedis(server=redis.connection_pool.connection_kwargs["server"]).dbsize() == 0


async def test_enqueue_compression_is_a_deprecated_awaitable_alias() -> None:
    redis = FakeAsyncRedis()
    with pytest.warns(DeprecationWarning, match="use memcompress.request_compression"):
        assert await enqueue_compression(redis, "u1", delay=5, queue_name="ignored") is True
    with pytest.warns(DeprecationWarning, match="deprecated"):
        assert await enqueue_compression(FakeRedis(), "u2") is True  # a sync client works too
    with pytest.warns(DeprecationWarning, match="deprecated"):
        assert await enqueue_compression(redis, "u1") is False
    assert await redis.zrange(DEFAULT_REQUESTS_KEY, 0, -1) == [b"u1"]


def test_the_helper_is_part_of_the_public_surface() -> None:
    assert "request_compression" in memcompress.__all__
    assert "enqueue_compression" in memcompress.__all__


def test_asking_for_a_compression_loads_neither_arq_nor_any_worker_dependency() -> None:
    code = (
        "import sys, memcompress; memcompress.request_compression; memcompress.enqueue_compression; "
        "heavy = {'arq', 'redis', 'pymongo', 'openai', 'pydantic', 'pydantic_settings', "
        "'prometheus_client', 'click'}; "
        "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
