"""A compression taken from the queue: run it, then decide what the queue should do next.

:func:`run_queued_compression` turns a run's outcome into a :class:`JobDecision` (the worker's arq glue
in :mod:`memcompress.worker.tasks` carries it out):

- compressed, or nothing to do: done (and any dead letter of the user is removed);
- busy (another holder of the user's lock, e.g. a crashed worker's lock not yet expired): try again
  once the lock can have expired (on the last try: queued again as a fresh job, busy is no failure);
- a version conflict (another writer moved the summary): try again like a retryable failure, and on
  the last try a dead letter: a profile that keeps conflicting is bounded, not re-queued forever;
- out of time (``MEMCOMPRESS_JOB_TIMEOUT_S``) after finishing chunks: queued again as a fresh job, so a
  long history that keeps moving forward never uses up its tries;
- a retryable failure (LLM rate limit, outage, timeout; a store hiccup; out of time with nothing
  finished): try again after an exponential backoff with jitter; on the last try, a dead letter instead;
- a permanent failure (the LLM rejects the request, or keeps answering unusable text): a dead letter.
- the user was erased meanwhile (``memcompress forget``): done, and nothing more of it is written;
- a user id no job can take (empty, longer than 256 characters): dropped, with a warning.

The dead letter and the re-check request are written while the run still holds the user's lock (in
the run's ``async with`` block, :func:`~memcompress.jobs.compress.compression`), so a ``forget``
waiting for that lock erases them. What reaches the queue after the lock is gone (arq re-queueing a
retried job, a trailing re-check) is checked against the user's erase tombstone afterwards and taken
back (:func:`recheck_after_job`; see :mod:`memcompress.jobs.forget`).

The queue is told to allow one try more than ``MEMCOMPRESS_MAX_TRIES``: a job whose every try died
with its worker (SIGKILL, OOM) reaches that extra try and is dead-lettered without running again.

:func:`recheck_after_job` is the trailing edge of the app's debounce: a request that arrived while
the job ran queues the user again once the job has finished.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import Any

from memcompress.jobs.compress import TIME_LIMIT, USER_ERASED, compression
from memcompress.jobs.services import Services
from memcompress.keys import JOB_FUNCTION
from memcompress.models import CompactionRecord, DeadLetter, Outcome, shown_user_id, valid_user_id
from memcompress.redaction import describe_error
from memcompress.repositories.errors import UserErased
from memcompress.timing import BUSY_RETRY_JITTER_S, RETRY_BASE_S, RETRY_MAX_S

log = logging.getLogger(__name__)

ERASED = "the user was erased (memcompress forget)"


# Outcomes of a job that ends without its compression: counted as failures (arq's j_failed).
FAILED_OUTCOMES = frozenset({"dead_letter", "invalid_user_id"})


@dataclass(frozen=True, slots=True)
class JobDecision:
    """What to do with the job: finish with ``result``, or (``retry_in_s`` set) run it again then.
    ``result`` says how the try went (``outcome``, ``reason``, ``events_folded``, ``llm_calls``) either
    way: the worker logs it as the job's fields."""

    result: dict[str, Any]
    retry_in_s: float | None = None

    @property
    def failed(self) -> bool:
        """The job ends and its user was not compressed: dead-lettered, or an id no job can take."""
        return self.retry_in_s is None and self.result.get("outcome") in FAILED_OUTCOMES


def retry_delay(job_try: int) -> float:
    """Exponential backoff with jitter: try 1 waits 2.5-5 s, try 2 5-10 s, … at most 300 s."""
    ceiling = min(RETRY_MAX_S, RETRY_BASE_S * 2 ** max(job_try - 1, 0))
    return random.uniform(ceiling / 2, ceiling)


async def run_queued_compression(services: Services, user_id: str, job_try: int) -> JobDecision:
    if not valid_user_id(user_id):  # queued by hand or by an older scan: no run could record it
        log.warning("dropped a queued job whose user id no job can take: %s", shown_user_id(user_id))
        return JobDecision({"outcome": "invalid_user_id"})
    max_tries = services.job_policy.max_tries
    if job_try > max_tries:
        reason = f"abandoned: the worker running each of {max_tries} tries stopped or was killed"
        try:
            await _dead_letter(services, user_id, reason, max_tries, None)
        except UserErased:
            return JobDecision({"outcome": Outcome.SKIPPED.value, "reason": ERASED})
        return JobDecision({"outcome": "dead_letter", "reason": reason})

    # Requests for this user made before this point are covered by this run.
    await services.queue.clear_recheck(user_id)
    services.metrics.jobs_in_progress.inc()
    try:
        async with compression(services, user_id, time_limit_s=services.job_policy.job_timeout_s) as record:
            decision = await _decide(services, record, job_try)  # under the user's lock, when the run took it
    finally:
        services.metrics.jobs_in_progress.dec()
    return decision


async def _decide(services: Services, record: CompactionRecord, job_try: int) -> JobDecision:
    """What the queue does next, and the writes that go with it (a dead letter, a re-check request)."""
    user_id = record.user_id
    result = {
        "outcome": record.outcome.value,
        "reason": record.reason,
        "events_folded": record.events_folded,
        "llm_calls": record.llm_calls,
    }
    last_try = job_try >= services.job_policy.max_tries
    if record.error_class == USER_ERASED:
        return JobDecision(result)  # `forget` erased the user: nothing more of it is written
    if record.outcome is Outcome.COMPRESSED:
        await services.dead_letters.remove(user_id)
    elif record.error_class == TIME_LIMIT and record.chunks > 0:
        # Out of time but moving forward (a long history): continue in a fresh job, not a retry.
        await _recheck(services, user_id, delay_s=0)
    elif record.outcome is Outcome.BUSY:
        delay_s = await services.locks.expires_in_s(user_id) + random.uniform(*BUSY_RETRY_JITTER_S)
        if not last_try:
            return _retry(services, delay_s, result)
        await _recheck(services, user_id, delay_s=delay_s)  # not a failure: come back fresh
    elif record.failed and (record.retryable or record.outcome is Outcome.CONFLICT) and not last_try:
        return _retry(services, retry_delay(job_try), result)
    elif record.failed:
        try:
            await _dead_letter(services, user_id, record.reason or "failed", job_try, record.error_class)
        except UserErased:
            return JobDecision(result | {"outcome": Outcome.SKIPPED.value, "reason": ERASED})
        return JobDecision(result | {"outcome": "dead_letter"})
    services.metrics.jobs.labels(function=JOB_FUNCTION, status="complete").inc()
    return JobDecision(result)


def _retry(services: Services, delay_s: float, result: dict[str, Any]) -> JobDecision:
    services.metrics.jobs.labels(function=JOB_FUNCTION, status="retry").inc()
    return JobDecision(result, retry_in_s=delay_s)


async def _recheck(services: Services, user_id: str, *, delay_s: float) -> None:
    await services.queue.set_recheck(user_id, delay_s=delay_s)
    await _take_back_if_erased(services, user_id)


async def _take_back_if_erased(services: Services, user_id: str) -> None:
    """After writing to the queue for a user: if ``forget`` erased the user meanwhile, remove what the
    queue holds of it again (the erase fence for Redis, which cannot make writes conditional on MongoDB:
    write, then look for the tombstone; see :mod:`memcompress.jobs.forget`)."""
    if await services.erasures.erased(user_id):
        await services.queue.erase_user(user_id)


async def _dead_letter(
    services: Services, user_id: str, reason: str, tries: int, error_class: str | None
) -> None:
    await services.dead_letters.record(
        DeadLetter(user_id=user_id, reason=reason, tries=tries, error_class=error_class)
    )
    log.warning("dead-lettered a user after %d tries: %s", tries, reason)
    services.metrics.dead_letters.inc()
    services.metrics.jobs.labels(function=JOB_FUNCTION, status="dead_letter").inc()


async def recheck_after_job(services: Services, user_id: str) -> None:
    """Queue the user again if a re-check was asked for while the job ran. Never raises: the next
    scan is the safety net.

    Whatever the queue now holds for the user (arq's re-queue of a retried job, a request handed over
    as a job) is taken back if the user was erased meanwhile: one look at the tombstone per job."""
    try:
        await services.queue.claim_request(user_id)
        await _take_back_if_erased(services, user_id)
    except Exception as error:
        log.warning("could not re-check a user after its job: %s", describe_error(error))
