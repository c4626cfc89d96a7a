"""The request drainer: every worker process turns the apps' due compression requests into jobs.

Guarantee: every request an app adds (``ZADD memcompress:requests NX <due> <user_id>``, see
:mod:`memcompress.queue`) is followed, at its due time or within about a second after it, by a
compression of that user that starts after the request was made — and a burst of requests costs one
compression. How, in steps:

1. **Claim**, every ``DRAIN_EVERY_S`` in every worker process: the due requests, earliest first, in
   batches of ``BATCH``. The queue decides and acts on each request in one atomic step
   (:meth:`~memcompress.repositories.protocols.JobQueue.claim_due_requests`), so any number of
   processes drain together and each request is handed over once.
2. **Queue** a request whose user has no job queued or running: job ``compress:<user_id>`` (per queue:
   :func:`memcompress.keys.job_id`), due now, and the request goes in the same step. The job reads the
   user's history when it runs, after the request (and the messages the app appended before it) was made.
3. **Wait** when the user's job is queued or running: the request stays, due again a moment later.
   A job covers exactly what was asked before it *started*: on starting it removes the user's waiting
   request (``clear_recheck`` in :mod:`memcompress.jobs.queued`). A request made after that stays, and
   once the job has ended it is queued (at once by the job's ``after_job_end``, or by the next claim).
4. **Repeat** while a batch came back full (at most ``MAX_BATCHES`` a tick), then sleep.

Redis going away ends a tick, not the drainer: the next tick tries again. Requests live in Redis like
the queue, so they survive what it survives (a restart with persistence, a failover to a replica);
what a restart without persistence loses, the scheduled scan finds again for users over the threshold.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from memcompress.jobs.services import Services
from memcompress.redaction import describe_error
from memcompress.timing import DRAIN_EVERY_S

log = logging.getLogger(__name__)

BATCH = 100
MAX_BATCHES = 50


@dataclass(frozen=True, slots=True)
class DrainResult:
    """How many due requests one drain handed to the queue, and how many it left waiting for a job."""

    queued: int = 0
    waiting: int = 0


async def drain_due_requests(
    services: Services, *, batch: int = BATCH, max_batches: int = MAX_BATCHES
) -> DrainResult:
    """One tick: hand every due request to the queue (steps 1-4 of the module docs)."""
    queued = waiting = 0
    for _ in range(max_batches):
        # Step 1: claim a batch; steps 2 and 3 happen inside the claim, atomically per request.
        claimed = await services.queue.claim_due_requests(limit=batch)
        queued += len(claimed.queued)
        waiting += len(claimed.waiting)
        # Step 4: a batch that was not full means nothing due is left (waiting ones are due later now).
        if claimed.count < batch:
            break
    if queued:
        log.debug("queued %d requested compressions (%d wait for a running job)", queued, waiting)
    return DrainResult(queued, waiting)


async def run_request_drainer(services: Services, *, every_s: float = DRAIN_EVERY_S) -> None:
    """Drain due requests every ``every_s`` seconds until cancelled (a worker's background task)."""
    while True:
        try:
            await drain_due_requests(services)
        except Exception as error:  # Redis away past its retries: the next tick tries again
            log.warning("could not hand compression requests to the queue: %s", describe_error(error))
        await asyncio.sleep(every_s)
