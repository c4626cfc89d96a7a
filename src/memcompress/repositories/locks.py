"""Per-user locks on Redis: redis-py's ``Lock`` (a random token; extend and release are Lua scripts,
never a bare ``DEL``), renewed in the background while held. One lock per user and queue
(:func:`memcompress.keys.lock_key`): deployments sharing a Redis never wait on each other."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.lock import Lock
from redis.exceptions import LockError

from memcompress.keys import key_pattern, lock_key, lock_key_prefix
from memcompress.redaction import describe_error
from memcompress.repositories.errors import LockBusy, LockLost
from memcompress.timing import LOCK_RENEW_SHARE, LOCK_STALE_SHARE

log = logging.getLogger(__name__)


class _RenewedLock:
    """A held lock, renewed every third of its TTL. ``ensure_held`` is checked before every write."""

    def __init__(self, lock: Lock, ttl_s: float) -> None:
        self._lock = lock
        self._ttl_s = ttl_s
        self._lost = False
        self._renewer = asyncio.create_task(self._renew())

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(self._ttl_s * LOCK_RENEW_SHARE)
            try:
                await self._lock.reacquire()
            except LockError:
                self._lost = True  # expired or taken over: the next write will stop
                return
            except Exception as error:  # Redis briefly unreachable: try again next round
                log.warning("could not renew a compression lock; will retry: %s", describe_error(error))

    async def ensure_held(self) -> None:
        if self._lost or not await self._lock.owned():
            self._lost = True
            raise LockLost("lock lost before writing; nothing written")

    async def release(self) -> None:
        self._renewer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._renewer
        with contextlib.suppress(LockError):  # expired or taken over: not ours to delete
            await self._lock.release()


class RedisUserLocks:
    def __init__(self, redis: Redis, ttl_s: float, queue_name: str) -> None:
        self._redis = redis
        self._ttl_s = ttl_s
        self._queue_name = queue_name

    @contextlib.asynccontextmanager
    async def hold(self, user_id: str, *, wait_s: float = 0.0) -> AsyncIterator[_RenewedLock]:
        lock = self._redis.lock(
            lock_key(user_id, self._queue_name),
            timeout=self._ttl_s,
            blocking=wait_s > 0,
            blocking_timeout=wait_s or None,
            thread_local=False,
        )
        if not await lock.acquire():
            raise LockBusy("another worker holds this user's lock")
        held = _RenewedLock(lock, self._ttl_s)
        try:
            yield held
        finally:
            await held.release()

    async def holder(self, user_id: str) -> dict[str, Any] | None:
        key = lock_key(user_id, self._queue_name)
        if not await self._redis.exists(key):  # the token: present while someone holds the lock
            return None
        remaining_s = max(await self._redis.pttl(key), 0) / 1000
        renewed_s_ago = max(self._ttl_s - remaining_s, 0.0)
        return {
            "expires_in_s": round(remaining_s, 1),
            "renewed_s_ago": round(renewed_s_ago, 1),
            "stale": renewed_s_ago > self._ttl_s * LOCK_STALE_SHARE,
        }

    async def expires_in_s(self, user_id: str) -> float:
        remaining_ms: int = await self._redis.pttl(lock_key(user_id, self._queue_name))
        return max(remaining_ms, 0) / 1000

    async def holders(self) -> list[dict[str, Any]]:
        prefix = lock_key_prefix(self._queue_name)
        locks = []
        async for key in self._redis.scan_iter(match=key_pattern(prefix), count=1000):  # SCAN, never KEYS
            ttl_ms = await self._redis.pttl(key)
            locks.append(
                {"user_id": key.decode().removeprefix(prefix), "expires_in_s": round(ttl_ms / 1000, 1)}
            )
        return locks
