"""What an operator reads about the queue and one user, for ``memcompress user``, ``queue list`` and the
read-only web pages (:mod:`memcompress.web`) alike: both call these functions, so they show the same.

What is guaranteed:

- Reads only: nothing is created or changed (the fold's own reads and decision are reused, and they
  create nothing).
- No message content and no summary text, except :func:`inspect_user` with ``show_summary`` (the CLI's
  ``--show-summary``; the web pages never ask for it). Reasons and errors are the ones the records hold,
  written by :func:`memcompress.redaction.describe_error`.
- A user of whom nothing is stored (no document in any of the user's collections, no job, request,
  lock or erase tombstone) is reported as unknown (None), never as an empty user.
"""

from __future__ import annotations

from typing import Any

from memcompress.jobs.compress import decide, read_user
from memcompress.jobs.services import Services
from memcompress.jobs.status import queue_report, store_report
from memcompress.models import CompactionRecord, iso_utc
from memcompress.repositories.protocols import CompactionLog, QueueAdmin

UNKNOWN_USER = "nothing stored for this id — check the id"
RUNS_SHOWN = 10
RUN_FIELDS = {
    "finished_at",
    "outcome",
    "reason",
    "error_class",
    "events_folded",
    "llm_calls",
    "prompt_tokens",
    "completion_tokens",
    "duration_s",
    "values_patched",
    "answers_rejected",
}


def run_line(record: CompactionRecord) -> dict[str, Any]:
    """One compaction record as shown: its outcome and counts, never a summary."""
    return record.model_dump(mode="json", include=RUN_FIELDS)


def last_error(runs: list[CompactionRecord]) -> dict[str, Any] | None:
    """The newest run's error, when the newest run did not get done (else None)."""
    if not runs or not runs[0].failed:
        return None
    newest = runs[0]
    return {"error_class": newest.error_class, "reason": newest.reason, "at": iso_utc(newest.finished_at)}


async def inspect_user(
    services: Services,
    user_id: str,
    *,
    archive: str,
    runs: int = RUNS_SHOWN,
    show_summary: bool = False,
) -> dict[str, Any] | None:
    """Everything the worker knows of one user, or None when nothing is stored for it. ``archive``:
    the name of the archive collection (``StoreLayout.archive``), counted for ``events.archived``."""
    documents = await services.maintenance.count_user_data(user_id)
    queue = await services.queue_admin.user_job(user_id)
    lock = await services.locks.holder(user_id)
    erased = await services.erasures.erased(user_id)
    if (
        not any(documents.values())
        and not erased
        and lock is None
        and queue
        == {
            "job": None,
            "request_due_at": None,
        }
    ):
        return None
    state, recent = await read_user(services, user_id)
    decision = decide(services, state, recent)
    profile = state.profile
    letter = await services.dead_letters.find(user_id)
    records = await services.compaction_log.recent(runs, user_id)
    report: dict[str, Any] = {
        "user_id": user_id,
        "profile": None
        if profile is None
        else {
            "summary_version": profile.summary_version,
            "summary_chars": len(profile.memory_summary or ""),
            "language": profile.language,
            "events_summarized": profile.events_summarized,
            "updated_at": iso_utc(profile.updated_at) if profile.updated_at else None,
        },
        "overrides": state.overrides.model_dump(exclude_none=True) if state.overrides else {},
        "erased": erased,
        "parked": decision.reason if decision.parked else None,
        "events": {
            "stored": recent.size.stored,
            "archived": documents.get(archive, 0),
            "foldable": recent.size.events,
            "pinned": recent.size.pinned,
            "unfoldable": recent.size.unfoldable,
            "would_fold_now": decision.to_fold,
            "why_not": decision.reason or None,
        },
        "lock": lock,
        "job": queue["job"],
        "request_due_at": queue["request_due_at"],
        "last_error": last_error(records),
        "dead_letter": None if letter is None else letter.model_dump(mode="json", exclude={"user_id"}),
        "compactions": [run_line(record) for record in records],
    }
    if show_summary:
        report["summary"] = profile.memory_summary if profile else None
    return report


async def queued_jobs(queue: QueueAdmin, log: CompactionLog | None, limit: int) -> list[dict[str, Any]]:
    """The queued jobs (:meth:`QueueAdmin.jobs`), each with its user's last error from the compaction
    log (None when its newest run got done; left out without a log: MongoDB unreachable)."""
    jobs = await queue.jobs(limit)
    if log is not None:
        for job in jobs:
            job["last_error"] = last_error(await log.recent(1, job["user_id"]))
    return jobs


async def overview(services: Services) -> dict[str, Any]:
    """``memcompress status``'s report: the queue's part and the store's."""
    return await queue_report(services.queue_admin, services.locks) | await store_report(services)
