"""arq's worker settings, built from ours."""

from __future__ import annotations

from typing import Any

from arq import cron, func
from arq.connections import RedisSettings

from memcompress.bootstrap import REDIS_RETRY_ON, redis_retry, worker_health_check_key
from memcompress.keys import JOB_FUNCTION
from memcompress.settings import Settings
from memcompress.timing import ARQ_TIMEOUT_MARGIN_S, REDIS_RETRIES
from memcompress.worker.lifecycle import lifecycle_hooks
from memcompress.worker.tasks import SCAN_FUNCTION, after_job_end, compress_user, on_job_start, scheduled_scan


def redis_settings(settings: Settings) -> RedisSettings:
    """arq's connection settings: a worker rides out Redis restarts and failovers."""
    base = RedisSettings.from_dsn(settings.redis_url)
    base.conn_retries = REDIS_RETRIES
    base.retry = redis_retry()
    base.retry_on_error = list(REDIS_RETRY_ON)
    return base


def worker_settings(settings: Settings) -> dict[str, Any]:
    """The keyword arguments of ``arq.Worker`` (arq accepts a dict wherever it takes WorkerSettings)."""
    on_startup, on_shutdown = lifecycle_hooks(settings)
    return {
        "functions": [func(compress_user, name=JOB_FUNCTION)],
        "cron_jobs": [
            cron(
                scheduled_scan,
                # arq's cron job ids (name and time) are not per queue: the queue in the name keeps
                # two deployments sharing a Redis database from suppressing each other's scans.
                name=f"{SCAN_FUNCTION}:{settings.queue_name}" + (f":{index}" if index else ""),
                unique=True,  # one scan per scheduled time across all worker processes of the queue
                month=when["month"],
                day=when["day"],
                weekday=when["weekday"],
                hour=when["hour"],
                minute=when["minute"],
                second=when["second"],
            )
            for index, when in enumerate(settings.scan_cron.runs)
        ],
        "queue_name": settings.queue_name,
        "redis_settings": redis_settings(settings),
        "on_startup": on_startup,
        "on_shutdown": on_shutdown,
        "on_job_start": on_job_start,
        "after_job_end": after_job_end,
        # Set for every function here, and only here.
        "job_timeout": settings.job_timeout_s + ARQ_TIMEOUT_MARGIN_S,
        "keep_result": 0,  # otherwise arq refuses to queue the user again for an hour
        "max_tries": settings.max_tries + 1,  # the extra try dead-letters (see jobs.queued)
        "max_jobs": settings.max_jobs,
        # arq starts jobs only when it polls; its 0.5 s default leaves a finished job's slot idle for up
        # to half a second, which caps a process at max_jobs / 0.5 users/s whatever the LLM latency.
        "poll_delay": settings.poll_delay_s,
        "job_completion_wait": settings.job_completion_wait_s,
        "health_check_interval": settings.health_check_interval_s,
        "health_check_key": worker_health_check_key(settings),
    }
