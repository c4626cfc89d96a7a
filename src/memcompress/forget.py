"""GDPR erase (``memcompress forget``): everything memcompress holds about one user, in every store."""

from __future__ import annotations

from redis.asyncio import Redis

from memcompress.keys import (
    ARQ_JOB_PREFIX,
    ARQ_RETRY_PREFIX,
    job_id,
    lock_key,
    recheck_key,
)
from memcompress.repositories.database import (
    COMPACTION_LOG,
    DEAD_LETTERS,
    USER_MEMORY,
    USER_MEMORY_ARCHIVE,
    USER_PROFILES,
    MongoDatabase,
)

COLLECTIONS = (USER_MEMORY, USER_MEMORY_ARCHIVE, USER_PROFILES, COMPACTION_LOG)


async def count_user_data(database: MongoDatabase, user_id: str) -> dict[str, int]:
    counts = {
        name: await database.collection(name).count_documents({"user_id": user_id}) for name in COLLECTIONS
    }
    counts[DEAD_LETTERS] = await database.collection(DEAD_LETTERS).count_documents({"_id": user_id})
    return counts


async def forget_user(
    database: MongoDatabase, redis: Redis, user_id: str, *, queue_name: str, wait_s: float
) -> dict[str, int]:
    """Erase ``user_id``; returns what was removed, per store.

    Holds the user's compression lock while erasing (waiting up to ``wait_s`` for a running job to
    finish), so no compression can write a summary back afterwards; the user's queued job and
    re-check flag go too.
    """
    lock = redis.lock(
        lock_key(user_id), timeout=max(wait_s, 30.0), blocking_timeout=wait_s, thread_local=False
    )
    if not await lock.acquire():
        raise TimeoutError(f"a compression of this user is still running after {wait_s:g}s; try again")
    try:
        removed: dict[str, int] = {}
        for name in COLLECTIONS:
            result = await database.collection(name).delete_many({"user_id": user_id})
            removed[name] = result.deleted_count
        result = await database.collection(DEAD_LETTERS).delete_many({"_id": user_id})
        removed[DEAD_LETTERS] = result.deleted_count
        removed["queued_job"] = await redis.zrem(queue_name, job_id(user_id))
        removed["redis_keys"] = await redis.delete(
            ARQ_JOB_PREFIX + job_id(user_id), ARQ_RETRY_PREFIX + job_id(user_id), recheck_key(user_id)
        )
    finally:
        await lock.release()
    return removed
