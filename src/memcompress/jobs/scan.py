"""The scan: find users over the threshold (one aggregation) and queue one job per user.

Run by the worker's cron job, by ``memcompress scan`` and by the demo. It is also the safety net for
jobs Redis lost (restart, failover): anyone still over the threshold is queued again. Overlapping scans
are harmless because job ids collapse.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace

from memcompress.jobs.services import Services
from memcompress.models import UserBacklog, utc_now

DEAD_LETTERS_READ = 100_000


@dataclass(frozen=True, slots=True)
class ScanResult:
    threshold: int
    users: list[UserBacklog]
    enqueued: int
    duration_s: float
    finished_at: str

    def summary(self) -> dict[str, object]:
        """What ``status`` shows as the last scan (the user list is left out)."""
        fields = asdict(self)
        fields["users_found"] = len(fields.pop("users"))
        return fields


async def find_users(
    services: Services, *, threshold: int | None = None, limit: int | None = None
) -> list[UserBacklog]:
    """Users over their trigger, most events first; changes nothing.

    Each user's trigger is the policy's (``threshold``, when given, replaces its event threshold) with
    that user's overrides applied: more than the threshold's foldable events, or more than
    ``trigger_tokens`` estimated tokens of them. A dead-lettered user is left out until it has events
    newer than its dead letter: it would fail the same way again (``memcompress dead
    retry`` retries on purpose).
    """
    policy = services.policy if threshold is None else replace(services.policy, threshold=threshold)
    overrides = await services.overrides.all()
    limits = [policy.limits(o) for o in overrides.values()] + [policy.limits()]
    # The aggregation counts every user once; it need only return those that can be over a trigger.
    floor = 0 if any(lim.trigger_tokens for lim in limits) else min(lim.threshold for lim in limits)
    letters = {
        letter.user_id: letter.failed_at for letter in await services.dead_letters.list(DEAD_LETTERS_READ)
    }
    waiting = [
        user
        for user in await services.memory.users_over_threshold(floor)
        if policy.limits(overrides.get(user.user_id)).over_trigger(user.event_count, user.chars)
        and (
            user.user_id not in letters
            or (user.newest_event_at is not None and user.newest_event_at > letters[user.user_id])
        )
    ]
    return waiting[:limit]


async def scan_and_enqueue(
    services: Services, *, threshold: int | None = None, limit: int | None = None
) -> ScanResult:
    started = time.monotonic()
    used = threshold or services.policy.threshold
    users = await find_users(services, threshold=used, limit=limit)
    enqueued = 0
    for user in users:
        enqueued += await services.queue.enqueue(user.user_id)
    result = ScanResult(
        threshold=used,
        users=users,
        enqueued=enqueued,
        duration_s=round(time.monotonic() - started, 3),
        finished_at=utc_now().isoformat(),
    )
    await services.queue.record_scan(result.summary())
    metrics = services.metrics
    metrics.scan_users_found.set(len(users))
    metrics.scan_enqueued.inc(enqueued)
    metrics.last_scan.set_to_current_time()
    return result
