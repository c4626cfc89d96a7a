"""The app-side protocol: ask for a user's memory to be compressed after appending their messages.

The whole contract is one Redis command, which any client in any language can send:

    ZADD memcompress:requests NX <Unix time in seconds when due> <user_id>

- the key is a sorted set (``MEMCOMPRESS_REQUESTS_KEY``, default ``memcompress:requests``): member =
  the user id, score = when the compression is due, usually *now + 30 s* so a burst of messages is
  compressed once, after it;
- ``NX`` keeps the request already waiting: a burst of calls is one request, due at its first call's
  time plus the delay, and costs one compression;
- the workers look at the set about every half second, hand each due request to the compression queue
  (job ``compress:<user_id>``) and remove it. A request made while that user's job is queued or running
  waits in the set and is served after the job ends: nothing the user said after a compression read
  their history is left out of the next one.

:func:`request_compression` is that command for Python. It needs only redis-py (4.2 or later, a
``redis.Redis`` or a ``redis.asyncio.Redis``) and imports nothing beyond the standard library itself, so
``import memcompress`` loads neither arq nor the worker's dependencies.
"""

from __future__ import annotations

import inspect
import math
import time
import warnings
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, overload

from memcompress.keys import DEFAULT_REQUESTS_KEY, MAX_USER_ID_CHARS
from memcompress.timing import DEFAULT_DELAY_S

if TYPE_CHECKING:
    from redis import Redis
    from redis.asyncio import Redis as AsyncRedis


@overload
def request_compression(
    redis: AsyncRedis, user_id: str, delay: float = ..., *, key: str = ...
) -> Awaitable[bool]: ...


@overload
def request_compression(redis: Redis, user_id: str, delay: float = ..., *, key: str = ...) -> bool: ...


def request_compression(
    redis: Any, user_id: str, delay: float = DEFAULT_DELAY_S, *, key: str = DEFAULT_REQUESTS_KEY
) -> bool | Awaitable[bool]:
    """Ask for ``user_id``'s memory to be compressed ``delay`` seconds from now (see the module docs).

    ``redis`` is a redis-py client, sync or asyncio (it is not closed); with an asyncio client the
    result is awaitable. Returns True if this call added the request, False if a request of the user
    was already waiting (it covers this one). ``key`` is the requests set, if the workers were given
    another ``MEMCOMPRESS_REQUESTS_KEY``. Arguments are checked before Redis is touched: a user id the
    workers would refuse (not a string, blank, over 256 characters) raises here, where the app sees it,
    instead of being queued and dropped unrun by a worker.
    """
    _check_arguments(user_id, delay, key)
    added = redis.zadd(key, {user_id: time.time() + delay}, nx=True)
    if inspect.isawaitable(added):
        return _added(added)
    return bool(added)


async def _added(pending: Awaitable[Any]) -> bool:
    return bool(await pending)


def _check_arguments(user_id: object, delay: object, key: object) -> None:
    if not isinstance(user_id, str):
        raise TypeError(f"user_id must be a str, not {type(user_id).__name__}")
    if not user_id.strip():
        raise ValueError("user_id must be a non-empty string")
    if (
        len(user_id) > MAX_USER_ID_CHARS
    ):  # the worker's limit (memcompress.keys): refused here, not dropped there
        raise ValueError(
            f"user_id has {len(user_id)} characters: the workers take at most {MAX_USER_ID_CHARS} and would "
            "drop the request's job unrun"
        )
    if isinstance(delay, bool) or not isinstance(delay, int | float):
        raise TypeError(f"delay must be a number of seconds, not {type(delay).__name__}")
    if not math.isfinite(delay) or delay < 0:
        raise ValueError(f"delay must be a finite number of seconds >= 0, not {delay!r}")
    if not isinstance(key, str) or not key:
        raise ValueError("key must be a non-empty string")


async def enqueue_compression(
    redis: Any,
    user_id: str,
    *,
    delay: float = DEFAULT_DELAY_S,
    queue_name: str | None = None,
    key: str = DEFAULT_REQUESTS_KEY,
) -> bool:
    """Deprecated alias of :func:`request_compression`, kept for one release; awaitable as before.

    It now adds a request (no arq involved): True if this call added it. ``queue_name`` is accepted and
    ignored: the workers hand requests to whatever queue they were given (``MEMCOMPRESS_QUEUE_NAME``).
    """
    warnings.warn(
        "memcompress.enqueue_compression is deprecated and will be removed in the next release: "
        "use memcompress.request_compression(redis, user_id, delay), which needs no arq",
        DeprecationWarning,
        stacklevel=2,
    )
    result = request_compression(redis, user_id, delay, key=key)
    return bool(await result) if inspect.isawaitable(result) else bool(result)
