"""What a user id is, the same for the app-side request helper, the CLI and the worker: a string of 1
to :data:`MAX_USER_ID_CHARS` characters. Anything else is never queued, locked or compressed, and is
shown only by :func:`shown_user_id` (type, length and hash: never the value) wherever it appears — log
lines and their fields, records, CLI output.

Only the standard library here: :mod:`memcompress.queue` (``request_compression``, which needs redis-py
alone) imports this module; :mod:`memcompress.models` re-exports its names.
"""

from __future__ import annotations

import hashlib

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
