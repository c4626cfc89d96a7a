"""What ``memcompress status`` shows: the queue, running jobs, held locks, dead letters, recent runs."""

from __future__ import annotations

import time
from typing import Any

from redis.asyncio import Redis

from memcompress.jobs.scan import last_scan
from memcompress.keys import (
    ARQ_IN_PROGRESS_PREFIX,
    JOB_ID_PREFIX,
    LOCK_KEY_PREFIX,
    health_check_key,
    user_from_job_id,
)
from memcompress.repositories.protocols import CompactionLog, DeadLetters

LIST_AT_MOST = 50


async def queue_status(redis: Redis, queue_name: str) -> dict[str, Any]:
    """Queue depth (waiting and deferred), jobs in progress, held locks, last scan, worker health."""
    now_ms = time.time() * 1000
    depth = await redis.zcard(queue_name)
    ready = await redis.zcount(queue_name, "-inf", now_ms)
    in_progress = sorted(
        user
        for key in await _keys(redis, ARQ_IN_PROGRESS_PREFIX + JOB_ID_PREFIX + "*")
        if (user := user_from_job_id(key.removeprefix(ARQ_IN_PROGRESS_PREFIX))) is not None
    )
    locks = []
    for key in await _keys(redis, LOCK_KEY_PREFIX + "*"):
        ttl_ms = await redis.pttl(key)
        locks.append({"user_id": key.removeprefix(LOCK_KEY_PREFIX), "expires_in_s": round(ttl_ms / 1000, 1)})
    health = await worker_health(redis, queue_name, "*")
    return {
        "queue": queue_name,
        "queue_depth": depth,
        "waiting": max(ready - len(in_progress), 0),  # due, not yet taken (running jobs stay queued)
        "deferred": depth - ready,
        "in_progress": in_progress[:LIST_AT_MOST],
        "in_progress_count": len(in_progress),
        "held_locks": sorted(locks, key=lambda lock: str(lock["user_id"]))[:LIST_AT_MOST],
        "held_locks_count": len(locks),
        "last_scan": await last_scan(redis),
        "worker_health": health,
    }


async def worker_health(redis: Redis, queue_name: str, host: str) -> dict[str, str]:
    """``host:pid`` → the arq health line of each worker that reported in recently (``host="*"``: all)."""
    prefix = queue_name + ":health-check:"
    health = {}
    for key in await _keys(redis, health_check_key(queue_name, host, "*")):
        value = await redis.get(key)
        if value is not None:  # expired between SCAN and GET
            health[key.removeprefix(prefix)] = value.decode()
    return health


async def store_status(dead_letters: DeadLetters, compaction_log: CompactionLog) -> dict[str, Any]:
    letters = await dead_letters.list(LIST_AT_MOST)
    recent = await compaction_log.recent(10)
    return {
        "dead_letters_count": await dead_letters.count(),
        "dead_letters": [letter.model_dump(mode="json") for letter in letters],
        "last_compactions": [
            record.model_dump(
                mode="json",
                include={"user_id", "outcome", "reason", "events_folded", "finished_at", "duration_s"},
            )
            for record in recent
        ],
    }


async def _keys(redis: Redis, pattern: str) -> list[str]:
    """SCAN, never KEYS: safe on a busy production Redis."""
    return [key.decode() async for key in redis.scan_iter(match=pattern, count=1000)]
