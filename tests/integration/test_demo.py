"""`memcompress demo` (the README's first command) as a subprocess, against the test servers."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pymongo import MongoClient


@pytest.mark.parametrize("layout", ["user_memory", "messages", "conversations"])
def test_demo_runs_through_the_queue_prints_the_table_and_cleans_up(
    mongo_uri: str, redis_url: str, layout: str
) -> None:
    client: MongoClient[dict[str, object]] = MongoClient(mongo_uri)
    before = set(client.list_database_names())
    done = subprocess.run(
        [sys.executable, "-m", "memcompress", "demo", "--users", "40", "--workers", "1", "--layout", layout],
        env={
            "PATH": "/usr/bin:/bin",
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
    assert set(client.list_database_names()) == before  # its own database, dropped at the end
    client.close()
