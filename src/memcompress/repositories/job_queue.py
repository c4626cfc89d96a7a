"""The compression queue on Redis: the apps' requests (a sorted set of user id -> due time), arq's
queue of ``compress:<user_id>`` jobs (job ids per queue: :func:`memcompress.keys.job_id`), the last scan, and what ``status`` and ``forget`` read or remove
there.

A request becomes a job in one Lua script (:data:`CLAIM_SCRIPT`), so that deciding and acting are one
atomic step however many workers drain at once. The script writes the job as arq's own
``enqueue_job`` does (the payload from ``arq.jobs.serialize_job``, the keys from ``arq.constants``);
``tests/unit/test_job_queue.py`` checks that a worker reads it back as arq's own.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from arq.connections import ArqRedis
from arq.constants import (
    expires_extra_ms,
    health_check_key_suffix,
    in_progress_key_prefix,
    job_key_prefix,
    retry_key_prefix,
)
from arq.jobs import DeserializationError, deserialize_job_raw, serialize_job
from redis.asyncio import Redis

from memcompress.keys import (
    DEFAULT_REQUESTS_KEY,
    JOB_FUNCTION,
    job_id,
    job_id_prefix,
    last_scan_key,
    lock_key_prefix,
    paused_key,
    user_from_job_id,
)
from memcompress.models import iso_utc, utc_now
from memcompress.repositories.protocols import ClaimedRequests
from memcompress.timing import LOOK_AGAIN_S

log = logging.getLogger(__name__)

LIST_AT_MOST = 50

# KEYS: the requests set, the queue, then for each user its arq job key and in-progress key.
# ARGV: due by (s), now (s), look again after (s), job expiry beyond its start (ms), then for each user
# its id, job id and serialized job. Per user, atomically: a request that is gone or not due by then
# is left alone (another worker claimed it, or the app asked again for later); with a job queued or
# running, the request waits (due again a moment later, or at its own time if that is later);
# otherwise the job is queued, due when the request is, as arq's enqueue_job queues it (PSETEX job key,
# ZADD queue, in ms) and the request is removed.
CLAIM_SCRIPT = """
local queued, waiting = {}, {}
local due_by, now, look = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local now_ms = math.floor(now * 1000)
for i = 0, (#ARGV - 4) / 3 - 1 do
  local user, job, payload = ARGV[5 + 3 * i], ARGV[6 + 3 * i], ARGV[7 + 3 * i]
  local job_key, in_progress_key = KEYS[3 + 2 * i], KEYS[4 + 2 * i]
  local due = tonumber(redis.call('ZSCORE', KEYS[1], user) or nil)
  if due and due <= due_by then
    if redis.call('EXISTS', job_key, in_progress_key) > 0 or redis.call('ZSCORE', KEYS[2], job) then
      redis.call('ZADD', KEYS[1], 'XX', string.format('%.17g', math.max(due, now + look)), user)
      waiting[#waiting + 1] = user
    else
      local score_ms = math.max(math.floor(due * 1000), now_ms)
      redis.call('PSETEX', job_key, string.format('%d', score_ms - now_ms + tonumber(ARGV[4])), payload)
      redis.call('ZADD', KEYS[2], string.format('%d', score_ms), job)
      redis.call('ZREM', KEYS[1], user)
      queued[#queued + 1] = user
    end
  end
end
return {queued, waiting}
"""

# KEYS: the requests set. ARGV: due time (s), user id. Adds the request, or brings a waiting one
# forward to the due time; a request already due earlier is kept. 1 when the set changed.
ADD_EARLIEST_SCRIPT = """
local due = redis.call('ZSCORE', KEYS[1], ARGV[2])
if due and tonumber(due) <= tonumber(ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
return 1
"""


def _glob_escape(text: str) -> str:
    """``text`` matched literally in a SCAN pattern (a queue name may hold ``*``, ``?`` or ``[``)."""
    return re.sub(r"([\\*?\[\]])", r"\\\1", text)


def health_check_key(queue_name: str, host: str, pid: int | str) -> str:
    """Each worker process writes its own health-check key (host and pid), so ``status`` shows every
    process and a probe run on a host (a pod, a container) checks that host's workers, not any worker
    of the queue. ``pid="*"`` gives the pattern for all of a host's workers."""
    return f"{queue_name}{health_check_key_suffix}:{host}:{pid}"


class RedisJobQueue:
    def __init__(
        self,
        redis: Redis,
        name: str,
        requests_key: str = DEFAULT_REQUESTS_KEY,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = redis
        self.name = name
        self.requests_key = requests_key
        self._clock = clock  # Unix seconds: what apps put in the requests' scores
        self._claim_script = redis.register_script(CLAIM_SCRIPT)
        self._add_earliest_script = redis.register_script(ADD_EARLIEST_SCRIPT)

    async def enqueue(self, user_id: str, *, delay_s: float = 0.0) -> bool:
        pool = self._redis if isinstance(self._redis, ArqRedis) else ArqRedis(self._redis.connection_pool)
        job = await pool.enqueue_job(
            JOB_FUNCTION,
            user_id,
            _job_id=job_id(user_id, self.name),
            _defer_by=delay_s,
            _queue_name=self.name,
        )
        return job is not None

    async def request(self, user_id: str, *, delay_s: float = 0.0) -> bool:
        now = self._clock()
        added = await self._add_earliest(user_id, now + delay_s)
        # Handed to the queue at once as a job due when the request is, unless the user has one.
        claimed = await self._claim([user_id], now, due_by=now + delay_s)
        return user_id in claimed.queued or (added and not claimed.waiting)

    async def set_recheck(self, user_id: str, *, delay_s: float) -> None:
        await self._add_earliest(user_id, self._clock() + delay_s)

    async def clear_recheck(self, user_id: str) -> None:
        await self._redis.zrem(self.requests_key, user_id)

    async def take_recheck(self, user_id: str) -> float | None:
        # A request that waited for the job was pushed up to LOOK_AGAIN_S ahead: queue it now, due then.
        now = self._clock()
        await self._claim([user_id], now, due_by=now + LOOK_AGAIN_S)
        return None

    async def claim_due_requests(self, *, limit: int) -> ClaimedRequests:
        now = self._clock()
        members: list[bytes] = await self._redis.zrangebyscore(
            self.requests_key, "-inf", now, start=0, num=limit
        )
        users = []
        for member in members:
            try:
                users.append(member.decode())
            except UnicodeDecodeError:  # no user id is stored so: it could never be served
                log.warning("dropped a compression request whose user id is not UTF-8: %r", member)
                await self._redis.zrem(self.requests_key, member)
        return await self._claim(users, now) if users else ClaimedRequests()

    async def _add_earliest(self, user_id: str, due: float) -> bool:
        return bool(await self._add_earliest_script(keys=[self.requests_key], args=[repr(due), user_id]))

    async def _claim(self, users: list[str], now: float, due_by: float | None = None) -> ClaimedRequests:
        now_ms = int(now * 1000)
        keys: list[str] = [self.requests_key, self.name]
        args: list[str | int | bytes] = [
            repr(now if due_by is None else due_by),
            repr(now),
            repr(LOOK_AGAIN_S),
            expires_extra_ms,
        ]
        for user in users:
            job = job_id(user, self.name)
            keys += [job_key_prefix + job, in_progress_key_prefix + job]
            args += [user, job, serialize_job(JOB_FUNCTION, (user,), {}, None, now_ms)]
        queued, waiting = await self._claim_script(keys=keys, args=args)
        return ClaimedRequests([u.decode() for u in queued], [u.decode() for u in waiting])

    async def record_scan(self, summary: dict[str, object]) -> None:
        await self._redis.set(last_scan_key(self.name), json.dumps(summary))

    async def last_scan(self) -> dict[str, object] | None:
        raw = await self._redis.get(last_scan_key(self.name))
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
        now_ms = self._clock() * 1000
        rows = await self._redis.zrange(self.name, 0, limit - 1, withscores=True)
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
        due_ms = await self._redis.zscore(self.name, job)
        request_due = await self._redis.zscore(self.requests_key, user_id)
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
        payload = await self._redis.get(job_key_prefix + job)
        tries = await self._redis.get(retry_key_prefix + job)
        enqueued_ms: int | None = None
        if payload is not None:
            try:
                enqueued_ms = deserialize_job_raw(payload)[4]
            except DeserializationError:  # written by something else than arq: its time is unknown
                enqueued_ms = None
        return {
            "running": bool(await self._redis.exists(in_progress_key_prefix + job)),
            "tries": int(tries) if tries is not None else 0,
            "enqueued_at": None
            if enqueued_ms is None
            else iso_utc(datetime.fromtimestamp(enqueued_ms / 1000, UTC)),
            "age_s": None if enqueued_ms is None else round(self._clock() - enqueued_ms / 1000, 1),
        }

    async def waiting_requests(self, limit: int) -> list[dict[str, Any]]:
        now = self._clock()
        rows = await self._redis.zrange(self.requests_key, 0, limit - 1, withscores=True)
        return [
            {
                "user_id": member.decode(errors="replace"),
                "due_at": iso_utc(datetime.fromtimestamp(score, UTC)),
                "due": score <= now,
            }
            for member, score in rows
        ]

    async def pause(self) -> None:
        await self._redis.set(paused_key(self.name), iso_utc(utc_now()))

    async def resume(self) -> bool:
        return bool(await self._redis.delete(paused_key(self.name)))

    async def paused(self) -> bool:
        return bool(await self._redis.exists(paused_key(self.name)))

    async def status(self) -> dict[str, Any]:
        now = self._clock()
        depth = await self.depth()
        ready = await self._redis.zcount(self.name, "-inf", now * 1000)
        in_progress = sorted(
            user
            for key in await self._keys(_glob_escape(in_progress_key_prefix + job_id_prefix(self.name)) + "*")
            if (user := user_from_job_id(key.removeprefix(in_progress_key_prefix), self.name)) is not None
        )
        locks = []
        lock_prefix = lock_key_prefix(self.name)
        for key in await self._keys(_glob_escape(lock_prefix) + "*"):
            ttl_ms = await self._redis.pttl(key)
            locks.append({"user_id": key.removeprefix(lock_prefix), "expires_in_s": round(ttl_ms / 1000, 1)})
        return {
            "queue": self.name,
            "paused": await self.paused(),
            "queue_depth": depth,
            "waiting": max(ready - len(in_progress), 0),  # due, not yet taken (running jobs stay queued)
            "deferred": depth - ready,
            "requests": await self._redis.zcard(self.requests_key),
            "requests_due": await self._redis.zcount(self.requests_key, "-inf", now),
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
        job = job_id(user_id, self.name)
        return {
            "queued_job": await self._redis.zrem(self.name, job),
            "request": await self._redis.zrem(self.requests_key, user_id),
            "redis_keys": await self._redis.delete(job_key_prefix + job, retry_key_prefix + job),
        }

    async def _keys(self, pattern: str) -> list[str]:
        """SCAN, never KEYS: safe on a busy production Redis."""
        return [key.decode() async for key in self._redis.scan_iter(match=pattern, count=1000)]
