"""The worker's queue on Redis: the apps' requests (a sorted set of user id -> due time) and arq's queue
of ``compress:<user_id>`` jobs (job ids per queue: :func:`memcompress.keys.job_id`) they become.

A request becomes a job in one Lua script (:data:`CLAIM_SCRIPT`), so that deciding and acting are one
atomic step however many workers drain at once; it is the only code of ours that writes a job (the
scan and operators add a request and claim it at once, :meth:`RedisJobQueue.request`). The script
writes the job as arq's own ``enqueue_job`` does (the payload from ``arq.jobs.serialize_job``, the keys
from ``arq.constants``); ``tests/unit/test_job_queue.py`` checks that arq reads it back as its own.
What operators read and do with the queue: :mod:`memcompress.repositories.queue_admin`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from arq.constants import expires_extra_ms, in_progress_key_prefix, job_key_prefix, retry_key_prefix
from arq.jobs import serialize_job
from redis.asyncio import Redis

from memcompress.keys import DEFAULT_REQUESTS_KEY, JOB_FUNCTION, job_id
from memcompress.repositories.protocols import ClaimedRequests
from memcompress.timing import LOOK_AGAIN_S

log = logging.getLogger(__name__)


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


@dataclass
class QueueOnRedis:
    """A queue's place on Redis, as both of its adapters hold it (this module's and
    :mod:`memcompress.repositories.queue_admin`'s): the client, the queue's name (arq's sorted set of
    jobs), the apps' requests' key, and the clock their due times are read by (Unix seconds)."""

    redis: Redis
    name: str
    requests_key: str = DEFAULT_REQUESTS_KEY
    clock: Callable[[], float] = field(default=time.time, kw_only=True)


@dataclass
class RedisJobQueue(QueueOnRedis):
    def __post_init__(self) -> None:
        self._claim_script = self.redis.register_script(CLAIM_SCRIPT)
        self._add_earliest_script = self.redis.register_script(ADD_EARLIEST_SCRIPT)

    async def request(self, user_id: str, *, delay_s: float = 0.0) -> bool:
        now = self.clock()
        added = await self._add_earliest(user_id, now + delay_s)
        # Handed to the queue at once as a job due when the request is, unless the user has one.
        claimed = await self._claim([user_id], now, due_by=now + delay_s)
        return user_id in claimed.queued or (added and not claimed.waiting)

    async def set_recheck(self, user_id: str, *, delay_s: float) -> None:
        await self._add_earliest(user_id, self.clock() + delay_s)

    async def clear_recheck(self, user_id: str) -> None:
        await self.redis.zrem(self.requests_key, user_id)

    async def claim_request(self, user_id: str) -> None:
        # A request that waited for the job was pushed up to LOOK_AGAIN_S ahead: queue it now, due then.
        now = self.clock()
        await self._claim([user_id], now, due_by=now + LOOK_AGAIN_S)

    async def claim_due_requests(self, *, limit: int) -> ClaimedRequests:
        now = self.clock()
        members: list[bytes] = await self.redis.zrangebyscore(
            self.requests_key, "-inf", now, start=0, num=limit
        )
        users = []
        for member in members:
            try:
                users.append(member.decode())
            except UnicodeDecodeError:  # no user id is stored so: it could never be served
                log.warning("dropped a compression request whose user id is not UTF-8: %r", member)
                await self.redis.zrem(self.requests_key, member)
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

    async def erase_user(self, user_id: str) -> dict[str, int]:
        job = job_id(user_id, self.name)
        return {
            "queued_job": await self.redis.zrem(self.name, job),
            "request": await self.redis.zrem(self.requests_key, user_id),
            "redis_keys": await self.redis.delete(job_key_prefix + job, retry_key_prefix + job),
        }
