"""The scan: find users over the threshold (one aggregation) and queue one job per user.

Run by the worker's cron job, by ``memcompress scan`` and by the demo. It is also the safety net for
jobs Redis lost (restart, failover): anyone still over the threshold is queued again. Overlapping scans
are harmless because job ids collapse.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

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
    """Users over ``threshold`` (default: the policy's), most events first; changes nothing.

    A dead-lettered user is left out until it has events newer than its dead letter: it would fail
    the same way again (``memcompress enqueue --dead-letters`` retries on purpose). At most as many
    users are left out as there are dead letters, so asking for that many more keeps ``limit`` full.
    """
    letters = {
        letter.user_id: letter.failed_at for letter in await services.dead_letters.list(DEAD_LETTERS_READ)
    }
    asked = None if limit is None else limit + len(letters)
    users = await services.memory.users_over_threshold(threshold or services.policy.threshold, asked)
    waiting = [
        user
        for user in users
        if user.user_id not in letters
        or (user.newest_event_at is not None and user.newest_event_at > letters[user.user_id])
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
