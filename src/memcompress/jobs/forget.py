"""GDPR erase (``memcompress forget``): everything memcompress holds about one user, in every store."""

from __future__ import annotations

from memcompress.jobs.services import Services
from memcompress.repositories.errors import LockBusy


async def forget_user(services: Services, user_id: str, *, wait_s: float) -> dict[str, int]:
    """Erase ``user_id``; returns what was removed, per store.

    Holds the user's compression lock while erasing (waiting up to ``wait_s`` for a running job to
    finish), so no compression can write a summary back afterwards; the user's queued job and
    re-check flag go too.
    """
    try:
        async with services.locks.hold(user_id, wait_s=wait_s):
            removed = await services.maintenance.erase_user_data(user_id)
            removed |= await services.queue.erase_user(user_id)
    except LockBusy:
        raise TimeoutError(
            f"a compression of this user is still running after {wait_s:g}s; try again"
        ) from None
    return removed
