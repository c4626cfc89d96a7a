"""The LLM budget on Redis: requests and tokens per minute, shared by every worker process.

What it guarantees: in every window of ``window_s`` seconds (by the Redis server's clock) the grants
add up to at most ``max_requests`` requests and ``max_tokens`` tokens, across any number of processes
and hosts. The provider counts requests when they arrive, a moment after their grant (more under
load): grants are counted over the window plus ``BUDGET_TRANSIT_MARGIN_S`` (:mod:`memcompress.timing`), so that a request delayed by up
to that much still arrives within the provider's count. One exception keeps a request bigger than the whole token budget from waiting forever: it
is granted once the window holds no other grant.

How, in steps (one Lua script, :data:`ACQUIRE_SCRIPT`, so deciding and granting are one atomic step):

1. Every grant is a member ``<permit id>:<tokens>`` of one sorted set, scored by the time it was
   granted in milliseconds; the script reads the time with ``TIME`` on the server, so the hosts' clocks
   do not matter.
2. Grants older than the window are removed; the rest are what the window holds.
3. If one more request, or ``tokens`` more tokens, would exceed a limit, nothing is granted and the
   script answers how long until enough grants have left the window; the caller sleeps that long
   (plus a little jitter, so that waiting workers do not all ask at the same instant) and asks again.
4. Otherwise the grant is added, and the set expires one window after its newest grant.

A reservation is an estimate (prompt tokens plus the most the answer may use); :meth:`settle` replaces
it with the tokens the server reported, keeping the grant's time, so unused completion tokens go back
to the budget.

Why a script of our own: ``limits`` works with redis-py's asyncio client but keeps a moving window as
one list entry per unit of cost (a token budget of 2 million a minute would be a list of 2 million
entries) and checks two limits in two steps; ``pyrate-limiter``'s Redis bucket also adds one sorted-set
member per unit of weight; ``redis-rate-limiters`` needs pydantic 1 and counts requests only;
``aiolimiter`` is per process. A sliding log of one member per request checks both limits at once,
and its size is bounded by the requests of one window.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Callable

from redis.asyncio import Redis

from memcompress.repositories.protocols import LLMPermit
from memcompress.timing import BUDGET_JITTER_S, BUDGET_LONGEST_SLEEP_S, BUDGET_TRANSIT_MARGIN_S

# KEYS[1]: the grants. ARGV: window (ms), max requests (0: no limit), max tokens (0: no limit),
# member to add ("<permit id>:<tokens>"), its tokens, and the time in ms (empty: the server's TIME).
# Answers 0 when granted, else the milliseconds to wait before asking again.
ACQUIRE_SCRIPT = """
local window = tonumber(ARGV[1])
local max_requests = tonumber(ARGV[2])
local max_tokens = tonumber(ARGV[3])
local tokens = tonumber(ARGV[5])
local now = tonumber(ARGV[6])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local grants = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local count = #grants / 2
local used = 0
for i = 1, #grants, 2 do
  used = used + tonumber(string.match(grants[i], ':(%d+)$'))
end
local wait = 0
if max_requests > 0 and count >= max_requests then
  wait = tonumber(grants[(count - max_requests) * 2 + 2]) + window - now
end
if max_tokens > 0 and used > 0 and used + tokens > max_tokens then
  local left = used
  for i = 1, #grants, 2 do
    left = left - tonumber(string.match(grants[i], ':(%d+)$'))
    if left == 0 or left + tokens <= max_tokens then
      wait = math.max(wait, tonumber(grants[i + 1]) + window - now)
      break
    end
  end
end
if wait > 0 then
  return math.ceil(wait)
end
redis.call('ZADD', KEYS[1], now, ARGV[4])
redis.call('PEXPIRE', KEYS[1], window)
return 0
"""

# KEYS[1]: the grants. ARGV: the member as granted, the member with the tokens actually used. Keeps
# the grant's time; a grant that has left the window already is not brought back.
SETTLE_SCRIPT = """
local at = redis.call('ZSCORE', KEYS[1], ARGV[1])
if at then
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('ZADD', KEYS[1], at, ARGV[2])
end
return 0
"""


class RedisLLMBudget:
    def __init__(
        self,
        redis: Redis,
        key: str,
        *,
        max_requests: int | None,
        max_tokens: int | None,
        window_s: float,
        clock: Callable[[], float] | None = None,
    ) -> None:
        """``max_requests`` and ``max_tokens`` per ``window_s`` seconds (None: that limit is off), the
        grants kept in ``key``. ``clock`` (seconds) replaces the server's time: for tests."""
        self._redis = redis
        self._key = key
        self._window_ms = round((window_s + BUDGET_TRANSIT_MARGIN_S) * 1000)
        self._max_requests = max_requests or 0
        self._max_tokens = max_tokens or 0
        self._clock = clock
        self._acquire = redis.register_script(ACQUIRE_SCRIPT)
        self._settle = redis.register_script(SETTLE_SCRIPT)

    async def try_acquire(self, permit: LLMPermit) -> float:
        """One attempt: 0 when ``permit`` was granted, else the seconds until it may be."""
        now = "" if self._clock is None else str(round(self._clock() * 1000))
        wait_ms = await self._acquire(
            keys=[self._key],
            args=[
                self._window_ms,
                self._max_requests,
                self._max_tokens,
                _member(permit.id, permit.tokens),
                permit.tokens,
                now,
            ],
        )
        return int(wait_ms) / 1000

    async def acquire(self, tokens: int) -> LLMPermit:
        permit = LLMPermit(id=uuid.uuid4().hex, tokens=max(tokens, 0))
        started = time.monotonic()
        while True:
            wait_s = await self.try_acquire(permit)
            if wait_s <= 0:
                break
            await asyncio.sleep(min(wait_s, BUDGET_LONGEST_SLEEP_S) + random.uniform(0, BUDGET_JITTER_S))
        return LLMPermit(permit.id, permit.tokens, waited_s=time.monotonic() - started)

    async def settle(self, permit: LLMPermit, tokens: int) -> None:
        await self._settle(
            keys=[self._key], args=[_member(permit.id, permit.tokens), _member(permit.id, max(tokens, 0))]
        )


def _member(permit_id: str, tokens: int) -> str:
    return f"{permit_id}:{tokens}"
