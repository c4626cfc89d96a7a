"""The scan: find users over the threshold (one aggregation) and queue one job per user.

Run by the worker's cron job and by ``memcompress scan``. It is also the safety net for jobs Redis
lost (restart, failover): anyone still over the threshold is queued again. Overlapping scans are
harmless because job ids collapse.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass

from redis.asyncio import Redis

from memcompress.keys import LAST_SCAN_KEY
from memcompress.metrics import Metrics
from memcompress.models import UserBacklog, utc_now
from memcompress.queue import enqueue_job
from memcompress.repositories.protocols import UserMemoryRepository


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


async def scan_and_enqueue(
    memory: UserMemoryRepository,
    redis: Redis,
    metrics: Metrics,
    *,
    threshold: int,
    limit: int | None,
    queue_name: str,
) -> ScanResult:
    started = time.monotonic()
    users = await memory.users_over_threshold(threshold, limit)
    enqueued = 0
    for user in users:
        enqueued += await enqueue_job(redis, user.user_id, queue_name=queue_name)
    result = ScanResult(
        threshold=threshold,
        users=users,
        enqueued=enqueued,
        duration_s=round(time.monotonic() - started, 3),
        finished_at=utc_now().isoformat(),
    )
    await redis.set(LAST_SCAN_KEY, json.dumps(result.summary()))
    metrics.scan_users_found.set(len(users))
    metrics.scan_enqueued.inc(enqueued)
    metrics.last_scan.set_to_current_time()
    return result


async def last_scan(redis: Redis) -> dict[str, object] | None:
    raw = await redis.get(LAST_SCAN_KEY)
    return json.loads(raw) if raw else None
