"""The worker process ``memcompress worker`` runs: arq's ``Worker`` with one repair.

arq claims a due job in a WATCH/MULTI transaction. If Redis goes away just then (a restart or a
failover), redis-py raises ``WatchError``/``ConnectionError`` instead of retrying, the exception leaves
arq's ``start_jobs`` after it has taken a job slot, and arq's loop ends: the process exits. Here the
slot is given back and the worker keeps polling; the job stays queued and is claimed on a later poll.
"""

from __future__ import annotations

import logging
from typing import Any

from arq.worker import Worker
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.exceptions import WatchError

log = logging.getLogger(__name__)

CLAIM_ERRORS = (WatchError, RedisConnectionError, RedisTimeoutError, OSError)


class MemcompressWorker(Worker):
    async def start_jobs(self, job_ids: list[bytes]) -> None:
        try:
            await super().start_jobs(job_ids)
        except CLAIM_ERRORS as error:
            # Every exit from arq's start_jobs by exception happens while claiming one job, after
            # that job took a slot (job_counter and the semaphore) and before a task owns it.
            self.job_counter -= 1
            self.sem.release()
            log.warning("lost Redis while claiming a job (%s); will poll again", type(error).__name__)


def run(settings: dict[str, Any], *, burst: bool = False) -> None:
    MemcompressWorker(**settings, burst=burst).run()
