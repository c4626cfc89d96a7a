"""The ``memcompress`` CLI: click's runner in-process, and real subprocesses for the exit-code contract.

The tests are synchronous (each command runs its own event loop); they seed and count with the
synchronous pymongo and redis clients."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
from click.testing import CliRunner, Result
from pymongo.database import Database
from redis import Redis

from memcompress.cli.app import cli
from memcompress.embedded import free_port
from memcompress.keys import job_id, lock_key
from memcompress.repositories.database import (
    COMPACTION_LOG,
    DEAD_LETTERS,
    USER_MEMORY,
    USER_MEMORY_ARCHIVE,
    USER_PROFILES,
)
from memcompress.settings import load_settings
from memcompress.worker.lifecycle import lifecycle_hooks

pytestmark = pytest.mark.redis
T0 = datetime(2026, 3, 1, tzinfo=UTC)
COLLECTIONS = (USER_MEMORY, USER_MEMORY_ARCHIVE, USER_PROFILES, COMPACTION_LOG, DEAD_LETTERS)


@pytest.fixture
def sync_redis(redis_url: str) -> Iterator[Redis]:
    client = Redis.from_url(redis_url)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def env(mongo_uri: str, db_name: str, redis_url: str) -> dict[str, str]:
    queue = f"test:{uuid.uuid4().hex[:10]}"
    return {
        "MEMCOMPRESS_MONGODB_URI": mongo_uri,
        "MEMCOMPRESS_MONGODB_DB": db_name,
        "MEMCOMPRESS_REDIS_URL": redis_url,
        "MEMCOMPRESS_QUEUE_NAME": queue,
        "MEMCOMPRESS_REQUESTS_KEY": f"{queue}:requests",
        "MEMCOMPRESS_SUMMARIZER": "extractive",
        "MEMCOMPRESS_MONGODB_SERVER_SELECTION_TIMEOUT_MS": "1500",
    }


# An LLM endpoint nobody answers at: dry runs estimate for it without asking it anything.
LLM_ENV = {"MEMCOMPRESS_SUMMARIZER": "openai", "MEMCOMPRESS_LLM_BASE_URL": "http://127.0.0.1:9/v1"}


def invoke(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def seed(mongo: Database[dict[str, Any]], sizes: dict[str, int]) -> None:
    docs = [
        {
            "event_id": str(uuid.uuid4()),
            "user_id": user,
            "role": "user" if i % 2 == 0 else "assistant",
            "content": f"{user} message {i}: I like topic {i}.",
            "created_at": T0 + timedelta(seconds=i),
            "tags": [],
        }
        for user, count in sizes.items()
        for i in range(count)
    ]
    mongo[USER_MEMORY].insert_many(docs)


def snapshot(mongo: Database[dict[str, Any]], redis: Redis) -> tuple[dict[str, int], set[bytes]]:
    """Document counts of every collection (new collections show up too) and every Redis key that does
    not expire (keys a shared server holds from other runs may expire on their own meanwhile); a key
    with a time to live that a command writes is caught by :func:`assert_unchanged`."""
    counts = {
        name: mongo[name].count_documents({}) for name in (*COLLECTIONS, *mongo.list_collection_names())
    }
    return counts, {key for key in redis.scan_iter(count=1000) if redis.ttl(key) == -1}


def assert_unchanged(
    mongo: Database[dict[str, Any]], redis: Redis, before: tuple[dict[str, int], set[bytes]], keys: set[bytes]
) -> None:
    """Nothing written: the same counts and lasting keys as ``before``, and no key that was not among
    ``keys`` (every key, listed together with ``before``)."""
    assert snapshot(mongo, redis) == before
    assert set(redis.scan_iter(count=1000)) - keys == set()


def test_scan_dry_run_json_matches_the_contract_and_changes_nothing(
    env: dict[str, str], mongo: Database[dict[str, Any]], sync_redis: Redis
) -> None:
    seed(mongo, {"a": 51, "b": 50, "c": 80, "d": 3})
    before, keys = snapshot(mongo, sync_redis), set(sync_redis.scan_iter(count=1000))
    offline = json.loads(invoke(env, "scan", "--dry-run", "--json").output)
    assert "estimate" not in offline  # the extractive summariser asks no LLM: nothing to estimate
    env |= LLM_ENV  # a dry run asks nothing: the endpoint is never called
    result = invoke(env, "scan", "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report == offline | {"estimate": report["estimate"]}
    estimate = report.pop("estimate")
    assert (estimate["users"], estimate["users_planned"], estimate["llm_requests"]) == (2, 2, 2)
    assert estimate["prompt_tokens"] > estimate["completion_tokens"] > 0 and "cost_usd" not in estimate
    assert report == {
        "mode": "full",  # a dry run reads every user
        "active_users": None,
        "threshold": 50,
        "users_found": 2,
        "users": [{"user_id": "c", "event_count": 80}, {"user_id": "a", "event_count": 51}],
        "invalid_user_ids": 0,
        "invalid_examples": [],
    }
    assert_unchanged(mongo, sync_redis, before, keys)
    limited = json.loads(
        invoke(env, "scan", "--dry-run", "--json", "--limit", "1", "--threshold", "2").output
    )
    assert limited.pop("estimate")["users"] == 1
    assert limited == {
        "mode": "full",
        "active_users": None,
        "threshold": 2,
        "users_found": 1,
        "users": [{"user_id": "c", "event_count": 80}],
        "invalid_user_ids": 0,
        "invalid_examples": [],
    }


def test_scan_queues_one_job_per_user_and_says_how_many(
    env: dict[str, str], mongo: Database[dict[str, Any]], sync_redis: Redis
) -> None:
    seed(mongo, {"a": 51, "c": 80})
    first = json.loads(invoke(env, "scan", "--json").output)
    assert (first["users_found"], first["enqueued"]) == (2, 2)
    assert "queued 0 jobs (2 already queued or running)" in invoke(env, "scan", "--full").output
    assert sync_redis.zcard(env["MEMCOMPRESS_QUEUE_NAME"]) == 2
    status = json.loads(invoke(env, "status", "--json").output)
    assert (status["queue_depth"], status["waiting"], status["last_scan"]["users_found"]) == (2, 2, 2)


def test_a_scan_after_the_first_reads_only_users_with_new_events_until_a_full_one(
    env: dict[str, str], mongo: Database[dict[str, Any]]
) -> None:
    seed(mongo, {"old": 80, "quiet": 30, "backfilled": 30})
    first = json.loads(invoke(env, "scan", "--json").output)
    assert (first["mode"], [u["user_id"] for u in first["users"]]) == ("full", ["old"])
    now = datetime.now(UTC)
    mongo[USER_MEMORY].insert_many(
        [{"user_id": "quiet", "role": "user", "content": f"new {i}", "created_at": now} for i in range(30)]
    )
    # An import with old times: an incremental scan cannot see it (the README says so).
    mongo[USER_MEMORY].insert_many(
        [{"user_id": "backfilled", "role": "user", "content": f"{i}", "created_at": T0} for i in range(30)]
    )
    second = json.loads(invoke(env, "scan", "--json").output)
    assert (second["mode"], second["active_users"]) == ("incremental", 1)  # "quiet" alone was read
    assert [u["user_id"] for u in second["users"]] == ["quiet"]
    full = json.loads(invoke(env, "scan", "--full", "--json").output)
    assert (full["mode"], full["active_users"]) == ("full", None)
    assert {u["user_id"] for u in full["users"]} == {"old", "quiet", "backfilled"}
    daily = json.loads(invoke({**env, "MEMCOMPRESS_FULL_SCAN_INTERVAL_H": "0"}, "scan", "--json").output)
    assert daily["mode"] == "full"  # the safety net, when due (here: always)
    text = invoke(env, "scan").output
    assert text.startswith("incremental scan of 1 user with new events: 1 user with more than 50 events")


def test_the_scan_reports_invalid_user_ids_and_never_queues_them(
    env: dict[str, str], mongo: Database[dict[str, Any]], sync_redis: Redis
) -> None:
    long_id = "x" * 300
    seed(mongo, {"a": 51, "": 70, long_id: 60})
    events = [
        {"role": "user", "content": f"message {i}", "created_at": T0 + timedelta(seconds=i)}
        for i in range(55)
    ]
    mongo[USER_MEMORY].insert_many([{**e, "user_id": 42} for e in events] + [dict(e) for e in events])
    result = invoke(env, "scan", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)  # stderr: the scan's warning about them
    assert "4 user_id values in the history are over the threshold" in result.stderr
    assert report["users"] == [{"user_id": "a", "event_count": 51}]
    assert (report["enqueued"], report["invalid_user_ids"]) == (1, 4)
    assert report["invalid_examples"][:2] == [
        "'' (empty)",
        "a string of 300 characters (sha256 " + hashlib.sha256(long_id.encode()).hexdigest()[:12] + "...)",
    ]
    assert sorted(report["invalid_examples"][2:]) == [
        "int (sha256 " + hashlib.sha256(b"42").hexdigest()[:12] + "...)",  # the hash, never the value
        "null or missing",
    ]
    assert long_id not in result.output
    assert [m.decode() for m in sync_redis.zrange(env["MEMCOMPRESS_QUEUE_NAME"], 0, -1)] == [
        job_id("a", env["MEMCOMPRESS_QUEUE_NAME"])
    ]
    last_scan = json.loads(invoke(env, "status", "--json").stdout)["last_scan"]
    assert last_scan["invalid_user_ids"] == 4
    assert (
        "4 user_id values over the threshold: not valid user ids" in invoke(env, "scan", "--dry-run").output
    )


def test_the_scan_skips_a_dead_lettered_user_until_it_has_newer_events(
    env: dict[str, str], mongo: Database[dict[str, Any]]
) -> None:
    seed(mongo, {"dl": 60, "a": 51})
    mongo[DEAD_LETTERS].insert_one(
        {"_id": "dl", "user_id": "dl", "reason": "HTTP 400", "tries": 1, "failed_at": T0 + timedelta(hours=1)}
    )
    found = json.loads(invoke(env, "scan", "--dry-run", "--json").output)
    assert [u["user_id"] for u in found["users"]] == ["a"]  # it would fail the same way again
    mongo[USER_MEMORY].insert_one(
        {"user_id": "dl", "role": "user", "content": "new", "created_at": T0 + timedelta(hours=2)}
    )
    found = json.loads(invoke(env, "scan", "--dry-run", "--json").output)
    assert [u["user_id"] for u in found["users"]] == ["dl", "a"]


def test_compress_exit_codes(env: dict[str, str], mongo: Database[dict[str, Any]]) -> None:
    seed(mongo, {"big": 60, "small": 10})
    assert invoke(env, "compress", "small").exit_code == 0  # nothing to do
    result = invoke(env, "compress", "big", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["outcome"] == "compressed"
    assert mongo[USER_MEMORY].count_documents({"user_id": "big"}) == 20

    seed(mongo, {"llm-down": 60})
    dead_llm = env | {
        "MEMCOMPRESS_SUMMARIZER": "openai",
        "MEMCOMPRESS_LLM_BASE_URL": f"http://127.0.0.1:{free_port()}/v1",
        "MEMCOMPRESS_LLM_API_KEY": "k",
        "MEMCOMPRESS_LLM_MAX_RETRIES": "0",
    }
    result = invoke(dead_llm, "compress", "llm-down", "--json")
    assert result.exit_code == 1
    assert json.loads(result.output)["outcome"] == "failed"
    assert mongo[USER_MEMORY].count_documents({"user_id": "llm-down"}) == 60


def test_compress_dry_run_shows_the_plan_and_stores_nothing(
    env: dict[str, str], mongo: Database[dict[str, Any]], sync_redis: Redis
) -> None:
    seed(mongo, {"big": 75})
    before, keys = snapshot(mongo, sync_redis), set(sync_redis.scan_iter(count=1000))
    result = invoke(env, "compress", "big", "--dry-run", "--preview", "--json")
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    assert (plan["events"], plan["events_to_fold"], plan["would_compress"]) == (75, 55, True)
    assert plan["chunk_sizes"] == [55]
    assert "estimated_prompt_tokens" not in plan  # the extractive summariser asks no LLM
    assert "big message 0" in plan["preview_summary"]
    with_llm = json.loads(invoke(env | LLM_ENV, "compress", "big", "--dry-run", "--json").output)
    assert with_llm["estimated_prompt_tokens"] > 0 and "preview_summary" not in with_llm
    assert_unchanged(mongo, sync_redis, before, keys)  # not even a default profile
    text = invoke(env, "compress", "big", "--dry-run").output
    assert "reason:" not in text and "None" not in text  # nothing to say: no "reason: None"
    seed(mongo, {"small": 3})
    assert "reason: " in invoke(env, "compress", "small", "--dry-run").output


def test_dry_runs_show_a_cost_when_the_prices_are_set(
    env: dict[str, str], mongo: Database[dict[str, Any]]
) -> None:
    seed(mongo, {"big": 75})
    priced = (
        env
        | LLM_ENV
        | {
            "MEMCOMPRESS_LLM_PRICE_PROMPT_PER_1M": "0.15",
            "MEMCOMPRESS_LLM_PRICE_COMPLETION_PER_1M": "0.60",
        }
    )
    plan = json.loads(invoke(priced, "compress", "big", "--dry-run", "--json").output)
    assert "estimated_cost_usd" not in json.loads(
        invoke(env, "compress", "big", "--dry-run", "--json").output
    )
    expected = (plan["estimated_prompt_tokens"] * 0.15 + plan["estimated_completion_tokens"] * 0.60) / 1e6
    assert plan["estimated_cost_usd"] == pytest.approx(expected, abs=1e-4)
    estimate = json.loads(invoke(priced, "scan", "--dry-run", "--json").output)["estimate"]
    assert (estimate["prompt_tokens"], estimate["completion_tokens"]) == (
        plan["estimated_prompt_tokens"],
        plan["estimated_completion_tokens"],
    )
    assert estimate["cost_usd"] == plan["estimated_cost_usd"]
    text = invoke(priced, "scan", "--dry-run").output
    assert f"estimate: 1 LLM request, {estimate['prompt_tokens']} prompt + " in text
    assert f"about ${estimate['cost_usd']:.2f}" in text


def test_run_once_compresses_everyone_and_reports(
    env: dict[str, str], mongo: Database[dict[str, Any]], sync_redis: Redis
) -> None:
    seed(mongo, {f"u{i}": 55 + i for i in range(5)} | {"few": 5})
    before, keys = snapshot(mongo, sync_redis), set(sync_redis.scan_iter(count=1000))
    dry = invoke(env, "run-once", "--dry-run")
    assert dry.exit_code == 0 and "5 users with more than 50 events" in dry.output
    assert_unchanged(mongo, sync_redis, before, keys)
    result = invoke(env, "run-once", "--limit", "3")
    assert result.exit_code == 0, result.output
    assert "compressed       3" in result.output
    assert mongo[USER_MEMORY].count_documents({"user_id": "u4"}) == 20  # most events first
    assert mongo[USER_MEMORY].count_documents({"user_id": "u0"}) == 55


def test_run_once_exits_1_when_a_user_fails_and_pushes_its_metrics(
    env: dict[str, str], mongo: Database[dict[str, Any]]
) -> None:
    pushed: list[bytes] = []

    class Gateway(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            pushed.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            return None

    server = HTTPServer(("127.0.0.1", 0), Gateway)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        seed(mongo, {"u": 60})
        failing = env | {
            "MEMCOMPRESS_SUMMARIZER": "openai",
            "MEMCOMPRESS_LLM_BASE_URL": f"http://127.0.0.1:{free_port()}/v1",
            "MEMCOMPRESS_LLM_MAX_RETRIES": "0",
            "MEMCOMPRESS_PUSHGATEWAY_URL": f"http://127.0.0.1:{server.server_address[1]}",
        }
        result = invoke(failing, "run-once")
        assert result.exit_code == 1
        assert "failed: u:" in result.output
    finally:
        server.shutdown()
        server.server_close()
    assert pushed, "nothing was pushed"
    assert b"personalized_memory_worker_errors_total" in pushed[0]
    assert b"last_success" not in pushed[0]  # a failed run keeps the last good run's timestamp


def test_forget_leaves_nothing_of_the_user_anywhere(
    env: dict[str, str], mongo: Database[dict[str, Any]], sync_redis: Redis
) -> None:
    env = env | {"MEMCOMPRESS_RETENTION": "archive"}
    seed(mongo, {"gone": 70, "stays": 70})
    assert invoke(env, "compress", "gone").exit_code == 0
    assert invoke(env, "compress", "stays").exit_code == 0
    mongo[DEAD_LETTERS].insert_one({"_id": "gone", "user_id": "gone", "reason": "x", "tries": 1})
    assert invoke(env, "enqueue", "gone", "stays", "--delay", "60").exit_code == 0
    assert "already queued" in invoke(env, "enqueue", "gone").output  # a request waits for the job

    refused = invoke(env, "forget", "gone")
    assert refused.exit_code == 1 and "user_memory_archive: 50" in refused.output
    assert mongo[USER_MEMORY].count_documents({"user_id": "gone"}) == 20

    result = invoke(env, "forget", "gone", "--yes")
    assert result.exit_code == 0, result.output
    assert "user_memory: 20" in result.output and "queued_job: 1" in result.output
    assert "request: 1" in result.output
    for name in COLLECTIONS:
        assert mongo[name].count_documents({"$or": [{"user_id": "gone"}, {"_id": "gone"}]}) == 0, name
    assert not [k for k in sync_redis.scan_iter(count=1000) if b"gone" in k]
    assert (
        sync_redis.zscore(env["MEMCOMPRESS_QUEUE_NAME"], job_id("gone", env["MEMCOMPRESS_QUEUE_NAME"]))
        is None
    )
    assert sync_redis.zscore(env["MEMCOMPRESS_REQUESTS_KEY"], "gone") is None
    assert mongo[USER_MEMORY].count_documents({"user_id": "stays"}) == 20  # nobody else touched
    assert invoke(env, "compress", "gone").exit_code == 0  # a late job for the erased user ...
    for name in COLLECTIONS:  # ... leaves no trace: no profile, no compaction record
        assert mongo[name].count_documents({"$or": [{"user_id": "gone"}, {"_id": "gone"}]}) == 0, name
    assert (
        sync_redis.zscore(env["MEMCOMPRESS_QUEUE_NAME"], job_id("stays", env["MEMCOMPRESS_QUEUE_NAME"]))
        is not None
    )


def test_status_and_the_workers_start_name_a_missing_unique_profile_index(
    env: dict[str, str], mongo: Database[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    mongo[USER_PROFILES].create_index("user_id")  # an app's index, but not unique
    missing = "user_profiles has no unique index on user_id"
    status = invoke(env, "status")
    assert f"AT RISK: {missing}" in status.output and "Fix: memcompress migrate" in status.output
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert f"AT RISK: {missing}: two profiles" in "\n".join(_worker_start_errors())

    mongo[USER_PROFILES].drop_indexes()
    assert invoke(env, "migrate").exit_code == 0
    assert "AT RISK" not in invoke(env, "status").output
    assert json.loads(invoke(env, "status", "--json").output)["risks"] == []
    assert _worker_start_errors() == []


def _worker_start_errors() -> list[str]:
    """What a worker process logs as errors around its jobs (arq's on_startup, then its on_shutdown)."""
    on_startup, on_shutdown = lifecycle_hooks(load_settings(metrics_port=0))
    errors: list[str] = []
    handler = logging.Handler(logging.ERROR)
    handler.emit = lambda record: errors.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("memcompress")
    logger.addHandler(handler)
    ctx: dict[str, Any] = {}

    async def start_and_stop() -> None:
        await on_startup(ctx)
        await on_shutdown(ctx)

    try:
        asyncio.run(start_and_stop())
    finally:
        logger.removeHandler(handler)
    return errors


def test_enqueue_status_and_migrate(env: dict[str, str], mongo: Database[dict[str, Any]]) -> None:
    assert "u1: queued" in invoke(env, "enqueue", "u1").output
    assert "already queued or running" in invoke(env, "enqueue", "u1").output
    assert "a: queued, due in 60s" in invoke(env, "enqueue", "a", "--delay", "60").output
    status = invoke(env, "status")
    assert status.exit_code == 0 and "2 jobs (0 running, 1 waiting, 1 deferred)" in status.output
    assert "requests from apps: 1 (" in status.output  # u1's, waiting for its job
    assert "workers reporting in: 0" in status.output
    first = invoke(env, "migrate")
    assert first.exit_code == 0 and "index ok: user_memory.user_created_id" in first.output
    assert invoke(env, "migrate").output == first.output
    assert invoke(env, "enqueue").exit_code == 2  # usage error: no user given
    mongo[DEAD_LETTERS].insert_one(
        {"_id": "dl", "user_id": "dl", "reason": "HTTP 400", "tries": 1, "failed_at": T0}
    )
    assert "dead letters: 1" in invoke(env, "status").output
    assert "dl: queued" in invoke(env, "dead", "retry", "--all").output


def test_status_adds_up_the_llm_tokens_of_the_last_24_hours(
    env: dict[str, str], mongo: Database[dict[str, Any]]
) -> None:
    now = datetime.now(UTC)
    runs = [
        (now - timedelta(hours=1), 2, 1000, 150),
        (now - timedelta(hours=23), 1, 400, None),  # a server that reported no completion tokens
        (now - timedelta(hours=1), 0, None, None),  # the offline summariser: no LLM
        (now - timedelta(hours=25), 5, 9000, 900),  # too old
    ]
    mongo[COMPACTION_LOG].insert_many(
        [
            {"user_id": f"u{i}", "outcome": "compressed", "finished_at": at, "llm_calls": calls}
            | {"prompt_tokens": prompt, "completion_tokens": completion}
            for i, (at, calls, prompt, completion) in enumerate(runs)
        ]
    )
    offline = invoke(env, "status")
    assert "llm_usage_24h" not in json.loads(invoke(env, "status", "--json").output)
    assert "LLM" not in offline.output  # the extractive summariser: no LLM figures at all
    env |= LLM_ENV
    report = json.loads(invoke(env, "status", "--json").output)
    assert report["llm_usage_24h"] == {"llm_calls": 3, "prompt_tokens": 1400, "completion_tokens": 150}
    assert (
        "LLM, last 24 hours: 3 requests, 1400 prompt + 150 completion tokens" in invoke(env, "status").output
    )


def test_status_with_mongodb_down_shows_the_redis_parts(env: dict[str, str]) -> None:
    down = env | {
        "MEMCOMPRESS_MONGODB_URI": f"mongodb://127.0.0.1:{free_port()}/?directConnection=true",
        "MEMCOMPRESS_MONGODB_SERVER_SELECTION_TIMEOUT_MS": "300",
    }
    assert invoke(down, "enqueue", "u1").exit_code == 0
    result = invoke(down, "status")
    assert result.exit_code == 0 and ": 1 job (0 running, 1 waiting, 0 deferred)" in result.output
    assert "store: cannot reach MongoDB at" in result.output
    report = json.loads(invoke(down, "status", "--json").output)
    assert report["queue_depth"] == 1 and "cannot reach MongoDB" in report["store_error"]


def test_pause_queue_and_dead_letter_commands(
    env: dict[str, str], mongo: Database[dict[str, Any]], sync_redis: Redis
) -> None:
    paused = invoke(env, "pause", "--json")
    assert paused.exit_code == 0 and json.loads(paused.output)["paused"] is True
    assert "(PAUSED)" in invoke(env, "status").output
    assert invoke(env, "enqueue", "a", "c", "--delay", "600").exit_code == 0
    listed = json.loads(invoke(env, "queue", "list", "--json").output)
    assert (listed["paused"], listed["queue_depth"]) == (True, 2)
    assert {job["user_id"] for job in listed["jobs"]} == {"a", "c"} and not any(
        j["due"] for j in listed["jobs"]
    )
    assert invoke(env, "queue", "purge").exit_code == 1  # without --yes: nothing purged
    assert sync_redis.zcard(env["MEMCOMPRESS_QUEUE_NAME"]) == 2
    assert json.loads(invoke(env, "queue", "purge", "--yes", "--json").output) == {"purged": 2}
    assert json.loads(invoke(env, "resume", "--json").output)["was_paused"] is True

    mongo[DEAD_LETTERS].insert_many(
        [
            {"_id": u, "user_id": u, "reason": r, "tries": 1, "error_class": c, "failed_at": T0}
            for u, r, c in [("dl", "HTTP 400", "PermanentSummarizerError"), ("gone", "lost", "CarryLoss")]
        ]
    )
    only = json.loads(invoke(env, "dead", "list", "--error-class", "CarryLoss", "--json").output)
    assert [d["user_id"] for d in only["dead_letters"]] == ["gone"]
    preview = invoke(env, "dead", "delete", "gone", "--json")  # without --yes: shows, deletes nothing
    assert (preview.exit_code, json.loads(preview.stdout)) == (1, {"would_delete": ["gone"]})
    assert json.loads(invoke(env, "dead", "delete", "gone", "--yes", "--json").output) == {
        "deleted": ["gone"]
    }
    assert json.loads(invoke(env, "dead", "retry", "dl", "--json").output) == {"queued": {"dl": True}}
    assert json.loads(invoke(env, "enqueue", "c", "--json").output) == {"queued": {"c": True}}
    migrated = json.loads(invoke(env, "migrate", "--json").output)
    assert "user_memory.user_created_id" in migrated["indexes"] and migrated["risks"] == []
    assert json.loads(invoke(env, "forget", "dl", "--json").stdout)["would_remove"][DEAD_LETTERS] == 1
    assert json.loads(invoke(env, "run-once", "--dry-run", "--json").output)["users_found"] == 0
    assert mongo[DEAD_LETTERS].count_documents({}) == 1  # retry keeps it until the user compresses


def test_unknown_ids_are_errors_and_destructive_commands_need_yes(
    env: dict[str, str], mongo: Database[dict[str, Any]], sync_redis: Redis
) -> None:
    mongo[DEAD_LETTERS].insert_one({"_id": "dl", "user_id": "dl", "reason": "x", "tries": 1, "failed_at": T0})
    seed(mongo, {"stays": 3})
    before, keys = snapshot(mongo, sync_redis), set(sync_redis.scan_iter(count=1000))
    for args in (
        ("dead", "retry", "nosuch"),
        ("dead", "retry", "dl", "nosuch"),  # all or nothing: dl is not queued either
        ("dead", "delete", "nosuch", "--yes"),
    ):
        result = invoke(env, *args)
        assert (result.exit_code, result.stdout) == (1, ""), args
        assert "no such dead letter: nosuch" in result.stderr
    for args in (("forget", "nosuch"), ("forget", "nosuch", "--yes")):
        result = invoke(env, *args)
        assert (result.exit_code, result.stdout) == (1, ""), args
        assert "nothing stored for this id — check the id" in result.stderr
    for args in (("forget", "stays"), ("queue", "purge"), ("dead", "delete", "--all")):  # no --yes
        result = invoke(env, *args)
        assert result.exit_code == 1 and "run again with --yes" in result.stderr, args
        assert result.stdout  # what would go
    assert_unchanged(mongo, sync_redis, before, keys)


def test_an_invalid_id_in_redis_is_shown_by_its_hash_only(env: dict[str, str], sync_redis: Redis) -> None:
    long_id = "my phone is 555 0100" * 15  # 300 characters another client put into Redis
    queue = env["MEMCOMPRESS_QUEUE_NAME"]
    sync_redis.zadd(env["MEMCOMPRESS_REQUESTS_KEY"], {long_id: 0})
    sync_redis.zadd(queue, {job_id(long_id, queue): 0})
    sync_redis.set(lock_key(long_id, queue), b"held", px=60_000)
    try:
        outputs = [invoke(env, *args).output for args in (("queue", "list", "--json"), ("status", "--json"))]
        outputs += [invoke(env, "status").output, invoke(env, "queue", "list").output]
    finally:
        sync_redis.delete(lock_key(long_id, queue), job_id(long_id, queue))
    assert all("555" not in output for output in outputs)
    listed = json.loads(outputs[0])
    digest = hashlib.sha256(long_id.encode()).hexdigest()[:12]
    assert listed["requests"][0]["user_id"] == f"a string of 300 characters (sha256 {digest}...)"
    assert json.loads(outputs[1])["held_locks"][0]["user_id"].endswith(f"(sha256 {digest}...)")


def test_unknown_variables_are_named_with_the_closest_setting(
    env: dict[str, str], tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("MEMCOMPRESS_THRESHLD=10\nMEMCOMPRESS_KEEPLAST=3\n")
    result = invoke(env | {"MEMCOMPRESS_THRESHLD": "10"}, "config")
    assert result.exit_code == 0
    warnings = [line for line in result.stderr.splitlines() if "is not a setting" in line]
    assert warnings == [
        "memcompress: warning: MEMCOMPRESS_KEEPLAST (in .env) is not a setting and is ignored: did you "
        "mean MEMCOMPRESS_KEEP_LAST?",
        "memcompress: warning: MEMCOMPRESS_THRESHLD (in the environment) is not a setting and is "
        "ignored: did you mean MEMCOMPRESS_THRESHOLD?",
    ]  # once each, though the environment and the .env both set MEMCOMPRESS_THRESHLD
    (tmp_path / ".env").unlink()
    assert "is not a setting" not in invoke(env | {"MEMCOMPRESS_LOG_FORMAT": "text"}, "config").stderr


def test_the_store_urls_can_be_given_as_options(env: dict[str, str], mongo: Database[dict[str, Any]]) -> None:
    seed(mongo, {"a": 51})
    nowhere = env | {
        "MEMCOMPRESS_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        "MEMCOMPRESS_MONGODB_URI": f"mongodb://127.0.0.1:{free_port()}/?directConnection=true",
    }
    given = ("--redis-url", env["MEMCOMPRESS_REDIS_URL"], "--mongodb-uri", env["MEMCOMPRESS_MONGODB_URI"])
    result = invoke(nowhere, *given, "scan", "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["users_found"] == 1
    shown = json.loads(invoke(nowhere, *given, "config", "--json").stdout)
    assert shown["redis_url"]["source"] == "flag" and shown["mongodb_db"]["source"] == "env"


def _strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def test_json_output_writes_every_time_in_iso_8601_with_z(
    env: dict[str, str], mongo: Database[dict[str, Any]]
) -> None:
    seed(mongo, {"a": 51, "c": 55})
    assert invoke(env, "scan").exit_code == 0
    assert invoke(env, "compress", "c").exit_code == 0
    mongo[DEAD_LETTERS].insert_one({"_id": "dl", "user_id": "dl", "reason": "x", "tries": 1, "failed_at": T0})
    outputs = [
        invoke(env, *args, "--json").stdout for args in (("status",), ("queue", "list"), ("dead", "list"))
    ]
    times = [
        text
        for output in outputs
        for text in _strings(json.loads(output))
        if re.match(r"\d{4}-\d\d-\d\dT", text)
    ]
    assert len(times) >= 5  # the scan's times, the queued jobs', the compaction's, the dead letter's
    assert all(text.endswith("Z") for text in times), times


def test_run_once_warns_about_the_apps_ttl_index(
    env: dict[str, str], mongo: Database[dict[str, Any]]
) -> None:
    mongo[USER_MEMORY].create_index("created_at", name="created_at_ttl", expireAfterSeconds=30 * 86_400)
    result = invoke(env, "run-once")
    assert result.exit_code == 0
    assert "memcompress: at risk: user_memory has TTL index 'created_at_ttl'" in result.stderr


def _subprocess(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "memcompress", *args],
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"MEMCOMPRESS_KEEP_LAST": "60"}, "invalid configuration: MEMCOMPRESS_KEEP_LAST (60) must be less"),
        ({"MEMCOMPRESS_REDIS_URL": "http://nope"}, "MEMCOMPRESS_REDIS_URL must start with redis://"),
        (
            {"MEMCOMPRESS_MONGODB_URI": f"mongodb://127.0.0.1:{free_port()}/?directConnection=true"},
            "cannot reach MongoDB",
        ),
    ],
)
def test_bad_config_or_unreachable_store_is_one_line_and_exit_2(
    env: dict[str, str], override: dict[str, str], message: str
) -> None:
    done = _subprocess(env | override, "scan", "--dry-run", "--json")
    assert done.returncode == 2
    assert done.stdout == ""
    assert message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


def test_unreachable_redis_is_exit_2(env: dict[str, str], mongo: Database[dict[str, Any]]) -> None:
    seed(mongo, {"u": 60})
    done = _subprocess(env | {"MEMCOMPRESS_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}, "compress", "u")
    assert done.returncode == 2
    assert done.stderr.startswith("memcompress: cannot reach Redis")
    assert mongo[USER_MEMORY].count_documents({"user_id": "u"}) == 60


def test_subprocess_scan_json_and_the_worker_health_check(
    env: dict[str, str], mongo: Database[dict[str, Any]]
) -> None:
    seed(mongo, {"a": 52})
    done = _subprocess(env, "scan", "--dry-run", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["users"] == [{"user_id": "a", "event_count": 52}]
    assert _subprocess(env, "worker", "--check").returncode == 1  # no worker has reported in
    no_redis = _subprocess(
        env | {"MEMCOMPRESS_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}, "worker", "--check"
    )
    assert no_redis.returncode == 1
    assert (
        "memcompress: unhealthy: cannot reach Redis" in no_redis.stderr and "Traceback" not in no_redis.stderr
    )
