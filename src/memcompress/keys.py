"""Every Redis key memcompress writes, in one place (the CLI's ``status`` and ``forget`` read them too).

Only the standard library here: the app-side enqueue API imports this module.
"""

from __future__ import annotations

DEFAULT_QUEUE_NAME = "memcompress:queue"
JOB_FUNCTION = "compress_user"
JOB_ID_PREFIX = "compress:"
LOCK_KEY_PREFIX = "memcompress:lock:"
RECHECK_KEY_PREFIX = "memcompress:recheck:"
LAST_SCAN_KEY = "memcompress:last_scan"

# arq's own key prefixes (arq.constants), repeated here so the status helpers need no arq import.
ARQ_JOB_PREFIX = "arq:job:"
ARQ_IN_PROGRESS_PREFIX = "arq:in-progress:"
ARQ_RETRY_PREFIX = "arq:retry:"


def health_check_key(queue_name: str, host: str, pid: int | str) -> str:
    """Each worker process writes its own health-check key (host and pid), so ``status`` shows every
    process and a probe run on a host (a pod, a container) checks that host's workers, not any worker
    of the queue. ``pid="*"`` gives the pattern for all of a host's workers."""
    return f"{queue_name}:health-check:{host}:{pid}"


def job_id(user_id: str) -> str:
    """The arq job id of a user's compression: one queued job per user, duplicates collapse."""
    return JOB_ID_PREFIX + user_id


def lock_key(user_id: str) -> str:
    return LOCK_KEY_PREFIX + user_id


def recheck_key(user_id: str) -> str:
    return RECHECK_KEY_PREFIX + user_id


def user_from_job_id(job_id_: str) -> str | None:
    return job_id_.removeprefix(JOB_ID_PREFIX) if job_id_.startswith(JOB_ID_PREFIX) else None
