"""In-memory adapters with the same Protocols as the Mongo ones and the locks, for fast unit tests of
the use cases (:func:`fake_services` wires them as bootstrap wires the real ones; the queue is the real
Redis adapter on fakeredis)."""

from __future__ import annotations

import contextlib
import itertools
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from fakeredis import FakeAsyncRedis, FakeServer

from memcompress.jobs import FoldPolicy, JobPolicy, Services
from memcompress.metrics import Metrics
from memcompress.models import (
    PROFILE_FIELDS,
    SUMMARY_LINE_ROLE,
    Backlog,
    CompactionRecord,
    DeadLetter,
    FoldState,
    HistorySize,
    MemoryEvent,
    PendingTrim,
    RecentHistory,
    RunNote,
    StoredEvent,
    TokenUsage,
    UserBacklog,
    UserOverrides,
    UserProfile,
    Watermark,
    summary_hash,
)
from memcompress.repositories.errors import LockBusy, UserErased
from memcompress.repositories.job_queue import RedisJobQueue
from memcompress.repositories.protocols import ANY_SUMMARY, ExpectedSummary
from memcompress.repositories.queue_admin import RedisQueueAdmin
from memcompress.settings import BATCH_SIZE, Settings
from memcompress.summarizers.base import Summarizer
from memcompress.testing.workers import requests_key

QUEUE = "fake"  # the queue of fake_services

PINNED = "pinned"


def _fence(erased: set[str], user_id: str) -> None:
    """The erase fence of a write that would create a document of ``user_id`` (nothing is kept)."""
    if user_id in erased:
        raise UserErased("the user was erased")


class FakeMemory:
    def __init__(self, erased: set[str] | None = None) -> None:
        self.events: dict[int, MemoryEvent] = {}
        self.archived: dict[int, MemoryEvent] = {}
        self._ids = itertools.count(1)
        self.erased = set() if erased is None else erased

    async def append(self, events: Sequence[MemoryEvent]) -> None:
        """Seeding, as the app appends (not a port method: the worker never appends)."""
        for event in events:
            self.events[next(self._ids)] = event

    def _ordered(self, user_id: str, events: dict[int, MemoryEvent] | None = None) -> list[StoredEvent]:
        """The user's foldable events (pinned ones are not), in the fold's order."""
        mine = [
            StoredEvent(ref, e)
            for ref, e in (self.events if events is None else events).items()
            if e.user_id == user_id and PINNED not in e.tags
        ]
        return sorted(mine, key=lambda s: (s.event.created_at, s.ref))

    async def get_recent_events(self, user_id: str, limit: int) -> list[MemoryEvent]:
        return [s.event for s in self._ordered(user_id)[-limit:]] if limit > 0 else []

    async def count_events(self, user_id: str) -> int:
        return len(self._ordered(user_id))

    async def recent_history(self, user_id: str, limit: int, pending: Sequence[Any] = ()) -> RecentHistory:
        """The newest ``limit`` events (pinned ones among them, as the store counts documents)."""
        mine = sorted(
            ((ref, e) for ref, e in self.events.items() if e.user_id == user_id),
            key=lambda item: (item[1].created_at, item[0]),
        )
        complete = len(mine) < limit
        events = [StoredEvent(ref, e) for ref, e in mine[-limit:] if PINNED not in e.tags]
        foldable = [s.event for s in self._ordered(user_id)]
        size = HistorySize(
            events=len(foldable),
            chars=sum(len(e.content) for e in foldable),
            stored=len(mine),
            pinned=len(mine) - len(foldable),
        )
        stored = not complete or any(ref in pending for ref, _ in mine)
        return RecentHistory(size, events, complete, stored)

    async def unfoldable_refs(self, user_id: str, limit: int) -> list[Any]:
        return []

    async def iter_oldest(
        self, user_id: str, *, max_documents: int | None = None, batch_size: int = BATCH_SIZE
    ) -> AsyncIterator[StoredEvent]:
        for stored in self._ordered(user_id)[:max_documents]:
            yield stored

    async def iter_archived_oldest(
        self, user_id: str, *, batch_size: int = BATCH_SIZE
    ) -> AsyncIterator[StoredEvent]:
        for stored in self._ordered(user_id, self.archived):
            yield stored

    async def delete_by_refs(self, user_id: str, refs: Sequence[Any]) -> int:
        mine = [ref for ref in refs if ref in self.events and self.events[ref].user_id == user_id]
        return sum(self.events.pop(ref, None) is not None for ref in mine)

    async def archive_summary_lines(self, user_id: str, lines: Sequence[str]) -> None:
        _fence(self.erased, user_id)
        for line in lines:
            self.archived[next(self._ids)] = MemoryEvent(
                user_id=user_id, role=SUMMARY_LINE_ROLE, content=line
            )

    async def archive_by_refs(self, user_id: str, refs: Sequence[Any]) -> int:
        """Copy, then delete, as the Mongo adapter does (the archive keeps each event's ref); for an
        erased user the copies would be undone, and nothing deleted."""
        _fence(self.erased, user_id)
        mine = [ref for ref in refs if ref in self.events and self.events[ref].user_id == user_id]
        self.archived.update((ref, self.events[ref]) for ref in mine)
        return await self.delete_by_refs(user_id, mine)

    async def users_over_threshold(self, threshold: int, limit: int | None = None) -> list[UserBacklog]:
        counts = Counter(e.user_id for e in self.events.values())
        over = sorted(((-n, u) for u, n in counts.items() if n > threshold))[:limit]
        return [UserBacklog(u, -n) for n, u in over]

    async def scan_backlog(
        self, threshold: int, limit: int | None = None, since: datetime | None = None
    ) -> Backlog:
        if since is None:
            return Backlog(users=await self.users_over_threshold(threshold, limit), invalid=[])
        active = {e.user_id for e in self.events.values() if e.created_at >= since}
        users = [u for u in await self.users_over_threshold(threshold) if u.user_id in active]
        return Backlog(users=users[:limit], invalid=[], active_users=len(active))


class FakeProfiles:
    """``overrides`` and ``log``: the fakes ``find_for_fold`` reads besides the profiles."""

    def __init__(
        self,
        erased: set[str] | None = None,
        overrides: FakeOverrides | None = None,
        log: FakeCompactionLog | None = None,
    ) -> None:
        self.profiles: dict[str, UserProfile] = {}
        self.erased = set() if erased is None else erased
        self.overrides = overrides or FakeOverrides()
        self.log = log or FakeCompactionLog(self.erased)

    async def get(self, user_id: str) -> UserProfile:
        if user_id not in self.profiles:
            _fence(self.erased, user_id)  # a profile created for an erased user is undone
        return self.profiles.setdefault(user_id, UserProfile.new(user_id)).model_copy()

    async def find(self, user_id: str) -> UserProfile | None:
        profile = self.profiles.get(user_id)
        return None if profile is None else profile.model_copy()

    async def find_for_fold(self, user_id: str, compressed_since: datetime) -> FoldState:
        runs = [
            RunNote(r.outcome.value, r.error_class, r.llm_calls, r.finished_at)
            for r in sorted(self.log.records, key=lambda r: r.finished_at, reverse=True)
            if r.user_id == user_id and r.finished_at >= compressed_since
        ]
        return FoldState.of_runs(await self.find(user_id), await self.overrides.get(user_id), runs)

    async def save(self, profile: UserProfile) -> None:
        current = await self.get(profile.user_id)
        self.profiles[profile.user_id] = current.model_copy(
            update={k: getattr(profile, k) for k in PROFILE_FIELDS}
        )

    async def update_summary_if_version(
        self,
        user_id: str,
        *,
        expected_version: int,
        summary: str,
        watermark: Watermark | None,
        folded_refs: Sequence[Any],
        profile_ref: Any = None,
        create: bool = False,
        expected_summary: ExpectedSummary = ANY_SUMMARY,
    ) -> bool:
        if (user_id in self.profiles) is create:  # creates only a profile there is none of
            return False
        current = await self.get(user_id)
        if current.summary_version != expected_version:
            return False
        if expected_summary is not ANY_SUMMARY and current.memory_summary != expected_summary:
            return False
        pending = (
            PendingTrim(summary_version=expected_version + 1, refs=list(folded_refs)) if folded_refs else None
        )
        self.profiles[user_id] = current.model_copy(
            update={
                "memory_summary": summary,
                "summary_copy": summary,
                "summary_history": [*current.summary_history, summary_hash(summary)][-5:],
                "summary_version": expected_version + 1,
                "watermark": watermark,
                "pending_trim": pending,
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


class FakeOverrides:
    def __init__(self) -> None:
        self.overrides: dict[str, UserOverrides] = {}

    async def get(self, user_id: str) -> UserOverrides | None:
        return self.overrides.get(user_id)

    async def all(self) -> dict[str, UserOverrides]:
        return dict(self.overrides)

    async def set(self, user_id: str, overrides: UserOverrides) -> None:
        self.overrides[user_id] = overrides

    async def clear(self, user_id: str) -> bool:
        return self.overrides.pop(user_id, None) is not None


class FakeCompactionLog:
    def __init__(self, erased: set[str] | None = None) -> None:
        self.records: list[CompactionRecord] = []
        self.erased = set() if erased is None else erased

    async def record(self, entry: CompactionRecord) -> None:
        _fence(self.erased, entry.user_id)
        self.records.append(entry)

    async def recent(self, limit: int = 20, user_id: str | None = None) -> list[CompactionRecord]:
        return [r for r in reversed(self.records) if user_id in (None, r.user_id)][:limit]

    async def token_usage_since(self, since: datetime) -> TokenUsage:
        runs = [r for r in self.records if r.finished_at >= since]
        return TokenUsage(
            sum(r.llm_calls for r in runs),
            sum(r.prompt_tokens or 0 for r in runs),
            sum(r.completion_tokens or 0 for r in runs),
        )


class FakeDeadLetters:
    def __init__(self, erased: set[str] | None = None) -> None:
        self.letters: dict[str, DeadLetter] = {}
        self.erased = set() if erased is None else erased

    async def record(self, letter: DeadLetter) -> None:
        _fence(self.erased, letter.user_id)
        self.letters[letter.user_id] = letter

    async def list(self, limit: int = 100) -> list[DeadLetter]:
        return list(self.letters.values())[:limit]

    async def find(self, user_id: str) -> DeadLetter | None:
        return self.letters.get(user_id)

    async def count(self) -> int:
        return len(self.letters)

    async def remove(self, user_id: str) -> bool:
        return self.letters.pop(user_id, None) is not None


class FakeErasures:
    def __init__(self, erased: set[str] | None = None) -> None:
        self.users = set() if erased is None else erased

    async def mark(self, user_id: str, keep_s: float) -> None:
        # A tombstone lasts keep_s; no time passes in the fakes, so only one that expires at once is gone.
        if keep_s > 0:
            self.users.add(user_id)
        else:
            self.users.discard(user_id)

    async def erased(self, user_id: str) -> bool:
        return user_id in self.users


class FakeMaintenance:
    async def ensure_indexes(self) -> list[str]:
        return []

    async def index_risks(self) -> list[str]:
        return []

    async def count_user_data(self, user_id: str) -> dict[str, int]:
        return {}

    async def erase_user_data(self, user_id: str) -> dict[str, int]:
        return {}

    async def drop_database(self) -> None:
        return None


class _FakeHeld:
    def __init__(self, locks: FakeLocks, user_id: str) -> None:
        self._locks, self._user_id = locks, user_id

    async def ensure_held(self) -> None:
        from memcompress.repositories.errors import LockLost

        if self._locks.held.get(self._user_id) is not self:
            raise LockLost("lock lost before writing; nothing written")


class FakeLocks:
    """``held`` maps a user to its holder; tests put any object there to play another holder."""

    def __init__(self) -> None:
        self.held: dict[str, object] = {}

    @contextlib.asynccontextmanager
    async def hold(self, user_id: str, *, wait_s: float = 0.0) -> AsyncIterator[_FakeHeld]:
        if user_id in self.held:
            raise LockBusy("another worker holds this user's lock")
        held = _FakeHeld(self, user_id)
        self.held[user_id] = held
        try:
            yield held
        finally:
            if self.held.get(user_id) is held:
                del self.held[user_id]

    async def expires_in_s(self, user_id: str) -> float:
        return 0.0

    async def holder(self, user_id: str) -> dict[str, Any] | None:
        return {"expires_in_s": 0.0, "renewed_s_ago": 0.0, "stale": False} if user_id in self.held else None


async def append(services: Services, events: Sequence[MemoryEvent]) -> None:
    """Seed the history of :func:`fake_services`' ``services``."""
    assert isinstance(services.memory, FakeMemory)
    await services.memory.append(events)


def fake_services(
    summarizer: Summarizer,
    *,
    redis: FakeAsyncRedis | None = None,
    clock: Callable[[], float] = time.time,
    **policy: Any,
) -> Services:
    """Every store port faked; the queue is the real Redis one, on fakeredis (``redis``, with Lua) and
    ``clock``. The policies are the settings' defaults with ``policy`` overrides."""
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    redis = FakeAsyncRedis(server=FakeServer()) if redis is None else redis
    erased: set[str] = set()  # the users `forget` erased: one set, as the store has one collection
    overrides, log = FakeOverrides(), FakeCompactionLog(erased)
    return Services(
        memory=FakeMemory(erased),
        profiles=FakeProfiles(erased, overrides, log),
        overrides=overrides,
        compaction_log=log,
        dead_letters=FakeDeadLetters(erased),
        maintenance=FakeMaintenance(),
        erasures=FakeErasures(erased),
        locks=FakeLocks(),
        queue=RedisJobQueue(redis, QUEUE, requests_key(QUEUE), clock=clock),
        queue_admin=RedisQueueAdmin(redis, QUEUE, requests_key(QUEUE), clock=clock),
        summarizer=summarizer,
        policy=replace(FoldPolicy.from_settings(settings), **policy),
        job_policy=JobPolicy.from_settings(settings),
        metrics=Metrics(),
    )
