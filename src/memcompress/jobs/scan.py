"""The scan: find users over the threshold (one aggregation) and queue one job per user.

Run by the worker's cron job, by ``memcompress scan`` and by the demo. It is also the safety net for
jobs Redis lost (restart, failover): anyone still over the threshold is queued again. Overlapping scans
are harmless because job ids collapse. It never queues a dead-lettered user without newer events (it
would fail the same way again), nor a ``user_id`` value no job can take (reported instead).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field, replace

from memcompress.jobs.services import Services
from memcompress.models import InvalidUserId, UserBacklog, utc_now

log = logging.getLogger(__name__)

DEAD_LETTERS_READ = 100_000
INVALID_SHOWN = 5  # examples of invalid user ids a scan reports


@dataclass(frozen=True, slots=True)
class Candidates:
    """Who a scan would queue, and the ``user_id`` values it never queues because no job can take them
    (not a string, empty, longer than 256 characters): how many, and a few, shown safely."""

    users: list[UserBacklog]
    invalid_user_ids: int = 0
    invalid_examples: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ScanResult:
    threshold: int
    users: list[UserBacklog]
    enqueued: int
    duration_s: float
    finished_at: str
    invalid_user_ids: int = 0
    invalid_examples: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, object]:
        """What ``status`` shows as the last scan (the user list is left out)."""
        fields = asdict(self)
        fields["users_found"] = len(fields.pop("users"))
        return fields


async def find_candidates(
    services: Services, *, threshold: int | None = None, limit: int | None = None
) -> Candidates:
    """Users over their trigger, most events first, and the invalid user ids over the policy's own
    trigger; changes nothing.

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
    backlog = await services.memory.scan_backlog(floor)
    waiting = [
        user
        for user in backlog.users
        if policy.limits(overrides.get(user.user_id)).over_trigger(user.event_count, user.chars)
        and (
            user.user_id not in letters
            or (user.newest_event_at is not None and user.newest_event_at > letters[user.user_id])
        )
    ]
    invalid = [i for i in backlog.invalid if policy.limits().over_trigger(i.event_count, 0)]
    if invalid:
        _report_invalid(invalid)
    return Candidates(waiting[:limit], len(invalid), [i.shown for i in invalid[:INVALID_SHOWN]])


async def find_users(
    services: Services, *, threshold: int | None = None, limit: int | None = None
) -> list[UserBacklog]:
    """The users of :func:`find_candidates`."""
    return (await find_candidates(services, threshold=threshold, limit=limit)).users


def _report_invalid(invalid: list[InvalidUserId]) -> None:
    log.warning(
        "%d user_id values in user_memory are over the threshold but no job can take them (not a "
        "string, empty, or longer than 256 characters): never queued, never compressed. Most events "
        "first: %s",
        len(invalid),
        "; ".join(f"{i.shown}, {i.event_count} events" for i in invalid[:INVALID_SHOWN]),
    )


async def scan_and_enqueue(
    services: Services, *, threshold: int | None = None, limit: int | None = None
) -> ScanResult:
    started = time.monotonic()
    used = threshold or services.policy.threshold
    found = await find_candidates(services, threshold=used, limit=limit)
    enqueued = 0
    for user in found.users:
        enqueued += await services.queue.enqueue(user.user_id)
    result = ScanResult(
        threshold=used,
        users=found.users,
        enqueued=enqueued,
        duration_s=round(time.monotonic() - started, 3),
        finished_at=utc_now().isoformat(),
        invalid_user_ids=found.invalid_user_ids,
        invalid_examples=found.invalid_examples,
    )
    await services.queue.record_scan(result.summary())
    metrics = services.metrics
    metrics.scan_users_found.set(len(found.users))
    metrics.scan_enqueued.inc(enqueued)
    metrics.last_scan.set_to_current_time()
    return result
