"""Compress one user's memory: fold the older events into the running summary, then trim them.

The invariant every step keeps:

    every event ever appended is, at every moment, either still stored or inside the stored summary.

How the steps keep it:

1. Lock. Take the user's Redis lock without waiting; if another worker holds it, stop ("busy").
   The lock only saves duplicate LLM work: correctness comes from step 6's version check.
2. Finish what a previous run left (reading the profile creates none). A run that stored a summary
   but died before trimming left the summarised event refs as ``pending_trim`` on the profile: trim
   exactly those, then clear the mark. They are never summarised again.
3. Decide. With at most ``threshold`` dated events, skip (a user with no events at all leaves no
   trace). Otherwise fold every event except the newest ``keep_last`` at this moment, streamed
   oldest first in ``(created_at, _id)`` order, in bounded batches (the history is never loaded).
4. Chunk. Cut the stream into chunks that fit one summariser request.
5. Summarise each chunk together with the summary so far (each chunk's output feeds the next). A
   failed or unusable answer stops the run here: nothing of that chunk is trimmed.
6. Store the new summary and the chunk's refs as ``pending_trim`` in one write, conditional on the
   summary version read before (fencing). A stale writer loses here and trims nothing.
7. Trim exactly the refs of that chunk, by ``_id`` (delete, or archive then delete), then clear the
   mark. Events appended meanwhile are never among them, whatever their ``created_at``.
8. Record the run in ``compaction_log`` and the metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from redis.asyncio import Redis
from redis.asyncio.lock import Lock
from redis.exceptions import LockError

from memcompress.keys import lock_key
from memcompress.metrics import Metrics
from memcompress.models import CompactionRecord, Outcome, StoredEvent, Watermark, utc_now
from memcompress.repositories.protocols import CompactionLog, UserMemoryRepository, UserProfileRepository
from memcompress.summarizers.base import (
    Summarizer,
    SummarizerError,
    SummaryRequest,
    SummaryResult,
    transcript_chars,
)

log = logging.getLogger(__name__)

TIME_LIMIT = "JobTimeout"  # CompactionRecord.error_class of a run stopped by its time limit


@dataclass(frozen=True, slots=True)
class FoldPolicy:
    threshold: int = 50
    keep_last: int = 20
    batch_size: int = 500
    chunk_chars: int = 24_000
    summary_max_chars: int = 4_000
    retention: Literal["delete", "archive"] = "delete"
    lock_ttl_s: float = 360.0


@dataclass(slots=True)
class CompressionDeps:
    """Everything one compression needs; built once per process by :mod:`memcompress.bootstrap`."""

    memory: UserMemoryRepository
    profiles: UserProfileRepository
    compaction_log: CompactionLog
    summarizer: Summarizer
    redis: Redis
    policy: FoldPolicy
    metrics: Metrics


class _Stop(Exception):
    """Ends a run early with an outcome other than "compressed"."""

    def __init__(self, outcome: Outcome, reason: str) -> None:
        super().__init__(reason)
        self.outcome = outcome
        self.reason = reason


async def run_compression(
    deps: CompressionDeps, user_id: str, *, time_limit_s: float | None = None
) -> CompactionRecord:
    """Compress ``user_id`` once; returns (and stores) the run's :class:`CompactionRecord`.

    ``time_limit_s`` stops the run between or inside chunks; chunks already stored and trimmed stay
    done, and the record says how many (``error_class`` "JobTimeout", retryable).
    """
    record = CompactionRecord(
        user_id=user_id,
        outcome=Outcome.COMPRESSED,
        summarizer=deps.summarizer.name,
        model=deps.summarizer.model,
    )
    started = time.monotonic()
    timer = asyncio.timeout(time_limit_s)
    try:
        # Step 1: lock (held for the whole run, renewed in the background).
        async with timer, _user_lock(deps, user_id) as lock:
            await _fold(deps, user_id, lock, record)
    except _Stop as stop:
        record.outcome, record.reason = stop.outcome, stop.reason
    except SummarizerError as error:
        record.outcome, record.reason = Outcome.FAILED, str(error)
        record.error_class, record.retryable = type(error).__name__, error.retryable
    except TimeoutError as error:
        if timer.expired():
            record.outcome, record.error_class, record.retryable = Outcome.FAILED, TIME_LIMIT, True
            record.reason = (
                f"time limit of {time_limit_s:g}s reached; {record.chunks} finished chunks are kept"
            )
        else:
            _failed(record, error)
    except Exception as error:  # a store or Redis failure: the pending mark makes a retry safe
        _failed(record, error)

    # Step 8: record (a user with no events at all leaves no trace: e.g. a job queued before `forget`).
    record.finished_at = utc_now()
    record.duration_s = time.monotonic() - started
    deps.metrics.compressions.labels(outcome=record.outcome.value).inc()
    deps.metrics.compression_duration.observe(record.duration_s)
    if record.outcome is Outcome.SKIPPED and record.events_before == 0:
        return record
    try:
        await deps.compaction_log.record(record)
    except Exception:
        log.exception("could not store the compaction record")
    return record


def _failed(record: CompactionRecord, error: Exception) -> None:
    log.exception("compression of a user failed")
    record.outcome, record.reason = Outcome.FAILED, f"{type(error).__name__}: {error}"
    record.error_class, record.retryable = type(error).__name__, True


async def plan_fold(memory: UserMemoryRepository, policy: FoldPolicy, user_id: str) -> int:
    """Step 3's decision, shared with dry runs: how many of the oldest events to fold (0: none).

    Counts only events the fold can order (a date ``created_at``), so documents it must skip never
    make a user look over the threshold.
    """
    dated = await memory.count_dated_events(user_id)
    return dated - policy.keep_last if dated > policy.threshold else 0


async def _fold(deps: CompressionDeps, user_id: str, lock: _HeldLock, record: CompactionRecord) -> None:
    policy = deps.policy

    # Step 2: finish a trim an earlier run left pending (reading creates no profile).
    profile = await deps.profiles.find(user_id)
    if profile is not None and profile.pending_trim is not None:
        await _trim(deps, profile.pending_trim.refs)
        await deps.profiles.clear_pending_trim(user_id, profile.pending_trim.summary_version)

    # Step 3: decide what to fold.
    record.events_before = await deps.memory.count_events(user_id)
    to_fold = await plan_fold(deps.memory, policy, user_id)
    if to_fold <= 0:
        raise _Stop(Outcome.SKIPPED, f"not over the threshold of {policy.threshold} dated events")
    profile = profile or await deps.profiles.get(user_id)  # created only now that there is work
    record.summary_chars_before = len(profile.memory_summary or "")
    record.summary_version = profile.summary_version
    stream = deps.memory.iter_oldest(user_id, max_documents=to_fold, batch_size=policy.batch_size)

    summary, version, watermark = profile.memory_summary, profile.summary_version, profile.watermark
    # Step 4: chunk.
    async for chunk in chunk_events(stream, policy.chunk_chars, policy.batch_size):
        # Step 5: summarise the chunk together with the summary so far.
        request = SummaryRequest(
            summary, [s.event for s in chunk], profile.language, policy.summary_max_chars
        )
        result = await _summarize(deps, request, record)
        summary = result.text

        # Step 6: store, conditional on the version read before (fencing).
        await lock.ensure_held()
        watermark = _newest(watermark, chunk)
        refs = [s.ref for s in chunk]
        won = await deps.profiles.update_summary_if_version(
            user_id, expected_version=version, summary=summary, watermark=watermark, folded_refs=refs
        )
        if not won:
            deps.metrics.version_conflicts.inc()
            raise _Stop(Outcome.CONFLICT, f"summary version moved past {version}; nothing trimmed")
        version += 1

        # Step 7: trim exactly what was summarised, then clear the mark.
        await _trim(deps, refs)
        await deps.profiles.clear_pending_trim(user_id, version)
        _count_chunk(deps, record, len(chunk), summary, version)

    if record.chunks == 0:
        raise _Stop(Outcome.SKIPPED, "no well-formed events to fold")
    record.events_after = await deps.memory.count_events(user_id)


async def chunk_events(
    stream: AsyncIterator[StoredEvent], max_chars: int, max_events: int
) -> AsyncIterator[list[StoredEvent]]:
    """Consecutive runs of events whose transcript fits ``max_chars`` (always at least one event)."""
    chunk: list[StoredEvent] = []
    size = 0
    async for stored in stream:
        chars = transcript_chars(stored.event)
        if chunk and (size + chars > max_chars or len(chunk) >= max_events):
            yield chunk
            chunk, size = [], 0
        chunk.append(stored)
        size += chars
    if chunk:
        yield chunk


async def _summarize(
    deps: CompressionDeps, request: SummaryRequest, record: CompactionRecord
) -> SummaryResult:
    name = deps.summarizer.name
    deps.metrics.llm_requests.labels(summarizer=name).inc()
    record.llm_calls += 1
    started = time.monotonic()
    try:
        result = await deps.summarizer.summarize(request)
    except SummarizerError as error:
        deps.metrics.llm_failures.labels(summarizer=name, error_class=error.kind).inc()
        raise
    finally:
        deps.metrics.llm_duration.labels(summarizer=name).observe(time.monotonic() - started)
    if result.prompt_tokens is not None:
        record.prompt_tokens = (record.prompt_tokens or 0) + result.prompt_tokens
    if result.completion_tokens is not None:
        record.completion_tokens = (record.completion_tokens or 0) + result.completion_tokens
    return result


async def _trim(deps: CompressionDeps, refs: Sequence[Any]) -> None:
    retention = deps.policy.retention
    if retention == "archive":
        trimmed = await deps.memory.archive_by_refs(refs)
    else:
        trimmed = await deps.memory.delete_by_refs(refs)
    deps.metrics.events_trimmed.labels(retention=retention).inc(trimmed)


def _newest(watermark: Watermark | None, chunk: Sequence[StoredEvent]) -> Watermark:
    last = max(chunk, key=lambda s: (s.event.created_at, str(s.event.event_id))).event
    candidate = Watermark(created_at=last.created_at, event_id=last.event_id)
    if watermark is not None and watermark.created_at > candidate.created_at:
        return watermark
    return candidate


def _count_chunk(
    deps: CompressionDeps, record: CompactionRecord, folded: int, summary: str, version: int
) -> None:
    deps.metrics.events_folded.inc(folded)
    record.chunks += 1
    record.events_folded += folded
    record.summary_chars_after = len(summary)
    record.summary_version = version


# --- the per-user lock ---------------------------------------------------------------------------


class _HeldLock:
    """A held redis-py ``Lock`` (random token; extend and release are Lua scripts, never a bare DEL),
    renewed in the background. ``ensure_held`` is checked before every write."""

    def __init__(self, lock: Lock, ttl_s: float, metrics: Metrics) -> None:
        self._lock = lock
        self._ttl_s = ttl_s
        self._metrics = metrics
        self._lost = False
        self._renewer: asyncio.Task[None] | None = None

    def start_renewing(self) -> None:
        self._renewer = asyncio.create_task(self._renew())

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(self._ttl_s / 3)
            try:
                await self._lock.reacquire()
            except LockError:
                self._lost = True
                return
            except Exception:  # Redis briefly unreachable: keep trying until the TTL says otherwise
                log.warning("could not renew a compression lock; will retry", exc_info=True)

    async def ensure_held(self) -> None:
        if self._lost or not await self._lock.owned():
            self._lost = True
            self._metrics.lock_lost.inc()
            raise _Stop(Outcome.CONFLICT, "lock lost before writing; nothing written")

    async def release(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
        with contextlib.suppress(LockError):  # expired or taken over: not ours to delete
            await self._lock.release()


@contextlib.asynccontextmanager
async def _user_lock(deps: CompressionDeps, user_id: str) -> AsyncIterator[_HeldLock]:
    ttl = deps.policy.lock_ttl_s
    lock = deps.redis.lock(lock_key(user_id), timeout=ttl, blocking=False, thread_local=False)
    if not await lock.acquire():
        deps.metrics.lock_contention.inc()
        raise _Stop(Outcome.BUSY, "another worker holds this user's lock")
    held = _HeldLock(lock, ttl, deps.metrics)
    held.start_renewing()
    try:
        yield held
    finally:
        await held.release()
