"""The repository ports' contracts, checked the same way on the in-memory fakes the unit tests use
(``tests/unit/fakes.py``) and on the Mongo adapters (embedded SecantusDB), so that a unit test's fake
cannot drift from what the store does. The history and summary ports run in every storage layout
(:mod:`memcompress.repositories.storage_layouts`); the compaction log and dead letters are the same
collections in all of them."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from memcompress.layouts import StoreLayout
from memcompress.metrics import Metrics
from memcompress.models import CompactionRecord, DeadLetter, MemoryEvent, Outcome, ProfileDefaults
from memcompress.repositories.database import MongoDatabase
from memcompress.repositories.documents import EventRules
from memcompress.repositories.erasures import ErasedUsers
from memcompress.repositories.errors import HistoryChanged, UserErased
from memcompress.repositories.indexes import ensure_indexes
from memcompress.repositories.protocols import (
    CompactionLog,
    DeadLetters,
    Erasures,
    UserMemoryRepository,
    UserProfileRepository,
)
from memcompress.repositories.run_records import MongoCompactionLog, MongoDeadLetters
from memcompress.repositories.storage_layouts import storage_layout
from memcompress.testing.app_layouts import app_layout
from tests.unit.fakes import FakeCompactionLog, FakeDeadLetters, FakeErasures, FakeMemory, FakeProfiles

T0 = datetime(2026, 3, 1, tzinfo=UTC)


@dataclass
class Stores:
    """One implementation of each port, how the app appends to a history in it (not a port: the worker
    never appends), and how to erase a user (``memcompress forget``'s tombstone)."""

    memory: UserMemoryRepository
    profiles: UserProfileRepository
    compaction_log: CompactionLog
    dead_letters: DeadLetters
    erasures: Erasures
    append: Callable[[Sequence[MemoryEvent]], Awaitable[None]]

    async def erase(self, user_id: str) -> None:
        await self.erasures.mark(user_id, 600)


async def _fakes() -> Stores:
    erased: set[str] = set()
    log, memory = FakeCompactionLog(erased), FakeMemory(erased)
    return Stores(
        memory,
        FakeProfiles(erased, log=log),
        log,
        FakeDeadLetters(erased),
        FakeErasures(erased),
        memory.append,
    )


async def _mongo(database: MongoDatabase, metrics: Metrics, layout: StoreLayout) -> Stores:
    await ensure_indexes(database, layout=layout)  # the profiles' unique user_id: what `create` relies on
    storage, app = storage_layout(layout), app_layout(layout)

    async def append(events: Sequence[MemoryEvent]) -> None:
        await app.append(database, events)

    return Stores(
        storage.memory(database, metrics, EventRules()),
        storage.summaries(database, metrics, ProfileDefaults()),
        MongoCompactionLog(database, metrics),
        MongoDeadLetters(database, metrics),
        ErasedUsers(database),
        append,
    )


@pytest.fixture(params=["fake", "user_memory", "messages", "conversations"])
async def stores(request: pytest.FixtureRequest, database: MongoDatabase, metrics: Metrics) -> Stores:
    """The history and summary ports in every layout, and the fakes."""
    if request.param == "fake":
        return await _fakes()
    return await _mongo(database, metrics, StoreLayout.default(request.param))


@pytest.fixture(params=["fake", "mongo"])
async def records(request: pytest.FixtureRequest, database: MongoDatabase, metrics: Metrics) -> Stores:
    """The compaction log and dead letters: the fakes, and the Mongo adapters."""
    return await _fakes() if request.param == "fake" else await _mongo(database, metrics, StoreLayout())


def _events(unit: str, count: int, start: int = 0) -> list[MemoryEvent]:
    return [
        MemoryEvent(
            user_id=unit,
            role="user" if i % 2 == 0 else "assistant",
            content=f"{unit} message {i}",
            created_at=T0 + timedelta(minutes=i),
        )
        for i in range(start, start + count)
    ]


async def _oldest(memory: UserMemoryRepository, unit: str, **kwargs: int) -> list[str]:
    return [stored.event.content async for stored in memory.iter_oldest(unit, **kwargs)]


# --- the history ---------------------------------------------------------------------------------


async def test_appended_events_are_counted_and_read_oldest_first_per_unit(stores: Stores) -> None:
    memory = stores.memory
    await stores.append(_events("unit-a", 7) + _events("unit-b", 3))

    assert await memory.count_events("unit-a") == 7
    assert await memory.count_events("unit-b") == 3
    assert await memory.count_events("nobody") == 0
    assert await _oldest(memory, "unit-a") == [f"unit-a message {i}" for i in range(7)]
    assert await _oldest(memory, "unit-a", max_documents=3, batch_size=2) == [
        f"unit-a message {i}" for i in range(3)
    ]
    recent = await memory.get_recent_events("unit-a", 2)
    assert [event.content for event in recent] == ["unit-a message 5", "unit-a message 6"]
    assert await memory.get_recent_events("unit-a", 0) == []


async def test_recent_history_gives_the_newest_events_and_the_sizes(stores: Stores) -> None:
    await stores.append(_events("unit-a", 5))

    whole = await stores.memory.recent_history("unit-a", 10)
    assert whole.complete
    assert (whole.size.events, whole.size.stored) == (5, 5)
    assert whole.size.chars == sum(len(f"unit-a message {i}") for i in range(5))
    assert [stored.event.content for stored in whole.events] == [f"unit-a message {i}" for i in range(5)]

    newest = await stores.memory.recent_history("unit-a", 3)
    assert not newest.complete
    assert newest.size.events == 5
    assert [stored.event.content for stored in newest.events][-1] == "unit-a message 4"


async def test_deleting_by_refs_removes_exactly_those_events_once(stores: Stores) -> None:
    memory = stores.memory
    await stores.append(_events("unit-a", 6) + _events("unit-b", 6))
    oldest = [stored async for stored in memory.iter_oldest("unit-a", max_documents=4)]
    refs = [stored.ref for stored in oldest]

    with contextlib.suppress(HistoryChanged):  # conversations: not the messages summarised, nothing cut
        assert await memory.delete_by_refs("unit-b", refs) == 0  # another unit's refs remove nothing
    assert await memory.delete_by_refs("unit-a", refs) == 4
    assert await memory.delete_by_refs("unit-a", refs) == 0  # a repeat is a no-op
    assert await _oldest(memory, "unit-a") == ["unit-a message 4", "unit-a message 5"]
    assert await memory.count_events("unit-b") == 6


async def test_archiving_by_refs_moves_the_events_to_the_archive(stores: Stores) -> None:
    memory = stores.memory
    await stores.append(_events("unit-a", 5))
    refs = [stored.ref async for stored in memory.iter_oldest("unit-a", max_documents=3)]

    assert await memory.archive_by_refs("unit-a", refs) == 3
    assert await memory.archive_by_refs("unit-a", refs) == 0  # a repeat moves nothing more
    assert await _oldest(memory, "unit-a") == ["unit-a message 3", "unit-a message 4"]
    archived = [stored.event.content async for stored in memory.iter_archived_oldest("unit-a")]
    assert archived == [f"unit-a message {i}" for i in range(3)]


async def test_an_erased_unit_is_neither_archived_nor_trimmed(stores: Stores) -> None:
    memory = stores.memory
    await stores.append(_events("unit-a", 4))
    refs = [stored.ref async for stored in memory.iter_oldest("unit-a", max_documents=2)]
    await stores.erase("unit-a")

    with pytest.raises(UserErased):
        await memory.archive_by_refs("unit-a", refs)
    with pytest.raises(UserErased):
        await memory.archive_summary_lines("unit-a", ["a line the summary gave up"])
    assert await memory.count_events("unit-a") == 4
    assert [stored async for stored in memory.iter_archived_oldest("unit-a")] == []


async def test_the_scan_finds_units_over_the_threshold_most_first(stores: Stores) -> None:
    await stores.append(_events("unit-a", 5) + _events("unit-b", 9) + _events("unit-c", 2))

    over = await stores.memory.users_over_threshold(3)
    assert [(unit.user_id, unit.event_count) for unit in over] == [("unit-b", 9), ("unit-a", 5)]
    assert [unit.user_id for unit in await stores.memory.users_over_threshold(3, limit=1)] == ["unit-b"]
    backlog = await stores.memory.scan_backlog(3)
    assert [unit.user_id for unit in backlog.users] == ["unit-b", "unit-a"]
    assert backlog.invalid == []


# --- the summaries -----------------------------------------------------------------------------


async def _with_summary(stores: Stores, unit: str, summary: str, refs: list[object]) -> None:
    """The first summary of ``unit`` (a unit with a history; none of the worker's fields yet)."""
    await stores.append(_events(unit, 2))
    state = await stores.profiles.find_for_fold(unit, T0)
    create = state.profile is None
    written = await stores.profiles.update_summary_if_version(
        unit, expected_version=0, summary=summary, watermark=None, folded_refs=refs, create=create
    )
    assert written


async def test_the_fenced_write_stores_a_summary_over_the_version_read(stores: Stores) -> None:
    await _with_summary(stores, "unit-a", "first summary", [])
    profile = await stores.profiles.find("unit-a")
    assert profile is not None
    assert (profile.memory_summary, profile.summary_version, profile.pending_trim) == (
        "first summary",
        1,
        None,
    )

    stale = await stores.profiles.update_summary_if_version(
        "unit-a", expected_version=0, summary="a stale writer's", watermark=None, folded_refs=[]
    )
    assert not stale
    wrong_text = await stores.profiles.update_summary_if_version(
        "unit-a",
        expected_version=1,
        summary="over a text the run did not read",
        watermark=None,
        folded_refs=[],
        expected_summary="another text",
    )
    assert not wrong_text
    second = await stores.profiles.update_summary_if_version(
        "unit-a",
        expected_version=1,
        summary="second summary",
        watermark=None,
        folded_refs=[],
        expected_summary="first summary",
    )
    assert second
    profile = await stores.profiles.find("unit-a")
    assert profile is not None
    assert (profile.memory_summary, profile.summary_version) == ("second summary", 2)


async def test_the_pending_trim_is_written_with_the_summary_and_cleared_by_its_version(
    stores: Stores,
) -> None:
    await stores.append(_events("unit-a", 3))
    refs = [stored.ref async for stored in stores.memory.iter_oldest("unit-a", max_documents=2)]
    await _with_summary(stores, "unit-a", "a summary", refs)

    profile = await stores.profiles.find("unit-a")
    assert profile is not None and profile.pending_trim is not None
    assert (profile.pending_trim.summary_version, len(profile.pending_trim.refs)) == (1, 2)
    assert profile.events_summarized == 2
    assert not await stores.profiles.clear_pending_trim("unit-a", 7)  # another version's mark stays
    assert await stores.profiles.clear_pending_trim("unit-a", 1)
    cleared = await stores.profiles.find("unit-a")
    assert cleared is not None and cleared.pending_trim is None


async def test_the_fold_state_reads_the_summary_and_the_runs_since(stores: Stores) -> None:
    await _with_summary(stores, "unit-a", "a summary", [])
    for minutes, outcome, calls in (
        (0, Outcome.COMPRESSED, 1),
        (70, Outcome.COMPRESSED, 2),
        (90, Outcome.SKIPPED, 0),
    ):
        at = T0 + timedelta(minutes=minutes)
        await stores.compaction_log.record(
            CompactionRecord(
                user_id="unit-a", outcome=outcome, started_at=at, finished_at=at, llm_calls=calls
            )
        )

    state = await stores.profiles.find_for_fold("unit-a", T0 + timedelta(minutes=60))
    assert state.profile is not None and state.profile.memory_summary == "a summary"
    assert (state.compressions, state.llm_calls) == (1, 2)  # the runs since, only
    assert (await stores.profiles.find_for_fold("nobody", T0)).profile is None


# --- the compaction log and dead letters ----------------------------------------------------------


async def test_the_compaction_log_gives_recent_runs_newest_first_and_their_tokens(records: Stores) -> None:
    log = records.compaction_log
    for minutes, user in ((0, "a"), (10, "b"), (20, "a")):
        at = T0 + timedelta(minutes=minutes)
        await log.record(
            CompactionRecord(
                user_id=user,
                outcome=Outcome.COMPRESSED,
                started_at=at,
                finished_at=at,
                llm_calls=2,
                prompt_tokens=100,
                completion_tokens=10,
            )
        )

    assert [(r.user_id, r.finished_at) for r in await log.recent(2)] == [
        ("a", T0 + timedelta(minutes=20)),
        ("b", T0 + timedelta(minutes=10)),
    ]
    assert [r.finished_at for r in await log.recent(user_id="a")] == [T0 + timedelta(minutes=20), T0]
    usage = await log.token_usage_since(T0 + timedelta(minutes=5))
    assert (usage.llm_calls, usage.prompt_tokens, usage.completion_tokens) == (4, 200, 20)


async def test_a_dead_letter_is_one_per_user_and_removable(records: Stores) -> None:
    letters = records.dead_letters
    await letters.record(DeadLetter(user_id="a", reason="first", tries=1, failed_at=T0))
    await letters.record(
        DeadLetter(user_id="a", reason="again", tries=3, failed_at=T0 + timedelta(minutes=1))
    )
    await letters.record(DeadLetter(user_id="b", reason="other", tries=2, failed_at=T0))

    assert await letters.count() == 2
    found = await letters.find("a")
    assert found is not None and (found.reason, found.tries) == ("again", 3)
    assert {letter.user_id for letter in await letters.list()} == {"a", "b"}
    assert await letters.remove("a")
    assert not await letters.remove("a")
    assert await letters.find("a") is None


async def test_nothing_is_recorded_of_an_erased_user(records: Stores) -> None:
    await records.erase("gone")
    with pytest.raises(UserErased):
        await records.compaction_log.record(CompactionRecord(user_id="gone", outcome=Outcome.COMPRESSED))
    with pytest.raises(UserErased):
        await records.dead_letters.record(DeadLetter(user_id="gone", reason="r", tries=1))
    assert await records.compaction_log.recent(user_id="gone") == []
    assert await records.dead_letters.find("gone") is None


async def test_a_tombstone_counts_until_it_expires(records: Stores) -> None:
    assert not await records.erasures.erased("u")
    await records.erasures.mark("u", 600)
    assert await records.erasures.erased("u")
    assert not await records.erasures.erased("v")  # one user's tombstone only
    await records.erasures.mark("u", -1)  # extended to a moment already past: it no longer counts
    assert not await records.erasures.erased("u")
