"""Compress one user's memory: fold the older events into the running summary, then trim them.

The invariant every step keeps:

    every event ever appended is, at every moment, either still stored or inside the stored summary.

And its twin, the liveness property:

    a user over the threshold is, within a bounded number of runs after its last event, either under
    the threshold or parked with one actionable reason; no message is sent to the LLM as a new event
    twice; the LLM requests per user are bounded by configuration.

How the steps keep them:

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
   than ``min_fold`` events, or past the daily cap, is skipped before any LLM call. A user whose runs
   made ``max_llm_calls_per_user_day`` LLM requests in 24 hours is parked (no request); each run since
   the user's newest event whose answers were rejected halves this run's chunk, and below the smallest
   chunk the user is parked: a failed request is never sent again unchanged.
4. Chunk. Cut the stream into chunks that fit one summariser request (and this process's learned
   context limit). A chunk the server refuses as over its context is halved; one event larger than a
   request is summarised in parts, in order, and folded with its last part.
5. Summarise each chunk together with the summary so far (each chunk's output feeds the next), under
   the answer guard (:mod:`memcompress.summarizers.guard`). An answer that is no summary (markup, code,
   an echo of the prompt, invented values, the wrong language, cut off, ...) gets one repair request;
   if that one is none either, the run stops here and nothing of the chunk is trimmed. Every concrete
   value of the summary so far and of the folded events (numbers, dates, times, codes, e-mails, URLs,
   names, in any honest form) must be carried unless a later event corrects it; an answer that drops
   some gets the repair request, and what is still missing is patched in from its source sentences
   within the budget (a value that does not fit is a recorded drop, never a silent one). A summary
   over its budget is first shortened, the lines it gives up archived.
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
   ``forget`` (which takes the lock) erases the record too; what the caller writes after the run (a
   queued job's dead letter or re-check, :func:`compression`) is written then too, under the same
   lock, and the lock is released once the caller is done. A run whose user was erased meanwhile
   leaves nothing: every write that could create a document of the user undoes itself then (the
   erase fence, see :mod:`memcompress.jobs.forget`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from memcompress.jobs.fold_policy import FoldPolicy, Limits, events_to_fold
from memcompress.jobs.services import Services
from memcompress.models import (
    CompactionRecord,
    FoldState,
    Outcome,
    PendingTrim,
    RecentHistory,
    StoredEvent,
    UserOverrides,
    UserProfile,
    Watermark,
    summary_hash,
    utc_now,
)
from memcompress.redaction import describe_error, format_exception
from memcompress.repositories.errors import HistoryChanged, LockBusy, LockLost, MalformedDocument, UserErased
from memcompress.repositories.protocols import HeldLock
from memcompress.summarizers.base import (
    ContextOverflow,
    RejectedOutput,
    SummarizerError,
    SummaryRequest,
    SummaryResult,
    estimate_request_tokens,
    transcript_chars,
)
from memcompress.summarizers.guard import (
    FIT_RATIO,
    Rejection,
    at_budget,
    carry_repair_instruction,
    fit_summary,
    judge_answer,
    missing_values,
    patch_summary,
    required_values,
    shape_repair_instruction,
    shrunk,
    usable_draft,
)

log = logging.getLogger(__name__)

TIME_LIMIT = "JobTimeout"  # CompactionRecord.error_class of a run stopped by its time limit
VERSION_CONFLICT = "VersionConflict"  # CompactionRecord.error_class of a fenced write that lost
USER_ERASED = "UserErased"  # CompactionRecord.error_class of a run whose user `forget` erased (not stored)
PARKED = "Parked"  # CompactionRecord.error_class of a run that may make no LLM request (see decide)
HISTORY_CHANGED = (
    "another program removed or reordered summarised messages before they were cut: nothing was cut, and "
    "the next run summarises what is still stored again"
)
UNFOLDABLE_LOGGED = 20  # at most this many _ids of documents the fold cannot use, logged per run
CAP_PERIOD = timedelta(days=1)  # max_compactions_per_day counts the runs of this period


MIN_PART_CHARS = 500  # an event is never split into parts smaller than this; nor a chunk halved below it
TRANSCRIPT_LINE_OVERHEAD = 200  # what a transcript line may add to its text (date, role, quoting)
TRANSCRIPT_LINE_CHARS = 60  # what it adds to a short line, as a rule


class RejectedAnswer(RejectedOutput):
    """An answer that is not a summary, also after its repair request. The message names the check and
    counts, never the answer."""

    def __init__(self, rejection: Rejection, checks: Sequence[str]) -> None:
        super().__init__(f"the answer is not a summary: {rejection.reason}", check=rejection.check)
        self.checks = tuple(checks)  # of every answer rejected on the way, this one's last


class _Stop(Exception):
    """Ends a run early with an outcome other than "compressed"."""

    def __init__(self, outcome: Outcome, reason: str) -> None:
        super().__init__(reason)
        self.outcome = outcome
        self.reason = reason


async def run_compression(
    services: Services, user_id: str, *, time_limit_s: float | None = None
) -> CompactionRecord:
    """Compress ``user_id`` once; returns (and stores) the run's :class:`CompactionRecord`.

    ``time_limit_s`` stops the run between or inside chunks; chunks already stored and trimmed stay
    done, and the record says how many (``error_class`` "JobTimeout", retryable).
    """
    async with compression(services, user_id, time_limit_s=time_limit_s) as record:
        return record


@contextlib.asynccontextmanager
async def compression(
    services: Services, user_id: str, *, time_limit_s: float | None = None
) -> AsyncIterator[CompactionRecord]:
    """Steps 1-8 for ``user_id`` (see :func:`run_compression`); the ``async with`` block gets the stored
    record while the run still holds the user's lock, when it took it: what the caller writes there
    (a dead letter, a re-check) is part of the run, and ``forget`` erases it."""
    record = CompactionRecord(
        user_id=user_id,
        outcome=Outcome.COMPRESSED,
        summarizer=services.summarizer.name,
        model=services.summarizer.model,
    )
    started = time.monotonic()
    async with contextlib.AsyncExitStack() as run:
        # Step 1: lock (held until the caller's block has ended, renewed in the background).
        lock = await _lock(services, run, record)
        if lock is not None:
            # Steps 2-7, within the time limit; how they ended is written into the record.
            await _fold_within(services, user_id, lock, record, time_limit_s)
        # Step 8, under the lock when the run took it: `forget` waits for it, so it erases all of this,
        # and what the caller writes in its block too.
        await _record(services, record, started)
        yield record


async def _lock(
    services: Services, run: contextlib.AsyncExitStack, record: CompactionRecord
) -> HeldLock | None:
    """Step 1: the user's lock for the rest of the ``run``, without waiting; None when another holder
    has it (busy) or Redis could not be asked for it (failed), as the record then says."""
    try:
        return await run.enter_async_context(_LeftToExpire(services.locks.hold(record.user_id)))
    except LockBusy as busy:
        services.metrics.lock_contention.inc()
        record.outcome, record.reason = Outcome.BUSY, str(busy)
    except Exception as error:
        _failed(record, error)
    return None


class _LeftToExpire:
    """A held lock whose release may fail (Redis away): the run has been recorded, and the lock expires
    by itself, so the failure is logged, not raised. What the caller's block raises is raised."""

    def __init__(self, hold: AbstractAsyncContextManager[HeldLock]) -> None:
        self._hold = hold

    async def __aenter__(self) -> HeldLock:
        return await self._hold.__aenter__()

    async def __aexit__(self, *raised: Any) -> None:
        try:
            await self._hold.__aexit__(*raised)
        except Exception as error:
            if error is raised[1]:
                raise
            log.warning("could not release a user's lock: %s", describe_error(error))


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
        record.error_class = {Outcome.CONFLICT: VERSION_CONFLICT, Outcome.PARKED: PARKED}.get(stop.outcome)
        record.retryable = False if stop.outcome is Outcome.PARKED else record.retryable
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


async def _record(services: Services, record: CompactionRecord, started: float) -> None:
    """Step 8: the metrics and the record. A user with no events at all leaves no record (e.g. a job
    queued before `forget`), nor does a user erased meanwhile."""
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
    parked: bool = False  # ``reason`` is why no LLM request may be made for the user now
    chunk_chars: int = 0  # the transcript characters of one request (smaller after rejected answers)
    calls_left: int = 0  # LLM requests this run may make (the per-user daily budget)


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
    over the threshold), keeps tool exchanges whole (see :mod:`memcompress.jobs.fold_policy`), folds no
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
    calls = services.policy.calls_per_day(state.overrides)
    if state.llm_calls >= calls:
        return replace(
            decision,
            parked=True,
            reason=f"parked: {state.llm_calls} LLM requests in 24 hours reached the per-user budget of {calls} "
            "(MEMCOMPRESS_MAX_LLM_CALLS_PER_USER_DAY, or `memcompress override USER --max-llm-calls N`); "
            "it resumes as the requests age out of the 24 hours",
        )
    # Each run whose answers were rejected since the user's newest event halves the next one's chunk
    # (from what this history would send at most): a failed request is never sent again unchanged.
    newest = recent.events[-1].event.created_at if recent.events else None
    rejected = sum(newest is None or at >= newest for at in state.rejected_since_compressed)
    whole = to_fold * (size.chars // max(size.events, 1) + TRANSCRIPT_LINE_CHARS)
    chunk_chars = services.context.cap(services.policy.chunk_chars)
    chunk_chars = min(chunk_chars, whole) >> rejected if rejected else chunk_chars
    if chunk_chars < MIN_PART_CHARS:
        return replace(
            decision,
            parked=True,
            reason=f"parked: the summariser's answers were rejected in {rejected} runs in a row, down to "
            "the smallest chunk; check the model and the answers' rejection checks (memcompress status), "
            "then `memcompress dead retry USER` (new events of the user also retry it)",
        )
    return replace(decision, to_fold=to_fold, chunk_chars=chunk_chars, calls_left=calls - state.llm_calls)


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
    return chunk_events(stream, decision.chunk_chars, policy.batch_size)


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
    if pending is not None and recent.pending_stored and await _finish_trim(services, user_id, pending):
        recent = await read_history(services, user_id, state.overrides)
    if profile is not None and _overwritten(profile):
        await lock.ensure_held()
        profile = await _repair_summary(services, profile, record)

    # Step 3: decide what to fold.
    record.events_before = recent.size.stored
    decision = decide(services, state, recent)
    await _report_unfoldable(services, user_id, record, recent)
    if decision.parked:
        raise _Stop(Outcome.PARKED, decision.reason)
    if decision.to_fold <= 0:
        raise _Stop(Outcome.SKIPPED, decision.reason)
    create = profile is None  # the first summary write creates the profile
    current = profile or UserProfile.new(user_id)
    record.summary_chars_before = len(current.memory_summary or "")
    record.summary_version = current.summary_version

    summary, version, watermark = current.memory_summary, current.summary_version, current.watermark
    stored = summary  # the summary as stored: a write lands only over it (an app's save() makes it lose)
    summary = await _within_budget(services, user_id, summary, record)
    overrides = decision.overrides or UserOverrides()
    language = (
        overrides.language or (profile.language if profile else None) or services.policy.default_language
    )
    record.model = overrides.model or record.model
    trimmed = 0
    # Step 4: chunk (a piece that overflows the LLM's context is split and its parts come first).
    async for chunk in chunks_to_fold(services, user_id, decision):
        pieces = deque([chunk])
        while pieces:
            piece = pieces.popleft()
            limit = services.context.cap(decision.chunk_chars)
            if len(piece) > 1 and _transcript_size(piece) > limit:
                pieces.extendleft(reversed(_halves(piece)))  # the context limit was lowered meanwhile
                continue
            # Step 5: summarise the piece together with the summary so far.
            try:
                summary = await _summarise_piece(
                    services,
                    summary,
                    piece,
                    limit,
                    language,
                    overrides.model,
                    _Calls(record, decision.calls_left),
                )
            except ContextOverflow as overflow:
                pieces.extendleft(reversed(_smaller(services, piece, overflow)))
                continue

            # Step 6: store, conditional on the version read before (fencing).
            await lock.ensure_held()
            watermark = _newest(watermark, piece)
            refs = [s.ref for s in piece]
            won = await services.profiles.update_summary_if_version(
                user_id,
                expected_version=version,
                summary=summary,
                watermark=watermark,
                folded_refs=refs,
                profile_ref=current.ref,
                create=create,
                expected_summary=stored,
            )
            if not won:
                services.metrics.version_conflicts.inc()
                raise _Stop(Outcome.CONFLICT, f"summary version moved past {version}; nothing trimmed")
            version, create, stored = version + 1, False, summary

            # Step 7: trim exactly what was summarised (the mark stays; see the module's step 7).
            try:
                trimmed += await _trim(services, user_id, refs)
            except HistoryChanged:
                await services.profiles.clear_pending_trim(user_id, version)
                raise _Stop(Outcome.CONFLICT, HISTORY_CHANGED) from None
            _count_chunk(services, record, len(piece), summary, version)

    if record.chunks == 0:
        raise _Stop(Outcome.SKIPPED, "no well-formed events to fold")
    record.events_after = record.events_before - trimmed


@dataclass(frozen=True, slots=True)
class GuardedSummary:
    """Step 5's result: the summary to store, and what the guard did on the way (counts only)."""

    text: str
    rejected: tuple[str, ...] = ()  # the checks of the answers rejected on the way
    repaired: bool = False  # a repair request was sent
    patched: int = 0  # values put back by appending their source sentences
    dropped: int = 0  # missing values whose sentences did not fit the budget
    unfit: tuple[str, ...] = ()  # those sentences, and the prose that gave way (user content: archive only)


async def summarise_guarded(
    request: SummaryRequest, summarize: Callable[[SummaryRequest], Awaitable[SummaryResult]]
) -> GuardedSummary:
    """Step 5 with the answer guard (shared with ``memcompress replay``, see
    :mod:`memcompress.summarizers.guard`): at most one repair request, then a deterministic patch.

    An answer cut off at ``max_tokens`` or over the budget is taken as its complete sentences (its
    draft) when they pass the shape checks. Any other answer that is not a summary (the shape checks)
    gets the repair request; if that answer is not one either (nor has a draft), :class:`RejectedAnswer`.
    An answer that drops values of the summary so far or of the folded events (or shrank) gets the
    repair request unless one was sent; whatever is still missing is patched in from its source
    sentences, within the budget. So an honest answer is never rejected for how it wrote a value, a
    model that writes too much still folds, and a dropped value never fails the run."""
    rejected: list[str] = []
    text, rejection = await _answer(request, summarize)
    repaired = False
    if rejection is not None:
        rejected.append(rejection.check)
        text = usable_draft(rejection, request.previous_summary, request.events, request.language)
    if text is None:
        assert rejection is not None
        repaired = True
        note = shape_repair_instruction(rejection, request.language)
        text, retried = await _answer(replace(request, repair_note=note), summarize)
        if retried is not None:
            rejected.append(retried.check)
            text = usable_draft(retried, request.previous_summary, request.events, request.language)
            if text is None:
                raise RejectedAnswer(retried, rejected)
    assert text is not None
    required = required_values(request.previous_summary, request.events)
    missing = missing_values(required, request.events, text)
    small = shrunk(request.previous_summary, text)
    if not repaired and (small or (missing and not at_budget(text, request.max_chars))):
        repaired = True
        note = carry_repair_instruction(missing, small)
        second, rejection = await _answer(replace(request, repair_note=note), summarize)
        if rejection is not None:
            rejected.append(rejection.check)
            second = usable_draft(rejection, request.previous_summary, request.events, request.language)
        if second is not None:
            again = missing_values(required, request.events, second)
            if len(again) <= len(missing):
                text, missing = second, again
    patched = patch_summary(text, missing, request.events, request.max_chars)
    return GuardedSummary(
        patched.text, tuple(rejected), repaired, patched.patched, patched.dropped, patched.unfit
    )


async def _answer(
    request: SummaryRequest, summarize: Callable[[SummaryRequest], Awaitable[SummaryResult]]
) -> tuple[str | None, Rejection | None]:
    """One request: the answer's text, or why it is not a summary."""
    try:
        result = await summarize(request)
    except RejectedOutput as error:
        return None, Rejection(error.check, str(error), error.draft)
    text = result.text.strip()
    return text, judge_answer(text, request.previous_summary, request.events, request.language)


@dataclass(frozen=True, slots=True)
class _Calls:
    """The run's record, and how many LLM requests the run may make in all (the per-user budget)."""

    record: CompactionRecord
    allowed: int


async def _guarded(services: Services, request: SummaryRequest, calls: _Calls) -> str:
    """The fold's step 5 for one request: the guarded summary, with what the guard did counted."""
    record = calls.record
    try:
        guarded = await summarise_guarded(request, lambda r: _summarize(services, r, calls))
    except RejectedAnswer as rejected:
        _count_rejections(services, record, rejected.checks)
        raise
    _count_rejections(services, record, guarded.rejected)
    record.values_patched += guarded.patched
    services.metrics.values_patched.inc(guarded.patched)
    if guarded.dropped:  # at its budget: a recorded decision
        record.values_dropped += guarded.dropped
        services.metrics.values_dropped.inc(guarded.dropped)
    if guarded.unfit:  # the sentences taken out or left out, kept in the archive
        await services.memory.archive_summary_lines(record.user_id, guarded.unfit)
        record.summary_lines_archived += len(guarded.unfit)
    return guarded.text


def _count_rejections(services: Services, record: CompactionRecord, checks: Sequence[str]) -> None:
    for check in checks:
        record.answers_rejected[check] = record.answers_rejected.get(check, 0) + 1
        services.metrics.answer_rejections.labels(check=check).inc()


async def _summarise_piece(
    services: Services,
    summary: str | None,
    piece: Sequence[StoredEvent],
    limit: int,
    language: str,
    model: str | None,
    calls: _Calls,
) -> str:
    """Step 5 for one piece: one request, or, for one event larger than a request may be (``limit``
    transcript characters), one request per part of it in order (each part's summary feeds the next;
    the event is stored as folded only with the last part, so it is trimmed only once all of it is
    inside the summary)."""
    if len(piece) > 1 or _transcript_size(piece) <= limit:
        request = summary_request(services.policy, summary, piece, language, model)
        return await _guarded(services, request, calls)
    event = piece[0].event
    rest = event.content
    while rest:
        part, rest = next_part(rest, max(limit - TRANSCRIPT_LINE_OVERHEAD, MIN_PART_CHARS))
        request = SummaryRequest(
            summary,
            [event.model_copy(update={"content": part})],
            language,
            services.policy.summary_max_chars,
            model,
        )
        try:
            summary = await _guarded(services, request, calls)
        except ContextOverflow as overflow:  # this part again, smaller; the parts before it are done
            limit = _lower_limit(services, len(part) + TRANSCRIPT_LINE_OVERHEAD, overflow)
            rest = part + rest
            continue
        calls.record.event_parts += 1
    assert summary is not None
    return summary


def next_part(text: str, max_chars: int) -> tuple[str, str]:
    """The first part of ``text`` of at most ``max_chars`` characters, cut after a sentence end, a
    newline or a space that falls in the part's last quarter (else mid-word), and the rest."""
    if len(text) <= max_chars:
        return text, ""
    window = text[:max_chars]
    cut = max(window.rfind(mark) for mark in (". ", "\n", "! ", "? ", "。"))
    if cut < max_chars * 3 // 4:
        cut = window.rfind(" ")
    cut = cut + 1 if cut >= max_chars * 3 // 4 else max_chars
    return text[:cut], text[cut:]


def _smaller(
    services: Services, piece: Sequence[StoredEvent], overflow: ContextOverflow
) -> list[list[StoredEvent]]:
    """After a context overflow: the piece as smaller pieces, and this process's chunks capped at half
    the size that overflowed (:class:`~memcompress.jobs.services.ContextLimit`). A piece that cannot be
    made smaller (one part of :data:`MIN_PART_CHARS`) fails with the overflow."""
    _lower_limit(services, _transcript_size(piece), overflow)
    return _halves(piece)


def _lower_limit(services: Services, chars: int, overflow: ContextOverflow) -> int:
    """This process's requests capped at half of ``chars``, which overflowed; the overflow raised
    again when that would be under :data:`MIN_PART_CHARS`."""
    limit = min(services.context.cap(services.policy.chunk_chars), chars) // 2
    if limit < MIN_PART_CHARS:
        raise overflow
    services.context.lower(limit)
    log.warning(
        "the LLM's context is too small for a request of %d transcript characters (%s); requests of at "
        "most %d characters from now on",
        chars,
        overflow,
        limit,
    )
    return limit


def _halves(piece: Sequence[StoredEvent]) -> list[list[StoredEvent]]:
    """Two pieces of about half the events each; one event stays one piece (it is then summarised in
    parts under the lowered limit)."""
    middle = len(piece) // 2
    return [list(piece[:middle]), list(piece[middle:])] if middle else [list(piece)]


def _transcript_size(piece: Sequence[StoredEvent]) -> int:
    return sum(transcript_chars(stored.event) for stored in piece)


async def _within_budget(
    services: Services, user_id: str, summary: str | None, record: CompactionRecord
) -> str | None:
    """A summary over its budget (a legacy app summary, a lowered SUMMARY_MAX_CHARS, a merge) is
    shortened to :data:`~memcompress.summarizers.guard.FIT_RATIO` of it before it is summarised on, the
    least informative lines first; they are archived first (a crash in between leaves a copy too many,
    never one too few). No summariser is then ever asked to keep more than its budget holds."""
    budget = services.policy.summary_max_chars
    if summary is None or len(summary) <= budget:
        return summary
    kept, removed = fit_summary(summary, int(budget * FIT_RATIO))
    await services.memory.archive_summary_lines(user_id, removed)
    record.summary_lines_archived += len(removed)
    log.info("a summary over its budget gave %d lines to the archive (user_id=%s)", len(removed), user_id)
    return kept


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
        repaired = await _within_budget(services, profile.user_id, repaired, record) or repaired
    won = await services.profiles.update_summary_if_version(
        profile.user_id,
        expected_version=profile.summary_version,
        summary=repaired,
        watermark=profile.watermark,
        folded_refs=[],
        profile_ref=profile.ref,
        expected_summary=profile.memory_summary,  # a second save() meanwhile makes the repair lose
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


async def _summarize(services: Services, request: SummaryRequest, calls: _Calls) -> SummaryResult:
    record = calls.record
    if record.llm_calls >= calls.allowed:  # the per-user budget: park before paying for more
        raise _Stop(
            Outcome.PARKED,
            f"parked: the run reached the per-user budget of LLM requests in 24 hours after {record.chunks} "
            "chunks (MEMCOMPRESS_MAX_LLM_CALLS_PER_USER_DAY); finished chunks are kept",
        )
    name = services.summarizer.name
    budget = services.llm_budget
    permit = None
    if budget is not None:  # wait for the shared budget; the run's time limit cuts the wait short
        estimate = estimate_request_tokens(request)
        permit = await budget.acquire(estimate.prompt + estimate.completion_max)
        if permit.waited_s:
            services.metrics.llm_rate_limited.inc(permit.waited_s)
            log.debug("waited %.2fs for the LLM budget (%d tokens reserved)", permit.waited_s, permit.tokens)
    started = time.monotonic()
    try:
        result = await services.summarizer.summarize(request)
    except SummarizerError as error:
        services.metrics.llm_failures.labels(summarizer=name, error_class=error.kind).inc()
        _count_usage(services, record, error.requests, error.prompt_tokens, error.completion_tokens)
        raise
    except asyncio.CancelledError:  # the run's time limit (or a shutdown) cut a request short: it was sent
        _count_usage(services, record, 1, None, None)  # (an offline summariser never awaits: never cut)
        raise
    finally:
        services.metrics.llm_duration.labels(summarizer=name).observe(time.monotonic() - started)
    _count_usage(services, record, result.requests, result.prompt_tokens, result.completion_tokens)
    if budget is not None and permit is not None and result.prompt_tokens is not None:  # give back unused
        await budget.settle(permit, result.prompt_tokens + (result.completion_tokens or 0))
    return result


def _count_usage(
    services: Services, record: CompactionRecord, requests: int, prompt: int | None, completion: int | None
) -> None:
    """Every request counts, answered or not, with the tokens the server reported for it."""
    name = services.summarizer.name
    if requests:
        services.metrics.llm_requests.labels(summarizer=name).inc(requests)
        record.llm_calls += requests
    if prompt is not None:
        record.prompt_tokens = (record.prompt_tokens or 0) + prompt
        services.metrics.llm_tokens.labels(summarizer=name, kind="prompt").inc(prompt)
    if completion is not None:
        record.completion_tokens = (record.completion_tokens or 0) + completion
        services.metrics.llm_tokens.labels(summarizer=name, kind="completion").inc(completion)


async def _finish_trim(services: Services, user_id: str, pending: PendingTrim) -> int:
    """Step 2: trim what an earlier run summarised but may not have trimmed. When another program has
    changed those events meanwhile (:class:`HistoryChanged`), the mark is dropped instead: what is
    still stored is summarised again by this run (repeated in the summary, never lost)."""
    try:
        return await _trim(services, user_id, pending.refs)
    except HistoryChanged:
        log.warning("user_id=%s: %s; its pending trim is dropped", user_id, HISTORY_CHANGED)
        await services.profiles.clear_pending_trim(user_id, pending.summary_version)
        return 1  # read the history again


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
