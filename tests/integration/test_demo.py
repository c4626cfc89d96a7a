"""`memcompress demo` (the README's first command) as a subprocess, against the test servers: it ends,
prints the table and progress lines, and leaves nothing behind in MongoDB or Redis."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from pymongo import MongoClient
from redis import Redis


@pytest.mark.parametrize("layout", ["user_memory", "messages", "conversations"])
def test_demo_runs_through_the_queue_prints_the_table_and_cleans_up(
    mongo_uri: str, redis_url: str, layout: str
) -> None:
    client: MongoClient[dict[str, object]] = MongoClient(mongo_uri)
    before = set(client.list_database_names())
    redis = Redis.from_url(redis_url)
    keys = set(redis.scan_iter(count=1000))
    done = subprocess.run(
        [sys.executable, "-m", "memcompress", "demo", "--users", "40", "--workers", "1", "--layout", layout],
        env={
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": os.environ.get("PYTHONPATH", ""),  # a worktree's src, when the tests run from one
            "MEMCOMPRESS_MONGODB_URI": mongo_uri,
            "MEMCOMPRESS_REDIS_URL": redis_url,
        },
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"layout: {layout};" in done.stdout
    assert "planted fact kept?" in done.stdout
    assert "in summary" in done.stdout
    assert "1 worker process," in done.stdout and "'compressed':" in done.stdout
    assert "failed" not in done.stdout
    # Progress as lines when stdout is not a terminal (here a pipe), and no traceback anywhere.
    assert re.search(r"^  \d+/\d+ users done, [\d.]+ users/s$", done.stdout, re.MULTILINE), done.stdout
    assert "Traceback" not in done.stdout + done.stderr
    assert set(client.list_database_names()) == before  # its own database, dropped at the end
    # Nothing left in Redis: no new key of the demo's, none that lasts (a shared server's other keys
    # with a time to live may come and go meanwhile).
    new = set(redis.scan_iter(count=1000)) - keys
    assert {key for key in new if b"demo" in key or redis.ttl(key) == -1} == set()
    redis.close()
    client.close()
