"""The app-side API: ask for a user's memory to be compressed after a burst of messages.

    from memcompress import enqueue_compression
    await enqueue_compression(redis, user_id)          # after appending the user's events

Imports only arq and redis (``pip install memcompress`` without the ``worker`` extra is enough).

Debounce, so that a burst of calls costs one compression and a burst is never dropped:

- leading edge: the first call queues job ``compress:<user_id>`` deferred by ``delay``; later calls find
  that job and collapse into it (arq refuses a second job with the same id);
- trailing re-check: every call first sets the user's re-check flag. The job clears the flag when it
  starts (what came before is covered by the run), and the worker looks at it again once the job has
  finished: if calls arrived while the job ran, it queues the user again (``delay`` later).
"""

from __future__ import annotations

from arq.connections import ArqRedis
from redis.asyncio import Redis

from memcompress.keys import DEFAULT_QUEUE_NAME, JOB_FUNCTION, job_id, recheck_key

DEFAULT_DELAY_S = 30.0
RECHECK_TTL_S = 86_400  # a flag nobody consumes (the user was forgotten, say) goes away by itself


async def enqueue_compression(
    redis: Redis,
    user_id: str,
    *,
    delay: float = DEFAULT_DELAY_S,
    queue_name: str = DEFAULT_QUEUE_NAME,
) -> bool:
    """Queue a compression of ``user_id`` ``delay`` seconds from now (debounced; see module docs).

    Returns True if this call queued the job, False if it joined a job already queued or running.
    ``redis`` is any ``redis.asyncio.Redis`` (an ``arq.ArqRedis`` works too); it is not closed.
    """
    if not isinstance(user_id, str) or not user_id.strip():
        raise ValueError("user_id must be a non-empty string")
    if delay < 0:
        raise ValueError("delay must be >= 0 seconds")
    await redis.set(recheck_key(user_id), str(delay), ex=RECHECK_TTL_S)
    return await enqueue_job(redis, user_id, delay=delay, queue_name=queue_name)


async def enqueue_job(
    redis: Redis, user_id: str, *, delay: float = 0.0, queue_name: str = DEFAULT_QUEUE_NAME
) -> bool:
    """Queue ``compress:<user_id>`` without touching the re-check flag (the scan and the worker use
    this). False when a job with that id is already queued or running."""
    pool = redis if isinstance(redis, ArqRedis) else ArqRedis(redis.connection_pool)
    job = await pool.enqueue_job(
        JOB_FUNCTION, user_id, _job_id=job_id(user_id), _defer_by=delay, _queue_name=queue_name
    )
    return job is not None
