"""The arq functions. Jobs carry only ids; their services come from ``ctx["services"]``, which the
worker's ``on_startup`` builds (:mod:`memcompress.worker.lifecycle`). The decisions are the use
case's (:mod:`memcompress.jobs.queued`); this module only speaks arq."""

from __future__ import annotations

import logging
import time
from typing import Any

from arq import Retry

from memcompress.jobs import Services, recheck_after_job, run_queued_compression, scan_and_enqueue
from memcompress.keys import user_from_job_id
from memcompress.logs import set_job

log = logging.getLogger(__name__)

SCAN_FUNCTION = "scan_and_enqueue"
# Set in a job's ctx when it ended without compressing its user: the worker counts it in arq's j_failed.
JOB_FAILED = "memcompress_job_failed"


async def on_job_start(ctx: dict[str, Any]) -> None:
    """arq's ``on_job_start`` runs in the task that then logs the job's start, runs it (in a task that
    inherits the context) and logs its end: every line of the job names its user and job id."""
    services: Services = ctx["services"]
    set_job(user_id=user_from_job_id(ctx["job_id"], services.queue.name), job_id=ctx["job_id"])


async def compress_user(ctx: dict[str, Any], user_id: str) -> dict[str, Any]:
    """One try of a user's compression. Its last line carries the try's fields (``outcome``,
    ``duration_s``, ``events_folded``, ``llm_calls``, ``job_try``; JSON lines add ``pid`` and ``host``)."""
    ctx["user_id"] = user_id  # for the trailing re-check after the job (after_job_end)
    started = time.monotonic()
    decision = await run_queued_compression(ctx["services"], user_id, ctx.get("job_try", 1))
    fields = decision.result | {
        "duration_s": round(time.monotonic() - started, 3),
        "job_try": ctx.get("job_try", 1),
    }
    if decision.retry_in_s is not None:
        log.info("compression job to be tried again in %.1fs", decision.retry_in_s, extra=fields)
        raise Retry(defer=decision.retry_in_s)
    ctx[JOB_FAILED] = decision.failed
    log.info("compression job ended: %s", fields.get("outcome"), extra=fields)
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
