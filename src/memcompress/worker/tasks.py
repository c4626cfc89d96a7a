"""The arq functions. Jobs carry only ids; their services come from ``ctx["services"]``, which the
worker's ``on_startup`` builds (:mod:`memcompress.worker.lifecycle`). The decisions are the use
case's (:mod:`memcompress.jobs.queued`); this module only speaks arq."""

from __future__ import annotations

from typing import Any

from arq import Retry

from memcompress.jobs import Services, recheck_after_job, run_queued_compression, scan_and_enqueue
from memcompress.keys import user_from_job_id
from memcompress.logs import set_job

SCAN_FUNCTION = "scan_and_enqueue"


async def on_job_start(ctx: dict[str, Any]) -> None:
    """arq's ``on_job_start`` runs in the task that then logs the job's start, runs it (in a task that
    inherits the context) and logs its end: every line of the job names its user and job id."""
    services: Services = ctx["services"]
    set_job(user_id=user_from_job_id(ctx["job_id"], services.queue.name), job_id=ctx["job_id"])


async def compress_user(ctx: dict[str, Any], user_id: str) -> dict[str, Any]:
    ctx["user_id"] = user_id  # for the trailing re-check after the job (after_job_end)
    decision = await run_queued_compression(ctx["services"], user_id, ctx.get("job_try", 1))
    if decision.retry_in_s is not None:
        raise Retry(defer=decision.retry_in_s)
    return decision.result


async def after_job_end(ctx: dict[str, Any]) -> None:
    """arq's ``after_job_end``: by now arq has removed the finished job (or re-queued a retried one), so a
    new one is accepted."""
    user_id = ctx.get("user_id")
    if user_id is not None:  # a compression job, not the scan
        await recheck_after_job(ctx["services"], user_id)


async def scheduled_scan(ctx: dict[str, Any]) -> dict[str, Any]:
    """The cron job: queue every user over the threshold."""
    services: Services = ctx["services"]
    result = await scan_and_enqueue(services, limit=services.job_policy.scan_limit)
    services.metrics.jobs.labels(function=SCAN_FUNCTION, status="complete").inc()
    return result.summary()
