"""The worker process ``memcompress worker`` runs: arq's ``Worker`` with one repair.

arq claims a due job in a WATCH/MULTI transaction. If Redis goes away just then (a restart or a
failover), redis-py raises ``WatchError``/``ConnectionError`` instead of retrying, the exception leaves
arq's ``start_jobs`` after it has taken a job slot, and arq's loop ends: the process exits. Here the
slot is given back and the worker keeps polling; the job stays queued and is claimed on a later poll.
While the queue is paused (``memcompress pause``) it claims nothing; scans still queue users.

Giving the slot back touches two private attributes of arq's ``Worker`` (``job_counter`` and ``sem``),
so it lives in one function, :func:`give_back_claim_slot`, checked against ``ARQ_CHECKED_VERSION``;
``tests/unit/test_runner.py`` fails when arq's claim code no longer takes the slot that way.
"""

from __future__ import annotations

import logging
from typing import Any

from arq.worker import Worker
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.exceptions import WatchError

from memcompress.keys import paused_key

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
    async def start_jobs(self, job_ids: list[bytes]) -> None:
        if await self.pool.exists(paused_key(self.queue_name)):  # `memcompress pause`: take no job
            return
        try:
            await super().start_jobs(job_ids)
        except CLAIM_ERRORS as error:
            # Every exit from arq's start_jobs by exception happens while claiming one job, after
            # that job took a slot and before a task owns it.
            give_back_claim_slot(self)
            log.warning("lost Redis while claiming a job (%s); will poll again", type(error).__name__)


def run(settings: dict[str, Any], *, burst: bool = False) -> None:
    MemcompressWorker(**settings, burst=burst).run()
