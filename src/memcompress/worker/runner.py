"""The worker process ``memcompress worker`` runs: arq's ``Worker`` with one repair and a faster poll.

arq claims a due job in a WATCH/MULTI transaction. If Redis goes away just then (a restart or a
failover), redis-py raises ``WatchError``/``ConnectionError`` instead of retrying, the exception leaves
arq's ``start_jobs`` after it has taken a job slot, and arq's loop ends: the process exits. Here the
slot is given back and the worker keeps polling; the job stays queued and is claimed on a later poll.
While the queue is paused (``memcompress pause``) it claims nothing; scans still queue users.

A job that returns after dead-lettering its user (or dropping an invalid id) is counted by arq as
complete; here it is moved to ``j_failed`` in the health line (:meth:`MemcompressWorker._count_failed_jobs`).

arq starts jobs only when it polls the queue, every ``poll_delay``: a slot freed by a finished job idles
until then. Here a finished job wakes the poll loop at once, and the poll adapts: every
``busy_poll_s`` while due jobs are found, backing off by doubling to ``IDLE_POLL_S`` when none are, so
an idle fleet does not hammer Redis. (arq's own loop is given no delay; the waiting happens here.)

With ``MEMCOMPRESS_ADAPTIVE_JOBS`` (the default), how many jobs run at once follows the store
(:mod:`memcompress.worker.job_limit`): the process's MongoDB client tells an :class:`AdaptiveJobLimit`
when each command starts and ends, the limit falls while the store is saturated, and the worker claims
a job only while it runs fewer than that limit (1 to ``max_jobs``; arq reads ``max_jobs`` before each
claim, and its semaphore keeps the configured size). A job waiting for a slot is never claimed, so no
time limit runs for it and another worker process may take it.

Giving the slot back touches two private attributes of arq's ``Worker`` (``job_counter`` and ``sem``),
so it lives in one function, :func:`give_back_claim_slot`, checked against ``ARQ_CHECKED_VERSION``;
``tests/unit/test_runner.py`` fails when arq's claim code no longer takes the slot that way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from arq.worker import Worker
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.exceptions import WatchError

from memcompress.keys import paused_key
from memcompress.timing import IDLE_POLL_S
from memcompress.worker.job_limit import AdaptiveJobLimit
from memcompress.worker.lifecycle import STORE_COMMAND_OBSERVER
from memcompress.worker.tasks import JOB_FAILED

log = logging.getLogger(__name__)

CLAIM_ERRORS = (WatchError, RedisConnectionError, RedisTimeoutError, OSError)
# The arq release whose Worker.start_jobs this repair was read against.
ARQ_CHECKED_VERSION = "0.28.0"


def give_back_claim_slot(worker: Worker) -> None:
    """Undo what arq's ``start_jobs`` does before claiming a job (``sem.acquire()`` then
    ``job_counter + 1``) when the claim fails by exception, so the slot is free again."""
    worker.job_counter -= 1
    worker.sem.release()


class MemcompressWorker(Worker):
    def __init__(
        self,
        *args: Any,
        poll_delay: float = 0.1,
        max_jobs: int = 10,
        ctx: dict[str, Any] | None = None,
        job_limit: AdaptiveJobLimit | None = None,
        **kwargs: Any,
    ) -> None:
        self.job_limit = job_limit  # None: MAX_JOBS at once, always (MEMCOMPRESS_ADAPTIVE_JOBS off)
        self.ceiling = max_jobs
        if job_limit is not None:
            ctx = {**(ctx or {}), STORE_COMMAND_OBSERVER: self}  # for on_startup
        super().__init__(*args, poll_delay=0, max_jobs=max_jobs, ctx=ctx, **kwargs)
        self.max_jobs = self.current_limit()
        self.busy_poll_s = poll_delay
        self.next_poll_s = poll_delay
        self._wake = asyncio.Event()
        self._found_due = False
        self._then_on_job_end = self.on_job_end
        self.on_job_end = self._count_failed_jobs

    async def _count_failed_jobs(self, ctx: dict[str, Any]) -> None:
        """arq's ``on_job_end``, which runs after arq counted a job that returned as complete: a job
        that ended without compressing its user (dead-lettered, an invalid id) is a failure in the
        health line's ``j_failed`` (``memcompress status``, ``worker --check``) instead."""
        if ctx.get(JOB_FAILED):
            self.jobs_complete -= 1
            self.jobs_failed += 1
        if self._then_on_job_end is not None:
            await self._then_on_job_end(ctx)

    def current_limit(self) -> int:
        return self.ceiling if self.job_limit is None else self.job_limit.limit

    def store_command_started(self) -> None:
        if self.job_limit is not None:
            self.job_limit.command_started(time.monotonic())

    def store_command_finished(self) -> None:
        if self.job_limit is not None:
            self.job_limit.command_finished(time.monotonic(), self.job_counter)

    def _release_sem_dec_counter_on_complete(self) -> None:
        super()._release_sem_dec_counter_on_complete()
        self._wake.set()  # a slot is free: look for the next due job now

    async def _poll_iteration(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), self.next_poll_s)
        self._wake.clear()
        self._found_due = False
        self.max_jobs = self.current_limit()
        services = self.ctx.get("services")
        if services is not None:
            services.metrics.job_limit.set(self.max_jobs)
        await super()._poll_iteration()
        self.next_poll_s = self.busy_poll_s if self._found_due else min(self.next_poll_s * 2, IDLE_POLL_S)

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        self._found_due = bool(job_ids)
        if await self.pool.exists(paused_key(self.queue_name)):  # `memcompress pause`: take no job
            return
        self.max_jobs = self.current_limit()  # arq claims while job_counter < max_jobs
        try:
            await super().start_jobs(job_ids)
        except CLAIM_ERRORS as error:
            # Every exit from arq's start_jobs by exception happens while claiming one job, after
            # that job took a slot and before a task owns it.
            give_back_claim_slot(self)
            log.warning("lost Redis while claiming a job (%s); will poll again", type(error).__name__)


def run(settings: dict[str, Any], *, burst: bool = False, adaptive: bool = True) -> None:
    """The worker; ``adaptive`` (MEMCOMPRESS_ADAPTIVE_JOBS): the job limit follows the store."""
    limit = AdaptiveJobLimit(int(settings["max_jobs"])) if adaptive else None
    MemcompressWorker(**settings, burst=burst, job_limit=limit).run()
