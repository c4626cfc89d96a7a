"""The ports: what the jobs need from storage, locks and the queue. Jobs depend only on these (and on
:mod:`memcompress.repositories.errors`), so unit tests can use in-memory fakes and only
:mod:`memcompress.bootstrap` names the adapters.

Some ports are wider than a plain repository because the width *is* the guarantee:
``update_summary_if_version`` (the fenced write) and ``iter_oldest`` (keyset paging in the fold's total
order) carry the consistency protocol of :mod:`memcompress.jobs.compress`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any, Protocol

from memcompress.models import (
    CompactionRecord,
    DeadLetter,
    HistorySize,
    MemoryEvent,
    StoredEvent,
    UserBacklog,
    UserOverrides,
    UserProfile,
    Watermark,
)


class UserMemoryRepository(Protocol):
    async def append_events(self, events: Sequence[MemoryEvent]) -> int: ...

    async def get_recent_events(self, user_id: str, limit: int) -> list[MemoryEvent]: ...

    async def count_events(self, user_id: str) -> int: ...

    async def foldable_size(self, user_id: str) -> HistorySize: ...

    async def count_pinned(self, user_id: str) -> int: ...

    async def newest_foldable(self, user_id: str, limit: int) -> list[MemoryEvent]: ...

    async def unfoldable_refs(self, user_id: str, limit: int) -> list[Any]: ...

    def iter_oldest(
        self, user_id: str, *, max_documents: int | None = None, batch_size: int = 500
    ) -> AsyncIterator[StoredEvent]: ...

    def iter_archived_oldest(self, user_id: str, *, batch_size: int = 500) -> AsyncIterator[StoredEvent]:
        """The user's archived events (``RETENTION=archive``), in ``iter_oldest``'s order and by its
        rules; only a replay reads them."""
        ...

    async def delete_by_refs(self, refs: Sequence[Any]) -> int: ...

    async def archive_by_refs(self, refs: Sequence[Any]) -> int: ...

    async def users_over_threshold(self, threshold: int, limit: int | None = None) -> list[UserBacklog]: ...


class UserProfileRepository(Protocol):
    async def get(self, user_id: str) -> UserProfile: ...

    async def find(self, user_id: str) -> UserProfile | None: ...

    async def save(self, profile: UserProfile) -> None: ...

    async def reset(self, user_id: str) -> UserProfile: ...

    async def update_summary_if_version(
        self,
        user_id: str,
        *,
        expected_version: int,
        summary: str,
        watermark: Watermark | None,
        folded_refs: Sequence[Any],
    ) -> bool: ...

    async def clear_pending_trim(self, user_id: str, summary_version: int) -> bool: ...


class UserOverridesRepository(Protocol):
    async def get(self, user_id: str) -> UserOverrides | None: ...

    async def all(self) -> dict[str, UserOverrides]: ...

    async def set(self, user_id: str, overrides: UserOverrides) -> None: ...

    async def clear(self, user_id: str) -> bool: ...


class CompactionLog(Protocol):
    async def record(self, entry: CompactionRecord) -> None: ...

    async def recent(self, limit: int = 20, user_id: str | None = None) -> list[CompactionRecord]: ...

    async def compressions_since(self, user_id: str, since: datetime) -> int:
        """How many runs compressed the user since ``since`` (the daily cap)."""
        ...


class DeadLetters(Protocol):
    async def record(self, letter: DeadLetter) -> None: ...

    async def list(self, limit: int = 100) -> list[DeadLetter]: ...

    async def count(self) -> int: ...

    async def remove(self, user_id: str) -> bool: ...


class Maintenance(Protocol):
    """The store as a whole: its indexes, and everything it holds about one user (``forget``)."""

    async def ensure_indexes(self) -> list[str]: ...

    async def memory_ttl_risks(self) -> list[str]: ...

    async def count_user_data(self, user_id: str) -> dict[str, int]: ...

    async def erase_user_data(self, user_id: str) -> dict[str, int]: ...

    async def drop_database(self) -> None: ...


class HeldLock(Protocol):
    async def ensure_held(self) -> None:
        """Raise :class:`~memcompress.repositories.errors.LockLost` unless the lock is still ours;
        checked before every write."""


class UserLocks(Protocol):
    """Per-user mutual exclusion that only saves duplicate work: correctness never depends on it."""

    def hold(self, user_id: str, *, wait_s: float = 0.0) -> AbstractAsyncContextManager[HeldLock]:
        """Hold the user's lock (renewed in the background) for the ``async with`` block; raises
        :class:`~memcompress.repositories.errors.LockBusy` if it is still held elsewhere after
        ``wait_s`` seconds."""
        ...

    async def expires_in_s(self, user_id: str) -> float:
        """Seconds until the user's lock expires (0 when it is free)."""
        ...


class JobQueue(Protocol):
    """The queue of per-user compression jobs (one job id per user) and its bookkeeping."""

    name: str

    async def enqueue(self, user_id: str, *, delay_s: float = 0.0) -> bool:
        """Queue the user's job; False when it is already queued or running."""
        ...

    async def request(self, user_id: str, *, delay_s: float = 0.0) -> bool:
        """What the app asks for: queue the job and have it re-checked after a running one ends."""
        ...

    async def set_recheck(self, user_id: str, *, delay_s: float) -> None: ...

    async def clear_recheck(self, user_id: str) -> None: ...

    async def take_recheck(self, user_id: str) -> float | None:
        """The delay of a re-check asked for while the user's job ran (and clear it); None if none."""
        ...

    async def record_scan(self, summary: dict[str, object]) -> None: ...

    async def last_scan(self) -> dict[str, object] | None: ...

    async def depth(self) -> int: ...

    async def purge(self) -> int:
        """Drop every queued job; returns how many there were."""
        ...

    async def jobs(self, limit: int) -> list[dict[str, Any]]:
        """Queued jobs, soonest first: ``{"user_id", "due_at" (ISO), "due": bool}``."""
        ...

    async def pause(self) -> None: ...

    async def resume(self) -> bool: ...

    async def paused(self) -> bool: ...

    async def status(self) -> dict[str, Any]:
        """Queue depth (waiting, deferred), jobs in progress, held locks, last scan, worker health."""
        ...

    async def worker_health(self, host: str) -> dict[str, str]: ...

    async def erase_user(self, user_id: str) -> dict[str, int]:
        """Remove the user's queued job, its job keys and its re-check flag."""
        ...
