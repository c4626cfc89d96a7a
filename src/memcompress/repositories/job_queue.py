"""The compression queue on Redis: arq's queue of ``compress:<user_id>`` jobs, the re-check flags,
the last scan, and what ``status`` and ``forget`` read or remove there."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from arq.constants import health_check_key_suffix, in_progress_key_prefix, job_key_prefix, retry_key_prefix
from redis.asyncio import Redis

from memcompress.keys import (
    JOB_ID_PREFIX,
    LAST_SCAN_KEY,
    LOCK_KEY_PREFIX,
    job_id,
    paused_key,
    recheck_key,
    user_from_job_id,
)
from memcompress.models import utc_now
from memcompress.queue import RECHECK_TTL_S, enqueue_compression, enqueue_job

LIST_AT_MOST = 50


def health_check_key(queue_name: str, host: str, pid: int | str) -> str:
    """Each worker process writes its own health-check key (host and pid), so ``status`` shows every
    process and a probe run on a host (a pod, a container) checks that host's workers, not any worker
    of the queue. ``pid="*"`` gives the pattern for all of a host's workers."""
    return f"{queue_name}{health_check_key_suffix}:{host}:{pid}"


class RedisJobQueue:
    def __init__(self, redis: Redis, name: str) -> None:
        self._redis = redis
        self.name = name

    async def enqueue(self, user_id: str, *, delay_s: float = 0.0) -> bool:
        return await enqueue_job(self._redis, user_id, delay=delay_s, queue_name=self.name)

    async def request(self, user_id: str, *, delay_s: float = 0.0) -> bool:
        return await enqueue_compression(self._redis, user_id, delay=delay_s, queue_name=self.name)

    async def set_recheck(self, user_id: str, *, delay_s: float) -> None:
        await self._redis.set(recheck_key(user_id), str(delay_s), ex=RECHECK_TTL_S)

    async def clear_recheck(self, user_id: str) -> None:
        await self._redis.delete(recheck_key(user_id))

    async def take_recheck(self, user_id: str) -> float | None:
        delay = await self._redis.getdel(recheck_key(user_id))
        return None if delay is None else float(delay)

    async def record_scan(self, summary: dict[str, object]) -> None:
        await self._redis.set(LAST_SCAN_KEY, json.dumps(summary))

    async def last_scan(self) -> dict[str, object] | None:
        raw = await self._redis.get(LAST_SCAN_KEY)
        return json.loads(raw) if raw else None

    async def depth(self) -> int:
        depth: int = await self._redis.zcard(self.name)
        return depth

    async def purge(self) -> int:
        """Drop the queued jobs and their job keys (arq refuses a job id whose key still exists, so
        leaving them would block those users until the keys expire)."""
        members = [member.decode() for member in await self._redis.zrange(self.name, 0, -1)]
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zrem(self.name, *members) if members else pipe.zcard(self.name)
            for job in members:
                pipe.delete(job_key_prefix + job, retry_key_prefix + job)
            removed = (await pipe.execute())[0]
        return int(removed) if members else 0

    async def jobs(self, limit: int) -> list[dict[str, Any]]:
        now_ms = time.time() * 1000
        rows = await self._redis.zrange(self.name, 0, limit - 1, withscores=True)
        return [
            {
                "user_id": user_from_job_id(member.decode()) or member.decode(),
                "due_at": datetime.fromtimestamp(score / 1000, UTC).isoformat(),
                "due": score <= now_ms,
            }
            for member, score in rows
        ]

    async def pause(self) -> None:
        await self._redis.set(paused_key(self.name), utc_now().isoformat())

    async def resume(self) -> bool:
        return bool(await self._redis.delete(paused_key(self.name)))

    async def paused(self) -> bool:
        return bool(await self._redis.exists(paused_key(self.name)))

    async def status(self) -> dict[str, Any]:
        now_ms = time.time() * 1000
        depth = await self.depth()
        ready = await self._redis.zcount(self.name, "-inf", now_ms)
        in_progress = sorted(
            user
            for key in await self._keys(in_progress_key_prefix + JOB_ID_PREFIX + "*")
            if (user := user_from_job_id(key.removeprefix(in_progress_key_prefix))) is not None
        )
        locks = []
        for key in await self._keys(LOCK_KEY_PREFIX + "*"):
            ttl_ms = await self._redis.pttl(key)
            locks.append(
                {"user_id": key.removeprefix(LOCK_KEY_PREFIX), "expires_in_s": round(ttl_ms / 1000, 1)}
            )
        return {
            "queue": self.name,
            "paused": await self.paused(),
            "queue_depth": depth,
            "waiting": max(ready - len(in_progress), 0),  # due, not yet taken (running jobs stay queued)
            "deferred": depth - ready,
            "in_progress": in_progress[:LIST_AT_MOST],
            "in_progress_count": len(in_progress),
            "held_locks": sorted(locks, key=lambda lock: str(lock["user_id"]))[:LIST_AT_MOST],
            "held_locks_count": len(locks),
            "last_scan": await self.last_scan(),
            "worker_health": await self.worker_health("*"),
        }

    async def worker_health(self, host: str) -> dict[str, str]:
        """``host:pid`` → the arq health line of each worker that reported in recently (``host="*"``: all)."""
        prefix = health_check_key(self.name, "", "").removesuffix(":")
        health = {}
        for key in await self._keys(health_check_key(self.name, host, "*")):
            value = await self._redis.get(key)
            if value is not None:  # expired between SCAN and GET
                health[key.removeprefix(prefix)] = value.decode()
        return health

    async def erase_user(self, user_id: str) -> dict[str, int]:
        job = job_id(user_id)
        return {
            "queued_job": await self._redis.zrem(self.name, job),
            "redis_keys": await self._redis.delete(
                job_key_prefix + job, retry_key_prefix + job, recheck_key(user_id)
            ),
        }

    async def _keys(self, pattern: str) -> list[str]:
        """SCAN, never KEYS: safe on a busy production Redis."""
        return [key.decode() async for key in self._redis.scan_iter(match=pattern, count=1000)]
