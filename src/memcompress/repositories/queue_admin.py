"""What operators read and do with the queue on Redis (``status``, ``queue list|purge``, ``pause``,
``memcompress user``), and the scan's record: the :class:`~memcompress.repositories.protocols.QueueAdmin`
port. Reads arq's keys (``arq.constants``); writes no job (the worker's side, where requests become
jobs, is :mod:`memcompress.repositories.job_queue`)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from arq.constants import health_check_key_suffix, in_progress_key_prefix, job_key_prefix, retry_key_prefix
from arq.jobs import DeserializationError, deserialize_job_raw

from memcompress.keys import (
    job_id,
    job_id_prefix,
    key_pattern,
    last_scan_key,
    paused_key,
    user_from_job_id,
)
from memcompress.models import iso_utc, utc_now
from memcompress.repositories.job_queue import QueueOnRedis

LIST_AT_MOST = 50


def health_check_key(queue_name: str, host: str, pid: int | str) -> str:
    """Each worker process writes its own health-check key (host and pid), so ``status`` shows every
    process and a probe run on a host (a pod, a container) checks that host's workers, not any worker
    of the queue. ``pid="*"`` gives the pattern for all of a host's workers."""
    return f"{queue_name}{health_check_key_suffix}:{host}:{pid}"


class RedisQueueAdmin(QueueOnRedis):
    async def record_scan(self, summary: dict[str, object]) -> None:
        await self.redis.set(last_scan_key(self.name), json.dumps(summary))

    async def last_scan(self) -> dict[str, object] | None:
        raw = await self.redis.get(last_scan_key(self.name))
        return json.loads(raw) if raw else None

    async def depth(self) -> int:
        depth: int = await self.redis.zcard(self.name)
        return depth

    async def purge(self) -> int:
        """Drop the queued jobs and their job keys (arq refuses a job id whose key still exists, so
        leaving them would block those users until the keys expire)."""
        members = [member.decode() for member in await self.redis.zrange(self.name, 0, -1)]
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zrem(self.name, *members) if members else pipe.zcard(self.name)
            for job in members:
                pipe.delete(job_key_prefix + job, retry_key_prefix + job)
            removed = (await pipe.execute())[0]
        return int(removed) if members else 0

    async def jobs(self, limit: int) -> list[dict[str, Any]]:
        now_ms = self.clock() * 1000
        rows = await self.redis.zrange(self.name, 0, limit - 1, withscores=True)
        return [
            {
                "user_id": user_from_job_id(member.decode(), self.name) or member.decode(),
                "due_at": iso_utc(datetime.fromtimestamp(score / 1000, UTC)),
                "due": score <= now_ms,
            }
            | await self._job_keys(member.decode())
            for member, score in rows
        ]

    async def user_job(self, user_id: str) -> dict[str, Any]:
        job = job_id(user_id, self.name)
        due_ms = await self.redis.zscore(self.name, job)
        request_due = await self.redis.zscore(self.requests_key, user_id)
        keys = await self._job_keys(job)
        shown: dict[str, Any] = {"job": None, "request_due_at": None}
        if due_ms is not None or keys["running"]:
            due_at = None if due_ms is None else iso_utc(datetime.fromtimestamp(due_ms / 1000, UTC))
            shown["job"] = {"due_at": due_at} | keys
        if request_due is not None:
            shown["request_due_at"] = iso_utc(datetime.fromtimestamp(request_due, UTC))
        return shown

    async def _job_keys(self, job: str) -> dict[str, Any]:
        """What arq's keys tell of one job: running (its in-progress key), tries started (its retry
        key), and when it was queued (in its payload) and how long ago."""
        payload = await self.redis.get(job_key_prefix + job)
        tries = await self.redis.get(retry_key_prefix + job)
        enqueued_ms: int | None = None
        if payload is not None:
            try:
                enqueued_ms = deserialize_job_raw(payload)[4]
            except DeserializationError:  # written by something else than arq: its time is unknown
                enqueued_ms = None
        return {
            "running": bool(await self.redis.exists(in_progress_key_prefix + job)),
            "tries": int(tries) if tries is not None else 0,
            "enqueued_at": None
            if enqueued_ms is None
            else iso_utc(datetime.fromtimestamp(enqueued_ms / 1000, UTC)),
            "age_s": None if enqueued_ms is None else round(self.clock() - enqueued_ms / 1000, 1),
        }

    async def waiting_requests(self, limit: int) -> list[dict[str, Any]]:
        now = self.clock()
        rows = await self.redis.zrange(self.requests_key, 0, limit - 1, withscores=True)
        return [
            {
                "user_id": member.decode(errors="replace"),
                "due_at": iso_utc(datetime.fromtimestamp(score, UTC)),
                "due": score <= now,
            }
            for member, score in rows
        ]

    async def pause(self) -> None:
        await self.redis.set(paused_key(self.name), iso_utc(utc_now()))

    async def resume(self) -> bool:
        return bool(await self.redis.delete(paused_key(self.name)))

    async def paused(self) -> bool:
        return bool(await self.redis.exists(paused_key(self.name)))

    async def status(self) -> dict[str, Any]:
        now = self.clock()
        depth = await self.depth()
        ready = await self.redis.zcount(self.name, "-inf", now * 1000)
        in_progress = sorted(
            user
            for key in await self._keys(key_pattern(in_progress_key_prefix + job_id_prefix(self.name)))
            if (user := user_from_job_id(key.removeprefix(in_progress_key_prefix), self.name)) is not None
        )
        return {
            "queue": self.name,
            "paused": await self.paused(),
            "queue_depth": depth,
            "waiting": max(ready - len(in_progress), 0),  # due, not yet taken (running jobs stay queued)
            "deferred": depth - ready,
            "requests": await self.redis.zcard(self.requests_key),
            "requests_due": await self.redis.zcount(self.requests_key, "-inf", now),
            "in_progress": in_progress[:LIST_AT_MOST],
            "in_progress_count": len(in_progress),
            "last_scan": await self.last_scan(),
            "worker_health": await self.worker_health("*"),
        }

    async def worker_health(self, host: str) -> dict[str, str]:
        """``host:pid`` → the arq health line of each worker that reported in recently (``host="*"``: all)."""
        prefix = health_check_key(self.name, "", "").removesuffix(":")
        health = {}
        for key in await self._keys(health_check_key(self.name, host, "*")):
            value = await self.redis.get(key)
            if value is not None:  # expired between SCAN and GET
                health[key.removeprefix(prefix)] = value.decode()
        return health

    async def _keys(self, pattern: str) -> list[str]:
        """SCAN, never KEYS: safe on a busy production Redis."""
        return [key.decode() async for key in self.redis.scan_iter(match=pattern, count=1000)]
