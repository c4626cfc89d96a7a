"""Repository interfaces. Jobs depend on these, so unit tests can use in-memory fakes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol

from memcompress.models import (
    CompactionRecord,
    DeadLetter,
    MemoryEvent,
    StoredEvent,
    UserBacklog,
    UserProfile,
    Watermark,
)


class UserMemoryRepository(Protocol):
    async def append_events(self, events: Sequence[MemoryEvent]) -> int: ...

    async def get_recent_events(self, user_id: str, limit: int) -> list[MemoryEvent]: ...

    async def count_events(self, user_id: str) -> int: ...

    async def count_dated_events(self, user_id: str) -> int: ...

    def iter_oldest(
        self, user_id: str, *, max_documents: int | None = None, batch_size: int = 500
    ) -> AsyncIterator[StoredEvent]: ...

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
        watermark: Watermark,
        folded_refs: Sequence[Any],
    ) -> bool: ...

    async def clear_pending_trim(self, user_id: str, summary_version: int) -> bool: ...


class CompactionLog(Protocol):
    async def record(self, entry: CompactionRecord) -> None: ...

    async def recent(self, limit: int = 20, user_id: str | None = None) -> list[CompactionRecord]: ...


class DeadLetters(Protocol):
    async def record(self, letter: DeadLetter) -> None: ...

    async def list(self, limit: int = 100) -> list[DeadLetter]: ...

    async def count(self) -> int: ...

    async def remove(self, user_id: str) -> bool: ...
