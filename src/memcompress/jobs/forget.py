"""GDPR erase (``memcompress forget``): everything memcompress holds about one user, in every store, and
nothing of it written back afterwards.

What it guarantees: once :func:`forget_user` has returned, no write of a job that started before it
brings back anything of the user: events, archive, profile, summary, compaction record, dead letter,
lock, queued job or waiting request.

How, in steps (the erase fence):

1. Tombstone first. Before waiting for anything, write the user's tombstone (``erased_users``). From
   then on every write that can create a document of the user looks for it afterwards and undoes
   itself (:mod:`memcompress.repositories.erasures`): a new profile, archive copies, a compaction
   record, a dead letter. The queue's writes after a job (a retry, a request handed over as a job)
   are checked the same way, and taken back (:mod:`memcompress.jobs.queued`).
2. Lock. Wait (up to ``wait_s``) for the user's lock, so that a running job finishes first: it writes
   its compaction record, dead letter and re-check request while it still holds the lock
   (:mod:`memcompress.jobs.compress`, step 8), so they are there to be erased. Then erase every
   collection and the queue's keys of the user, holding the lock.
3. Writes that only change or remove what exists cannot bring anything back: the summary write is
   conditional on the very profile document it read (its ``_id`` and version), the trims on the
   user's own documents, all of which the erase removed. A summary write that creates the profile
   (the user had none) creates it only where there still is none, and is checked as in step 1.
4. A job that lost its lock (Redis restarted or failed over) does not wait for ``forget``: it stops
   before its next write (``HeldLock.ensure_held``), and whatever it writes in between is undone by
   step 1's check, as long as the tombstone lasts.
5. So the tombstone must outlast every job that started before ``forget`` returned. When the erase is
   done its expiry is set to ``JOB_TIMEOUT_S`` + :data:`ERASE_FENCE_MARGIN_S` from then: every job
   stops itself at ``JOB_TIMEOUT_S`` (queued ones and inline ``compress``/``run-once`` runs alike),
   arq cancels a queued one 5 s later at the latest, and the margin also covers clocks that differ
   between this host, which sets the expiry, and the workers that compare it with their own time (a
   tombstone counts until ``expires_at``; MongoDB's TTL monitor removes it later).

The tombstone is all that is left: the user id and two dates, gone after ~6 minutes by default. A
``forget`` that gives up waiting for the lock erases nothing, and its tombstone expires the same way.
"""

from __future__ import annotations

from memcompress.jobs.services import JobPolicy, Services
from memcompress.repositories.errors import LockBusy
from memcompress.timing import ERASE_FENCE_MARGIN_S


def erase_fence_s(policy: JobPolicy) -> float:
    """How long a tombstone lasts after the erase (step 5)."""
    return policy.job_timeout_s + ERASE_FENCE_MARGIN_S


async def forget_user(services: Services, user_id: str, *, wait_s: float) -> dict[str, int]:
    """Erase ``user_id``; returns what was removed, per store. Raises ``TimeoutError`` (nothing erased)
    when a compression of the user still holds its lock after ``wait_s`` seconds."""
    fence_s = erase_fence_s(services.job_policy)
    # Step 1: the tombstone, before anything else.
    await services.erasures.mark(user_id, fence_s + wait_s)
    try:
        # Step 2: the lock, then the erase.
        async with services.locks.hold(user_id, wait_s=wait_s):
            removed = await services.maintenance.erase_user_data(user_id)
            removed |= await services.queue.erase_user(user_id)
    except LockBusy:
        raise TimeoutError(
            f"a compression of this user is still running after {wait_s:g}s; try again"
        ) from None
    # Step 5: from now on, outlast every job that started before this returns.
    await services.erasures.mark(user_id, fence_s)
    return removed
