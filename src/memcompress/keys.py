"""The Redis keys memcompress names itself, in one place (arq's own key prefixes are taken from
``arq.constants`` where they are used). Only the standard library here: the app-side request helper
imports this module."""

from __future__ import annotations

DEFAULT_QUEUE_NAME = "memcompress:queue"
# The app-side protocol: a sorted set of user id -> Unix time (seconds) when a compression is due.
DEFAULT_REQUESTS_KEY = "memcompress:requests"
JOB_FUNCTION = "compress_user"
JOB_ID_PREFIX = "compress:"
LOCK_KEY_PREFIX = "memcompress:lock:"
LAST_SCAN_SUFFIX = ":last_scan"
PAUSED_SUFFIX = ":paused"
LLM_BUDGET_SUFFIX = ":llm-budget"


def paused_key(queue_name: str) -> str:
    """Set while workers of the queue take no jobs (``memcompress pause``)."""
    return queue_name + PAUSED_SUFFIX


def last_scan_key(queue_name: str) -> str:
    """The last scan's record (``status``; the incremental scan's watermark), per queue."""
    return queue_name + LAST_SCAN_SUFFIX


def llm_budget_key(queue_name: str) -> str:
    """The LLM requests of the last window, shared by every worker of the queue (MEMCOMPRESS_LLM_RPM)."""
    return queue_name + LLM_BUDGET_SUFFIX


def job_id(user_id: str) -> str:
    """The arq job id of a user's compression: one queued job per user, duplicates collapse."""
    return JOB_ID_PREFIX + user_id


def lock_key(user_id: str) -> str:
    return LOCK_KEY_PREFIX + user_id


def user_from_job_id(job_id_: str) -> str | None:
    return job_id_.removeprefix(JOB_ID_PREFIX) if job_id_.startswith(JOB_ID_PREFIX) else None
