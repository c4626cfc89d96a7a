"""One user compressed now, without the queue (``memcompress compress``, ``run-once``), within the same
time limit as a queued job.

Every run stops itself at ``MEMCOMPRESS_JOB_TIMEOUT_S``, wherever it was started: the erase fence
relies on it (a ``forget``'s tombstone outlasts every job that started before it, see
:mod:`memcompress.jobs.forget`). A run stopped there after finishing chunks is continued in a fresh
run, as a queued job is: the fresh run decides afresh, so it goes on while the user is still over the
threshold, and one command still compresses a long history.
"""

from __future__ import annotations

from memcompress.jobs.compress import TIME_LIMIT, run_compression
from memcompress.jobs.services import Services
from memcompress.models import CompactionRecord, Outcome


async def compress_now(services: Services, user_id: str) -> CompactionRecord:
    """Compress ``user_id`` in as many time-limited runs as it takes; the last run's record, with the
    counts of all of them (each run also stored its own record)."""
    limit_s = services.job_policy.job_timeout_s
    first = last = await run_compression(services, user_id, time_limit_s=limit_s)
    folded, chunks, calls = first.events_folded, first.chunks, first.llm_calls
    while last.error_class == TIME_LIMIT and last.chunks > 0:
        last = await run_compression(services, user_id, time_limit_s=limit_s)
        folded, chunks, calls = folded + last.events_folded, chunks + last.chunks, calls + last.llm_calls
    if last is first:
        return last
    update: dict[str, object] = {
        "events_before": first.events_before,
        "events_folded": folded,
        "chunks": chunks,
        "llm_calls": calls,
        "started_at": first.started_at,
    }
    if last.outcome is Outcome.SKIPPED and last.error_class is None:  # the earlier runs did the work
        update |= {"outcome": Outcome.COMPRESSED, "reason": None, "events_after": last.events_before}
    return last.model_copy(update=update)
