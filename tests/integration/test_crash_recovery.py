"""A crash does not keep a user blocked for long: after ``kill -9`` of an inline ``memcompress compress``
in the middle of its LLM call, the user's lock (still held in Redis) expires within the default lock
TTL, and the next ``compress`` of that user succeeds."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from typing import Any

import pytest
from pymongo.database import Database
from redis import Redis

from memcompress.keys import lock_key
from memcompress.repositories.database import USER_MEMORY
from memcompress.testing.app_documents import app_event
from memcompress.testing.factories import T0
from memcompress.testing.llm_server import FakeLLM
from memcompress.testing.workers import PASSED_THROUGH

pytestmark = pytest.mark.redis
RECOVERED_WITHIN_S = 60


def test_after_kill_9_mid_llm_call_the_user_can_be_compressed_again_within_a_minute(
    mongo: Database[dict[str, Any]], mongo_uri: str, db_name: str, redis_url: str, llm: FakeLLM
) -> None:
    user = f"crash-{uuid.uuid4().hex[:8]}"
    mongo[USER_MEMORY].insert_many(
        [app_event(user, "user", f"message {i}", T0 + timedelta(seconds=i)) for i in range(60)]
    )
    env = {name: os.environ[name] for name in PASSED_THROUGH if name in os.environ} | {
        # Default settings otherwise: the lock TTL is the one a deployment gets.
        "MEMCOMPRESS_MONGODB_URI": mongo_uri,
        "MEMCOMPRESS_MONGODB_DB": db_name,
        "MEMCOMPRESS_REDIS_URL": redis_url,
        "MEMCOMPRESS_QUEUE_NAME": (queue := f"test:{uuid.uuid4().hex[:10]}"),
        "MEMCOMPRESS_LLM_BASE_URL": llm.base_url,
        "MEMCOMPRESS_LLM_API_KEY": "test-key",
    }
    argv = [sys.executable, "-m", "memcompress", "compress", user, "--json"]
    llm.latency_s = 120
    first = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    redis = Redis.from_url(redis_url)
    try:
        deadline = time.monotonic() + 60
        while llm.requests == 0:  # the run holds the lock and waits for its LLM answer
            assert first.poll() is None and time.monotonic() < deadline, (
                "the first compress never asked the LLM"
            )
            time.sleep(0.1)
        assert redis.exists(lock_key(user, queue)) == 1
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        killed_at = time.monotonic()
        llm.latency_s = 0

        outcomes = []
        while not outcomes or outcomes[-1] != "compressed":
            assert time.monotonic() - killed_at < RECOVERED_WITHIN_S, f"still blocked: {outcomes}"
            done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, done.stderr
            outcomes.append(json.loads(done.stdout)["outcome"])
            if outcomes[-1] == "busy":
                time.sleep(1)
    finally:
        redis.close()
        if first.poll() is None:
            first.kill()
            first.wait()
    assert outcomes[0] == "busy"  # the dead run's lock was there, and it expired by itself
    assert mongo[USER_MEMORY].count_documents({"user_id": user}) == 20
