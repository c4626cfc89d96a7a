"""The arq jobs. They carry only ids; their services come from ``ctx["services"]``, which the worker's
``on_startup`` builds (:mod:`memcompress.worker.lifecycle`).

``compress_user`` turns a run's outcome into what arq should do next:

- compressed, or nothing to do: done (and any dead letter of the user is removed);
- busy (another holder of the user's lock, e.g. a crashed worker's lock not yet expired) or a version
  conflict: try again once the lock can have expired (on the last try: queued again as a fresh job);
- out of time (``MEMCOMPRESS_JOB_TIMEOUT_S``) after finishing chunks: queued again as a fresh job, so a
  long history that keeps moving forward never uses up its tries;
- a retryable failure (LLM rate limit, outage, timeout; a store hiccup; out of time with nothing
  finished): ``arq.Retry`` with exponential backoff and jitter, since arq does not back off by
  itself; on the last try, a dead letter instead;
- a permanent failure (the LLM rejects the request, or keeps answering unusable text): a dead letter.

arq is told one try more than ``MEMCOMPRESS_MAX_TRIES``: a job whose every try died with its worker
(SIGKILL, OOM) reaches that extra try and is dead-lettered without running again.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import Any

from arq import Retry

from memcompress.jobs.compress import TIME_LIMIT, CompressionDeps, run_compression
from memcompress.jobs.scan import scan_and_enqueue
from memcompress.keys import lock_key, recheck_key
from memcompress.models import DeadLetter, Outcome
from memcompress.queue import RECHECK_TTL_S, enqueue_job
from memcompress.repositories.protocols import DeadLetters

log = logging.getLogger(__name__)

RETRY_BASE_S = 5.0
RETRY_MAX_S = 300.0
FUNCTION = "compress_user"


@dataclass(slots=True)
class JobServices:
    deps: CompressionDeps
    dead_letters: DeadLetters
    queue_name: str
    max_tries: int
    job_timeout_s: float
    scan_limit: int | None = None


def retry_delay(job_try: int) -> float:
    """Exponential backoff with jitter: try 1 waits 2.5-5 s, try 2 5-10 s, … at most 300 s."""
    ceiling = min(RETRY_MAX_S, RETRY_BASE_S * 2 ** max(job_try - 1, 0))
    return random.uniform(ceiling / 2, ceiling)


async def compress_user(ctx: dict[str, Any], user_id: str) -> dict[str, Any]:
    services: JobServices = ctx["services"]
    metrics = services.deps.metrics
    job_try: int = ctx.get("job_try", 1)
    ctx["user_id"] = user_id  # for the trailing re-check after the job (recheck_after_job)

    if job_try > services.max_tries:
        reason = f"abandoned: the worker running each of {services.max_tries} tries stopped or was killed"
        await _dead_letter(services, user_id, reason, services.max_tries, None)
        return {"outcome": "dead_letter", "reason": reason}

    # Calls to enqueue_compression before this point are covered by this run.
    await services.deps.redis.delete(recheck_key(user_id))
    metrics.jobs_in_progress.inc()
    try:
        record = await run_compression(services.deps, user_id, time_limit_s=services.job_timeout_s)
    finally:
        metrics.jobs_in_progress.dec()

    result = {"outcome": record.outcome.value, "reason": record.reason, "events_folded": record.events_folded}
    last_try = job_try >= services.max_tries
    if record.outcome is Outcome.COMPRESSED:
        await services.dead_letters.remove(user_id)
    elif record.error_class == TIME_LIMIT and record.chunks > 0:
        # Out of time but moving forward (a long history): continue in a fresh job, not a retry.
        await _queue_again(services, user_id, delay_s=0)
    elif record.outcome in (Outcome.BUSY, Outcome.CONFLICT):
        delay_s = await _until_lock_free(services, user_id)
        if last_try:  # not a failure: come back as a fresh job rather than give up
            await _queue_again(services, user_id, delay_s)
        else:
            metrics.jobs.labels(function=FUNCTION, status="retry").inc()
            raise Retry(defer=delay_s)
    elif record.outcome is Outcome.FAILED and record.retryable and not last_try:
        metrics.jobs.labels(function=FUNCTION, status="retry").inc()
        raise Retry(defer=retry_delay(job_try))
    elif record.outcome is Outcome.FAILED:
        await _dead_letter(services, user_id, record.reason or "failed", job_try, record.error_class)
        return result | {"outcome": "dead_letter"}
    metrics.jobs.labels(function=FUNCTION, status="complete").inc()
    return result


async def _queue_again(services: JobServices, user_id: str, delay_s: float) -> None:
    """Have ``recheck_after_job`` queue the user as a new job once this one has finished."""
    await services.deps.redis.set(recheck_key(user_id), str(delay_s), ex=RECHECK_TTL_S)


async def _until_lock_free(services: JobServices, user_id: str) -> float:
    remaining_ms: int = await services.deps.redis.pttl(lock_key(user_id))
    return max(remaining_ms, 0) / 1000 + random.uniform(1.0, 3.0)


async def _dead_letter(
    services: JobServices, user_id: str, reason: str, tries: int, error_class: str | None
) -> None:
    log.warning("dead-lettered a user after %d tries: %s", tries, reason)
    await services.dead_letters.record(
        DeadLetter(user_id=user_id, reason=reason, tries=tries, error_class=error_class)
    )
    services.deps.metrics.dead_letters.inc()
    services.deps.metrics.jobs.labels(function=FUNCTION, status="dead_letter").inc()


async def recheck_after_job(ctx: dict[str, Any]) -> None:
    """arq's ``after_job_end``: if ``enqueue_compression`` was called while the job ran, queue the user
    again. By now arq has removed the finished job, so the new one is accepted."""
    user_id = ctx.get("user_id")
    if user_id is None:  # not a compression job
        return
    services: JobServices = ctx["services"]
    try:
        delay = await services.deps.redis.getdel(recheck_key(user_id))
        if delay is not None:
            await enqueue_job(
                services.deps.redis, user_id, delay=float(delay), queue_name=services.queue_name
            )
    except Exception:  # an error here would stop arq's worker loop; the next scan is the safety net
        log.warning("could not re-check a user after its job", exc_info=True)


async def scheduled_scan(ctx: dict[str, Any]) -> dict[str, Any]:
    """The cron job: queue every user over the threshold."""
    services: JobServices = ctx["services"]
    deps = services.deps
    result = await scan_and_enqueue(
        deps.memory,
        deps.redis,
        deps.metrics,
        threshold=deps.policy.threshold,
        limit=services.scan_limit,
        queue_name=services.queue_name,
    )
    deps.metrics.jobs.labels(function="scan_and_enqueue", status="complete").inc()
    return result.summary()
