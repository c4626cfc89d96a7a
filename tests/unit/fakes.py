"""In-memory repositories with the same Protocols as the Mongo ones, for fast unit tests of jobs."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from typing import Any

from memcompress.models import (
    PROFILE_FIELDS,
    CompactionRecord,
    MemoryEvent,
    PendingTrim,
    StoredEvent,
    UserBacklog,
    UserProfile,
    Watermark,
)
from memcompress.repositories.user_profiles import ProfileBusy


class FakeMemory:
    def __init__(self) -> None:
        self.events: dict[int, MemoryEvent] = {}
        self._ids = itertools.count(1)

    async def append_events(self, events: Sequence[MemoryEvent]) -> int:
        for event in events:
            self.events[next(self._ids)] = event
        return len(events)

    def _ordered(self, user_id: str) -> list[StoredEvent]:
        mine = [StoredEvent(ref, e) for ref, e in self.events.items() if e.user_id == user_id]
        return sorted(mine, key=lambda s: (s.event.created_at, s.ref))

    async def get_recent_events(self, user_id: str, limit: int) -> list[MemoryEvent]:
        return [s.event for s in self._ordered(user_id)[-limit:]] if limit > 0 else []

    async def count_events(self, user_id: str) -> int:
        return len(self._ordered(user_id))

    async def count_dated_events(self, user_id: str) -> int:
        return len(self._ordered(user_id))

    async def iter_oldest(
        self, user_id: str, *, max_documents: int | None = None, batch_size: int = 500
    ) -> AsyncIterator[StoredEvent]:
        for stored in self._ordered(user_id)[:max_documents]:
            yield stored

    async def delete_by_refs(self, refs: Sequence[Any]) -> int:
        return sum(self.events.pop(ref, None) is not None for ref in refs)

    async def archive_by_refs(self, refs: Sequence[Any]) -> int:
        return await self.delete_by_refs(refs)

    async def users_over_threshold(self, threshold: int, limit: int | None = None) -> list[UserBacklog]:
        counts = Counter(e.user_id for e in self.events.values())
        over = sorted(((-n, u) for u, n in counts.items() if n > threshold))[:limit]
        return [UserBacklog(u, -n) for n, u in over]


class FakeProfiles:
    def __init__(self) -> None:
        self.profiles: dict[str, UserProfile] = {}

    async def get(self, user_id: str) -> UserProfile:
        return self.profiles.setdefault(user_id, UserProfile.new(user_id)).model_copy()

    async def find(self, user_id: str) -> UserProfile | None:
        profile = self.profiles.get(user_id)
        return None if profile is None else profile.model_copy()

    async def save(self, profile: UserProfile) -> None:
        current = await self.get(profile.user_id)
        self.profiles[profile.user_id] = current.model_copy(
            update={k: getattr(profile, k) for k in PROFILE_FIELDS}
        )

    async def reset(self, user_id: str) -> UserProfile:
        current = await self.get(user_id)
        if current.pending_trim is not None:
            raise ProfileBusy(user_id)
        update = {
            "summary_version": current.summary_version + 1,
            "events_summarized": current.events_summarized,
        }
        self.profiles[user_id] = UserProfile.new(user_id).model_copy(update=update)
        return await self.get(user_id)

    async def update_summary_if_version(
        self,
        user_id: str,
        *,
        expected_version: int,
        summary: str,
        watermark: Watermark,
        folded_refs: Sequence[Any],
    ) -> bool:
        current = await self.get(user_id)
        if current.summary_version != expected_version:
            return False
        self.profiles[user_id] = current.model_copy(
            update={
                "memory_summary": summary,
                "summary_version": expected_version + 1,
                "watermark": watermark,
                "pending_trim": PendingTrim(summary_version=expected_version + 1, refs=list(folded_refs)),
                "events_summarized": current.events_summarized + len(folded_refs),
            }
        )
        return True

    async def clear_pending_trim(self, user_id: str, summary_version: int) -> bool:
        current = await self.get(user_id)
        if current.pending_trim is None or current.pending_trim.summary_version != summary_version:
            return False
        self.profiles[user_id] = current.model_copy(update={"pending_trim": None})
        return True


class FakeCompactionLog:
    def __init__(self) -> None:
        self.records: list[CompactionRecord] = []

    async def record(self, entry: CompactionRecord) -> None:
        self.records.append(entry)

    async def recent(self, limit: int = 20, user_id: str | None = None) -> list[CompactionRecord]:
        return [r for r in reversed(self.records) if user_id in (None, r.user_id)][:limit]
