"""The scan: find users over the threshold (one aggregation) and queue one job per user.

Run by the worker's cron job, by ``memcompress scan`` and by the demo. It is also the safety net for
jobs Redis lost (restart, failover): anyone still over the threshold is queued again. Overlapping scans
are harmless because job ids collapse. It never queues a dead-lettered user without newer events (it
would fail the same way again), nor a ``user_id`` value no job can take (reported instead).

Two modes, so that a scan costs what was appended, not the whole history:

1. Full: every user's events are counted. When asked (``scan --full``, dry runs, another threshold
   than the policy's), when no earlier scan left a watermark (the first scan, or Redis lost it), and
   at least every ``full_scan_interval_s`` (``MEMCOMPRESS_FULL_SCAN_INTERVAL_H``, default daily). A
   scan with another threshold than the policy's is full but counts as no scan of the policy's: it
   moves neither the watermark nor the time of the last full scan.
2. Incremental, otherwise: only users with an event whose ``created_at`` is at or after the watermark
   are counted. The watermark is the previous scan's start less ``scan_overlap_s``
   (``MEMCOMPRESS_SCAN_OVERLAP_S``, for clocks that differ and inserts in flight), kept in the last
   scan's record in Redis. A scan cut short by its limit leaves the watermark where it was.

What an incremental scan misses: events stored with a ``created_at`` older than the watermark (an
import, a backfill, a clock behind by more than the overlap), and users still over the threshold
with nothing new (a job Redis lost, a dead letter retried). The next full scan finds them.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta

from memcompress.jobs.services import JobPolicy, Services
from memcompress.models import InvalidUserId, UserBacklog, iso_utc, utc_now

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
    active_users: int | None = None  # an incremental scan: the users it looked at


@dataclass(frozen=True, slots=True)
class ScanResult:
    threshold: int
    users: list[UserBacklog]
    enqueued: int
    duration_s: float
    finished_at: str
    invalid_user_ids: int = 0
    invalid_examples: list[str] = field(default_factory=list)
    mode: str = "full"  # or "incremental"
    since: str | None = None  # an incremental scan's watermark (ISO 8601)
    active_users: int | None = None  # an incremental scan: the users with events since the watermark
    next_since: str | None = None  # the next incremental scan's watermark
    last_full_at: str | None = None  # when the last full scan started

    def summary(self) -> dict[str, object]:
        """What ``status`` shows as the last scan (the user list is left out)."""
        fields = asdict(self)
        fields["users_found"] = len(fields.pop("users"))
        return fields


async def find_candidates(
    services: Services,
    *,
    threshold: int | None = None,
    limit: int | None = None,
    since: datetime | None = None,
) -> Candidates:
    """Users over their trigger, most events first, and the invalid user ids over the policy's own
    trigger; changes nothing. With ``since``, only users with events since then (incremental).

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
    backlog = await services.memory.scan_backlog(floor, since=since)
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
    shown = [i.shown for i in invalid[:INVALID_SHOWN]]
    return Candidates(waiting[:limit], len(invalid), shown, backlog.active_users)


async def find_users(
    services: Services, *, threshold: int | None = None, limit: int | None = None
) -> list[UserBacklog]:
    """The users of :func:`find_candidates`."""
    return (await find_candidates(services, threshold=threshold, limit=limit)).users


def _report_invalid(invalid: list[InvalidUserId]) -> None:
    log.warning(
        "%d user_id values in the history are over the threshold but no job can take them (not a "
        "string, empty, or longer than 256 characters): never queued, never compressed. Most events "
        "first: %s",
        len(invalid),
        "; ".join(f"{i.shown}, {i.event_count} events" for i in invalid[:INVALID_SHOWN]),
    )


@dataclass(frozen=True, slots=True)
class ScanMode:
    """Which mode a scan runs in (see the module): ``since`` None is a full scan."""

    since: datetime | None
    last_full_at: datetime | None


def scan_mode(
    policy: JobPolicy, last_scan: dict[str, object] | None, now: datetime, *, full: bool = False
) -> ScanMode:
    """Incremental from the last scan's watermark, unless a full scan is asked for or due."""
    last = last_scan or {}
    next_since, last_full_at = _time(last.get("next_since")), _time(last.get("last_full_at"))
    if full or next_since is None or last_full_at is None:
        return ScanMode(None, last_full_at)
    if now - last_full_at >= timedelta(seconds=policy.full_scan_interval_s):
        return ScanMode(None, last_full_at)
    return ScanMode(next_since, last_full_at)


def _time(value: object) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


async def scan_and_enqueue(
    services: Services, *, threshold: int | None = None, limit: int | None = None, full: bool = False
) -> ScanResult:
    """Queue every user over the threshold, in the mode :func:`scan_mode` picks (``full``: a full
    scan; so is one with another threshold than the policy's), and record the scan."""
    started, now = time.monotonic(), utc_now()
    used = threshold or services.policy.threshold
    own_threshold = used == services.policy.threshold
    last_scan = await services.queue_admin.last_scan()
    mode = scan_mode(services.job_policy, last_scan, now, full=full or not own_threshold)
    found = await find_candidates(services, threshold=used, limit=limit, since=mode.since)
    enqueued = 0
    for user in found.users:
        enqueued += await services.queue.request(user.user_id)
    cut_short = limit is not None and len(found.users) >= limit
    watermark = now - timedelta(seconds=services.job_policy.scan_overlap_s)
    next_since = mode.since if cut_short else watermark  # a full scan cut short: the next one is full
    last_full_at = now if mode.since is None else mode.last_full_at
    if not own_threshold:
        # Another threshold found other users: it stands in for no scan of the policy's threshold, so
        # the watermark and the time of the last full scan stay as they were.
        last = last_scan or {}
        next_since, last_full_at = _time(last.get("next_since")), _time(last.get("last_full_at"))
    result = ScanResult(
        threshold=used,
        users=found.users,
        enqueued=enqueued,
        duration_s=round(time.monotonic() - started, 3),
        finished_at=iso_utc(utc_now()),
        invalid_user_ids=found.invalid_user_ids,
        invalid_examples=found.invalid_examples,
        mode="full" if mode.since is None else "incremental",
        since=None if mode.since is None else iso_utc(mode.since),
        active_users=found.active_users,
        next_since=None if next_since is None else iso_utc(next_since),
        last_full_at=None if last_full_at is None else iso_utc(last_full_at),
    )
    await services.queue_admin.record_scan(result.summary())
    metrics = services.metrics
    metrics.scan_users_found.set(len(found.users))
    metrics.scan_enqueued.inc(enqueued)
    metrics.last_scan.set_to_current_time()
    return result
