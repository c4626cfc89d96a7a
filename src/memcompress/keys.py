"""The names the worker and the app-side request helper share: what a user id is, and the Redis keys
memcompress names itself, built from it, in one place (arq's own key prefixes are taken from
``arq.constants`` where they are used).

A user id is a string of 1 to :data:`MAX_USER_ID_CHARS` characters. Anything else is never queued,
locked or compressed, and is shown only by :func:`shown_user_id` (type, length and hash: never the
value) wherever it appears — log lines and their fields, records, CLI output.

Only the standard library here: :mod:`memcompress.queue` (``request_compression``, which needs redis-py
alone) imports this module; :mod:`memcompress.models` re-exports the user-id names.
"""

from __future__ import annotations

import hashlib
import re

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


# Job ids and lock keys are per queue, so that deployments sharing a Redis (one queue name each) never
# block or take each other's users. The default queue keeps the names it always had (``compress:<user>``,
# ``memcompress:lock:<user>``); any other queue puts ``|<queue>|`` in their place. They cannot collide:
# every default name starts with ``compress:`` (``memcompress:lock:``) and no other queue's does, whatever
# the user id; and two other queues' names part at their first ``|`` after the prefix, since a queue name
# has no ``|`` (the settings refuse one), so the queue part of a name is the queue's alone.
QUEUE_SEPARATOR = "|"


def _queue_part(queue_name: str) -> str:
    return ":" if queue_name == DEFAULT_QUEUE_NAME else f"{QUEUE_SEPARATOR}{queue_name}{QUEUE_SEPARATOR}"


def job_id_prefix(queue_name: str) -> str:
    """What every compression job id of the queue starts with."""
    return JOB_ID_PREFIX.removesuffix(":") + _queue_part(queue_name)


def job_id(user_id: str, queue_name: str) -> str:
    """The arq job id of a user's compression on the queue: one queued job per user and queue,
    duplicates collapse."""
    return job_id_prefix(queue_name) + user_id


def lock_key_prefix(queue_name: str) -> str:
    """What every per-user lock key of the queue starts with."""
    return LOCK_KEY_PREFIX.removesuffix(":") + _queue_part(queue_name)


def lock_key(user_id: str, queue_name: str) -> str:
    return lock_key_prefix(queue_name) + user_id


def user_from_job_id(job_id_: str, queue_name: str) -> str | None:
    """The user of one of the queue's compression job ids; None for any other id (the scan's, another
    queue's)."""
    prefix = job_id_prefix(queue_name)
    return job_id_.removeprefix(prefix) if job_id_.startswith(prefix) else None


def key_pattern(prefix: str) -> str:
    """The SCAN pattern of every key that starts with ``prefix``, taken literally (a queue name may hold
    ``*``, ``?`` or ``[``)."""
    return re.sub(r"([\\*?\[\]])", r"\\\1", prefix) + "*"


# --- user ids ------------------------------------------------------------------------------------

MAX_USER_ID_CHARS = 256


def valid_user_id(value: object) -> bool:
    """Whether a job can take ``value`` as a user id (what ``UserId`` accepts)."""
    return isinstance(value, str) and 1 <= len(value) <= MAX_USER_ID_CHARS


def shown_user_id(value: object) -> str:
    """A ``user_id`` value that is not a valid id, shown so that it can be found, never quoting it:
    such a value may be anything, even a message someone wrote in the wrong field (or a phone number
    stored as a number). Its type, its length for a string, and a hash (sha256 of the string, or of
    the ``repr`` of a number): the same shape in every log line, record and output."""
    if value is None:
        return "null or missing"
    if isinstance(value, str) and not value:
        return "'' (empty)"
    if isinstance(value, str):
        return f"a string of {len(value)} characters (sha256 {_digest(value)}...)"
    if isinstance(value, bool | int | float):
        return f"{type(value).__name__} (sha256 {_digest(repr(value))}...)"
    return type(value).__name__


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]
