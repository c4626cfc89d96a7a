"""Compress one user's memory: fold the older events into the running summary, then trim them.

The invariant every step keeps:

    every event ever appended is, at every moment, either still stored or inside the stored summary.

How the steps keep it:

1. Lock. Take the user's lock without waiting; if another worker holds it, stop ("busy").
   The lock only saves duplicate LLM work: correctness comes from step 6's version check.
2. Read, and finish what a previous run left. One read gives what the worker knows of the user (its
   profile, of which none is created; its overrides; its compressions of the last 24 hours), one
   more the newest batch of its history with the sizes of the whole of it (counted from that batch
   when it is the whole history, by one aggregation otherwise). A run that stored a summary left the
   summarised event refs as ``pending_trim`` on the profile; the mark stays after the trim, until
   the next summary write replaces it. When any event it names may still be stored (a run died
   before trimming: the batch shows it, or is not the whole history), trim exactly those again (a
   no-op for those already gone) and read again if any was. They are never summarised again. And if
   the app wrote ``memory_summary`` back from a stale copy (its ``save()`` writes the whole
   profile), the summary is repaired from the worker's own copy before anything else: restored when
   the app's text is one of the worker's own earlier summaries, merged (both texts kept) when it is
   not.
3. Decide, from what step 2 read. With at most ``threshold`` foldable events (and tokens under
   ``trigger_tokens``), skip (a user with no events at all leaves no trace). Otherwise fold every
   foldable event except the newest ``keep_last`` (and ``target_tokens``) at this moment, moving
   that boundary older so that no tool call is split from its results; oldest first in
   ``(created_at, _id)`` order: taken from step 2's batch when it is the whole history, else streamed
   in bounded batches (the history is never loaded). Pinned events are never folded or counted;
   documents the fold cannot use are kept, never counted, and reported once per run. Folding fewer
   than ``min_fold`` events, or past the daily cap, is skipped before any LLM call.
4. Chunk. Cut the stream into chunks that fit one summariser request.
5. Summarise each chunk together with the summary so far (each chunk's output feeds the next). A
   failed or unusable answer stops the run here: nothing of that chunk is trimmed. The carry guard
   checks every answer against the summary so far: the concrete values it held (numbers, dates,
   codes, e-mails, URLs, names) must still be there, and it may not shrink below half. An answer that
   drops them gets one repair request naming what it dropped; if that fails too, the run fails like
   an LLM failure, with the kinds of loss (never the values) as the reason. A summary at its length
   budget may drop values: that is recorded (``values_dropped``, a metric), never silent.
6. Store the new summary and the chunk's refs as ``pending_trim`` in one write, conditional on the
   summary version read before (fencing). A stale writer loses here and trims nothing. A user with
   no profile gets one from this write (with the defaults; erase-fenced like every write that
   creates a document of a user).
7. Trim exactly the refs of that chunk, matched by ``_id``, ``user_id`` and ``event_id`` (delete, or
   archive then delete). Events appended meanwhile are never among them, whatever their
   ``created_at``, nor is a document that took over a summarised one's ``_id``. The mark is not
   cleared by a write of its own: the next chunk's summary write replaces it, and after the last
   chunk the next run finds none of its events stored (step 2).
8. Record the run in ``compaction_log`` and the metrics, while the lock is still held, so that a
   ``forget`` (which takes the lock) erases the record too. A run whose user was erased meanwhile
   leaves nothing: every write that could create a document of the user undoes itself then (the
   erase fence, see :mod:`memcompress.jobs.forget`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from memcompress.jobs.boundary import Limits, events_to_fold
from memcompress.jobs.services import FoldPolicy, Services
from memcompress.models import (
    CompactionRecord,
    FoldState,
    Outcome,
    RecentHistory,
    StoredEvent,
    UserOverrides,
    UserProfile,
    Watermark,
    summary_hash,
    utc_now,
)
from memcompress.redaction import describe_error, format_exception
from memcompress.repositories.errors import LockBusy, LockLost, MalformedDocument, UserErased
from memcompress.repositories.protocols import HeldLock
from memcompress.summarizers.base import (
    RejectedOutput,
    SummarizerError,
    SummaryRequest,
    SummaryResult,
    estimate_request_tokens,
    transcript_chars,
)
from memcompress.summarizers.carry import CarryVerdict, check_carry, dropped_values, repair_instruction

log = logging.getLogger(__name__)

TIME_LIMIT = "JobTimeout"  # CompactionRecord.error_class of a run stopped by its time limit
VERSION_CONFLICT = "VersionConflict"  # CompactionRecord.error_class of a fenced write that lost
USER_ERASED = "UserErased"  # CompactionRecord.error_class of a run whose user `forget` erased (not stored)
UNFOLDABLE_LOGGED = 20  # at most this many _ids of documents the fold cannot use, logged per run
CAP_PERIOD = timedelta(days=1)  # max_compactions_per_day counts the runs of this period


class CarryLoss(RejectedOutput):
    """An answer that drops what the summary so far carried: rejected like an unusable answer. The
    message names the kinds and counts of loss, never the values."""

    def __init__(self, verdict: CarryVerdict) -> None:
        super().__init__(f"the summary would lose what it carried: {verdict.reason}")
        self.verdict = verdict


class _Stop(Exception):
    """Ends a run early with an outcome other than "compressed"."""

    def __init__(self, outcome: Outcome, reason: str) -> None:
        super().__init__(reason)
        self.outcome = outcome
        self.reason = reason


async def run_compression(
    services: Services,
    user_id: str,
    *,
    time_limit_s: float | None = None,
    then: Callable[[CompactionRecord], Awaitable[None]] | None = None,
) -> CompactionRecord:
    """Compress ``user_id`` once; returns (and stores) the run's :class:`CompactionRecord`.

    ``time_limit_s`` stops the run between or inside chunks; chunks already stored and trimmed stay
    done, and the record says how many (``error_class`` "JobTimeout", retryable). ``then`` is called
    with the record once it is stored, still under the user's lock when the run took it: what the
    caller writes there (a dead letter, a re-check) is part of the run, and ``forget`` erases it.
    """
    record = CompactionRecord(
        user_id=user_id,
        outcome=Outcome.COMPRESSED,
        summarizer=services.summarizer.name,
        model=services.summarizer.model,
    )
    started = time.monotonic()
    stage = "lock"
    try:
        # Step 1: lock (held for the whole run, renewed in the background).
        async with services.locks.hold(user_id) as lock:
            stage = "fold"
            await _fold_within(services, user_id, lock, record, time_limit_s)
            # Step 8, while the lock is still held: `forget` waits for it, so it erases all of this.
            stage = "record"
            await _record(services, record, started, then)
            stage = "release"
    except LockBusy as busy:
        services.metrics.lock_contention.inc()
        record.outcome, record.reason = Outcome.BUSY, str(busy)
    except Exception as error:
        if stage == "release":  # recorded; the lock expires by itself
            log.warning("could not release a user's lock: %s", describe_error(error))
            return record
        if stage != "lock":
            raise  # from the caller's `then`
        _failed(record, error)  # Redis could not be asked for the lock
    else:
        return record
    # Step 8 for a run that holds no lock (busy, or the lock could not be taken).
    await _record(services, record, started, then)
    return record


async def _fold_within(
    services: Services, user_id: str, lock: HeldLock, record: CompactionRecord, time_limit_s: float | None
) -> None:
    """Steps 2-7 within the time limit; how they ended is written into ``record``."""
    timer = asyncio.timeout(time_limit_s)
    try:
        async with timer:
            await _fold(services, user_id, lock, record)
    except LockLost as lost:
        services.metrics.lock_lost.inc()
        record.outcome, record.reason, record.error_class = Outcome.CONFLICT, str(lost), "LockLost"
    except UserErased:
        _erased(record)
    except _Stop as stop:
        record.outcome, record.reason = stop.outcome, stop.reason
        record.error_class = VERSION_CONFLICT if stop.outcome is Outcome.CONFLICT else None
    except SummarizerError as error:
        record.outcome, record.reason = Outcome.FAILED, str(error)
        record.error_class, record.retryable = type(error).__name__, error.retryable
    except MalformedDocument as error:  # the profile: retrying cannot fix it, so no LLM call is spent
        log.warning("cannot compress a user: %s", error)
        record.outcome, record.reason = Outcome.FAILED, str(error)
        record.error_class, record.retryable = type(error).__name__, False
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


async def _record(
    services: Services,
    record: CompactionRecord,
    started: float,
    then: Callable[[CompactionRecord], Awaitable[None]] | None,
) -> None:
    """Step 8: the metrics and the record, then the caller's ``then``. A user with no events at all
    leaves no record (e.g. a job queued before `forget`), nor does a user erased meanwhile."""
    record.finished_at = utc_now()
    record.duration_s = time.monotonic() - started
    services.metrics.compressions.labels(outcome=record.outcome.value).inc()
    services.metrics.compression_duration.observe(record.duration_s)
    if not (
        record.error_class == USER_ERASED or (record.outcome is Outcome.SKIPPED and record.events_before == 0)
    ):
        try:
            await services.compaction_log.record(record)
        except UserErased:
            _erased(record)
        except Exception as error:
            log.error("could not store the compaction record: %s", format_exception(error))
    if then is not None:
        await then(record)


def _erased(record: CompactionRecord) -> None:
    """The user was erased (``memcompress forget``) during the run: it ends leaving nothing behind."""
    record.outcome, record.error_class, record.retryable = Outcome.SKIPPED, USER_ERASED, False
    record.reason = "the user was erased (memcompress forget); nothing of this run is kept"


def _failed(record: CompactionRecord, error: Exception) -> None:
    """A failure the run did not expect (a store or Redis error): described by class and code only,
    since a store error's text embeds the documents of the failed command (see memcompress.redaction)."""
    log.error("compression of user %s failed: %s", record.user_id, format_exception(error))
    record.outcome, record.reason = Outcome.FAILED, describe_error(error)
    record.error_class, record.retryable = type(error).__name__, True


@dataclass(frozen=True, slots=True)
class FoldDecision:
    """Step 3's decision, shared with dry runs: fold the ``to_fold`` oldest foldable events (0: none,
    and ``reason`` says why)."""

    limits: Limits
    overrides: UserOverrides | None
    recent: RecentHistory
    to_fold: int = 0
    reason: str = ""


async def read_user(services: Services, user_id: str) -> tuple[FoldState, RecentHistory]:
    """Step 2's reads, shared with dry runs (they create nothing): what the worker knows of the user,
    and the newest batch of its history with the sizes of the whole of it."""
    state = await services.profiles.find_for_fold(user_id, utc_now() - CAP_PERIOD)
    pending = state.profile.pending_trim if state.profile is not None else None
    recent = await read_history(services, user_id, state.overrides, pending.refs if pending else ())
    return state, recent


async def read_history(
    services: Services, user_id: str, overrides: UserOverrides | None, pending: Sequence[Any] = ()
) -> RecentHistory:
    """One batch of the newest documents, and at least the window the boundary is placed in."""
    limit = max(services.policy.batch_size, services.policy.limits(overrides).window_size())
    return await services.memory.recent_history(user_id, limit, pending)


def decide(services: Services, state: FoldState, recent: RecentHistory) -> FoldDecision:
    """Counts only foldable events (pinned ones and documents the fold must skip never make a user look
    over the threshold), keeps tool exchanges whole (see :mod:`memcompress.jobs.boundary`), folds no
    fewer than ``min_fold`` events and compresses a user at most ``max_compactions_per_day`` times."""
    limits = services.policy.limits(state.overrides)
    size = recent.size
    decision = FoldDecision(limits, state.overrides, recent)
    if not limits.over_trigger(size.events, size.chars):
        tokens = f" or {limits.trigger_tokens} tokens" if limits.trigger_tokens else ""
        return replace(
            decision, reason=f"not over the threshold of {limits.threshold} foldable events{tokens}"
        )
    # With the whole history in hand, the events there are what can be folded; else the count says.
    foldable = len(recent.events) if recent.complete else size.events
    to_fold = events_to_fold(foldable, [stored.event for stored in recent.events], limits)
    if to_fold < limits.smallest_fold:
        return replace(
            decision, reason=f"would fold {to_fold} events, fewer than the minimum of {limits.smallest_fold}"
        )
    cap = services.policy.max_compactions_per_day
    if state.compressions >= cap:
        services.metrics.compaction_cap_hits.inc()
        return replace(decision, reason=f"compressed {cap} times in 24 hours already")
    return replace(decision, to_fold=to_fold)


def chunks_to_fold(
    services: Services, user_id: str, decision: FoldDecision
) -> AsyncIterator[list[StoredEvent]]:
    """Steps 3 and 4 as a stream, shared with dry runs: the ``to_fold`` oldest events, oldest first, in
    chunks that each fit one summariser request; from step 2's batch when it holds the whole history."""
    policy = services.policy
    if decision.recent.complete:
        stream = _each(decision.recent.events[: decision.to_fold])
    else:
        stream = services.memory.iter_oldest(
            user_id, max_documents=decision.to_fold, batch_size=policy.batch_size
        )
    return chunk_events(stream, policy.chunk_chars, policy.batch_size)


async def _each(events: Sequence[StoredEvent]) -> AsyncIterator[StoredEvent]:
    for stored in events:
        yield stored


def summary_request(
    policy: FoldPolicy,
    summary: str | None,
    chunk: Sequence[StoredEvent],
    language: str,
    model: str | None = None,
) -> SummaryRequest:
    """Step 5's request: the summary so far and one chunk (``model``: a per-user model, if any)."""
    return SummaryRequest(summary, [s.event for s in chunk], language, policy.summary_max_chars, model)


async def _fold(services: Services, user_id: str, lock: HeldLock, record: CompactionRecord) -> None:
    # Step 2: read (creating nothing), and finish a trim an earlier run left if it may be unfinished.
    state, recent = await read_user(services, user_id)
    profile = state.profile
    pending = profile.pending_trim if profile is not None else None
    if pending is not None and recent.pending_stored and await _trim(services, user_id, pending.refs):
        recent = await read_history(services, user_id, state.overrides)
    if profile is not None and _overwritten(profile):
        await lock.ensure_held()
        profile = await _repair_summary(services, profile, record)

    # Step 3: decide what to fold.
    record.events_before = recent.size.stored
    decision = decide(services, state, recent)
    await _report_unfoldable(services, user_id, record, recent)
    if decision.to_fold <= 0:
        raise _Stop(Outcome.SKIPPED, decision.reason)
    create = profile is None  # the first summary write creates the profile
    current = profile or UserProfile.new(user_id)
    record.summary_chars_before = len(current.memory_summary or "")
    record.summary_version = current.summary_version

    summary, version, watermark = current.memory_summary, current.summary_version, current.watermark
    overrides = decision.overrides or UserOverrides()
    language = (
        overrides.language or (profile.language if profile else None) or services.policy.default_language
    )
    record.model = overrides.model or record.model
    trimmed = 0
    # Step 4: chunk.
    async for chunk in chunks_to_fold(services, user_id, decision):
        # Step 5: summarise the chunk together with the summary so far.
        request = summary_request(services.policy, summary, chunk, language, overrides.model)
        summary = await _carried(services, request, record)

        # Step 6: store, conditional on the version read before (fencing).
        await lock.ensure_held()
        watermark = _newest(watermark, chunk)
        refs = [s.ref for s in chunk]
        won = await services.profiles.update_summary_if_version(
            user_id,
            expected_version=version,
            summary=summary,
            watermark=watermark,
            folded_refs=refs,
            profile_ref=current.ref,
            create=create,
        )
        if not won:
            services.metrics.version_conflicts.inc()
            raise _Stop(Outcome.CONFLICT, f"summary version moved past {version}; nothing trimmed")
        version, create = version + 1, False

        # Step 7: trim exactly what was summarised (the mark stays; see the module's step 7).
        trimmed += await _trim(services, user_id, refs)
        _count_chunk(services, record, len(chunk), summary, version)

    if record.chunks == 0:
        raise _Stop(Outcome.SKIPPED, "no well-formed events to fold")
    record.events_after = record.events_before - trimmed


async def summarise_carried(
    request: SummaryRequest, summarize: Callable[[SummaryRequest], Awaitable[SummaryResult]]
) -> tuple[str, CarryVerdict]:
    """Step 5 with its carry guard (shared with ``memcompress replay``): the answer and its verdict if it
    carries the summary so far, after at most one repair request naming what it dropped; else
    :class:`CarryLoss`."""
    result = await summarize(request)
    verdict = check_carry(request.previous_summary, result.text, max_chars=request.max_chars)
    missing = [] if verdict.ok else dropped_values(request.previous_summary, result.text)
    if missing:
        result = await summarize(replace(request, repair_note=repair_instruction(missing)))
        verdict = check_carry(request.previous_summary, result.text, max_chars=request.max_chars)
    if not verdict.ok:
        raise CarryLoss(verdict)
    return result.text, verdict


async def _carried(services: Services, request: SummaryRequest, record: CompactionRecord) -> str:
    """The fold's step 5: the guarded summary, with rejections and budget drops counted."""
    try:
        text, verdict = await summarise_carried(request, lambda r: _summarize(services, r, record))
    except CarryLoss as loss:
        for kind in loss.verdict.dropped or {"shrunk": 1}:
            services.metrics.carry_rejections.labels(loss=kind).inc()
        raise
    if verdict.dropped:  # at its budget: a recorded decision
        dropped = sum(verdict.dropped.values())
        record.values_dropped += dropped
        services.metrics.values_dropped.inc(dropped)
    return text


def _overwritten(profile: UserProfile) -> bool:
    """The app replaced the summary the worker stored (it has the worker's copy to compare with)."""
    return profile.summary_copy is not None and profile.memory_summary != profile.summary_copy


async def _repair_summary(services: Services, profile: UserProfile, record: CompactionRecord) -> UserProfile:
    """Step 2's repair: the worker's last summary back, with the app's text kept when it is new."""
    ours, theirs = profile.summary_copy or "", (profile.memory_summary or "").strip()
    if not theirs or summary_hash(theirs) in profile.summary_history or theirs in ours:
        action, repaired = "restored", ours
    else:
        action, repaired = "merged", f"{ours}\n{theirs}"
    won = await services.profiles.update_summary_if_version(
        profile.user_id,
        expected_version=profile.summary_version,
        summary=repaired,
        watermark=profile.watermark,
        folded_refs=[],
        profile_ref=profile.ref,
    )
    if not won:
        services.metrics.version_conflicts.inc()
        raise _Stop(
            Outcome.CONFLICT, f"summary version moved past {profile.summary_version}; nothing repaired"
        )
    services.metrics.summary_overwrites.labels(action=action).inc()
    log.warning("the app had overwritten a user's summary; %s it (user_id=%s)", action, profile.user_id)
    record.summary_repaired = action
    return profile.model_copy(
        update={
            "memory_summary": repaired,
            "summary_copy": repaired,
            "summary_version": profile.summary_version + 1,
        }
    )


async def _report_unfoldable(
    services: Services, user_id: str, record: CompactionRecord, recent: RecentHistory
) -> None:
    """Once per run: how many of the user's documents the fold cannot use (pinned ones aside), and some
    of their ``_id``s."""
    record.unfoldable = recent.size.unfoldable
    if record.unfoldable:
        refs = await services.memory.unfoldable_refs(user_id, UNFOLDABLE_LOGGED)
        log.warning(
            "user_id=%s has %d documents that cannot be folded (kept, not counted): _id=%s",
            user_id,
            record.unfoldable,
            ", ".join(repr(ref) for ref in refs),
        )


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


async def _summarize(services: Services, request: SummaryRequest, record: CompactionRecord) -> SummaryResult:
    name = services.summarizer.name
    budget = services.llm_budget
    permit = None
    if budget is not None:  # wait for the shared budget; the run's time limit cuts the wait short
        estimate = estimate_request_tokens(request)
        permit = await budget.acquire(estimate.prompt + estimate.completion_max)
        if permit.waited_s:
            services.metrics.llm_rate_limited.inc(permit.waited_s)
            log.debug("waited %.2fs for the LLM budget (%d tokens reserved)", permit.waited_s, permit.tokens)
    services.metrics.llm_requests.labels(summarizer=name).inc()
    record.llm_calls += 1
    started = time.monotonic()
    try:
        result = await services.summarizer.summarize(request)
    except SummarizerError as error:
        services.metrics.llm_failures.labels(summarizer=name, error_class=error.kind).inc()
        raise
    finally:
        services.metrics.llm_duration.labels(summarizer=name).observe(time.monotonic() - started)
    if result.prompt_tokens is not None:
        record.prompt_tokens = (record.prompt_tokens or 0) + result.prompt_tokens
        services.metrics.llm_tokens.labels(summarizer=name, kind="prompt").inc(result.prompt_tokens)
    if result.completion_tokens is not None:
        record.completion_tokens = (record.completion_tokens or 0) + result.completion_tokens
        services.metrics.llm_tokens.labels(summarizer=name, kind="completion").inc(result.completion_tokens)
    if budget is not None and permit is not None and result.prompt_tokens is not None:  # give back unused
        await budget.settle(permit, result.prompt_tokens + (result.completion_tokens or 0))
    return result


async def _trim(services: Services, user_id: str, refs: Sequence[Any]) -> int:
    """Delete or archive exactly ``refs``; returns how many were still stored."""
    retention = services.policy.retention
    if retention == "archive":
        trimmed = await services.memory.archive_by_refs(user_id, refs)
    else:
        trimmed = await services.memory.delete_by_refs(user_id, refs)
    services.metrics.events_trimmed.labels(retention=retention).inc(trimmed)
    return trimmed


def _newest(watermark: Watermark | None, chunk: Sequence[StoredEvent]) -> Watermark:
    last = max(chunk, key=lambda s: (s.event.created_at, str(s.event.event_id))).event
    candidate = Watermark(created_at=last.created_at, event_id=last.event_id)
    if watermark is not None and watermark.created_at > candidate.created_at:
        return watermark
    return candidate


def _count_chunk(
    services: Services, record: CompactionRecord, folded: int, summary: str, version: int
) -> None:
    services.metrics.events_folded.inc(folded)
    record.chunks += 1
    record.events_folded += folded
    record.summary_chars_after = len(summary)
    record.summary_version = version
