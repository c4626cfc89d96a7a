"""MongoDB repositories against the real wire-protocol server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from bson import ObjectId
from pymongo import AsyncMongoClient, monitoring, uri_parser
from pymongo.errors import BulkWriteError
from redis.asyncio import Redis

from memcompress.metrics import Metrics
from memcompress.models import (
    CompactionRecord,
    Outcome,
    ProfileDefaults,
    UserOverrides,
    UserProfile,
    Watermark,
    utc_now,
)
from memcompress.repositories.database import (
    ERASED_USERS,
    USER_MEMORY,
    USER_MEMORY_ARCHIVE,
    USER_PROFILES,
    MongoDatabase,
)
from memcompress.repositories.erasures import ErasedUsers
from memcompress.repositories.errors import StoreUnavailable
from memcompress.repositories.indexes import ensure_indexes
from memcompress.repositories.maintenance import MongoMaintenance
from memcompress.repositories.overrides import MongoUserOverrides
from memcompress.repositories.run_records import MongoCompactionLog
from memcompress.repositories.user_memory import MongoUserMemoryRepository
from memcompress.repositories.user_profiles import MongoUserProfileRepository
from memcompress.testing.app_documents import app_profile
from memcompress.testing.factories import T0, make_events
from tests.integration.conftest import append


@pytest.fixture
def memory(database: MongoDatabase, metrics: Metrics) -> MongoUserMemoryRepository:
    return MongoUserMemoryRepository(database, metrics)


@pytest.fixture
def profiles(database: MongoDatabase, metrics: Metrics) -> MongoUserProfileRepository:
    return MongoUserProfileRepository(database, metrics, ProfileDefaults(language="en"))


async def _all_docs(database: MongoDatabase, collection: str) -> list[dict[str, Any]]:
    return await database.collection(collection).find({}).to_list()


# --- connection lifecycle ------------------------------------------------------------------------


async def test_connect_and_close_are_idempotent(mongo_uri: str, db_name: str) -> None:
    db = MongoDatabase(mongo_uri, db_name)
    first = await db.connect()
    assert (await db.connect()).name == first.name == db_name
    await db.close()
    await db.close()
    with pytest.raises(RuntimeError, match="connect"):
        _ = db.db


async def test_unreachable_server_is_one_line_with_password_redacted() -> None:
    db = MongoDatabase(
        "mongodb://ops:hunter2@127.0.0.1:1/?directConnection=true", "x", server_selection_timeout_ms=300
    )
    with pytest.raises(StoreUnavailable) as caught:
        await db.connect()
    message = str(caught.value)
    assert "\n" not in message
    assert "hunter2" not in message and "ops:***@127.0.0.1:1" in message
    assert "hunter2" not in repr(db)


class RestartingServer:
    """A TCP proxy in front of MongoDB that behaves like a server restarting: for ``drop_s`` it closes every
    new connection as soon as it is made, but the first with ``spare_first`` (the driver's monitor, which
    then saw the server up), then passes everything through."""

    def __init__(self, mongo_uri: str, drop_s: float, *, spare_first: bool = True) -> None:
        self._target = uri_parser.parse_uri(mongo_uri)["nodelist"][0]
        self._drop_until = time.monotonic() + drop_s
        self._spared = 1 if spare_first else 0
        self.connections = self.dropped = 0
        self._open: list[asyncio.StreamWriter] = []

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[int]:
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        try:
            yield server.sockets[0].getsockname()[1]
        finally:
            server.close()
            for writer in self._open:  # wait_closed waits for the proxied connections too
                writer.close()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 5)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self.connections > self._spared and time.monotonic() < self._drop_until:
            self.dropped += 1
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection(*self._target)
        self._open += [writer, up_writer]
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


async def test_connect_waits_for_a_restarting_server_that_drops_the_first_connections(
    mongo_uri: str, db_name: str
) -> None:
    """A worker started while MongoDB restarts comes up once the store is back (it exited 1 in the fault
    suite: the driver reports a dropped connection at once, not after its server-selection wait)."""
    server = RestartingServer(mongo_uri, drop_s=2.0)
    async with server.serving() as port:
        db = MongoDatabase(f"mongodb://127.0.0.1:{port}/?directConnection=true", db_name)
        await db.connect()
        assert (await db.db.command("ping"))["ok"] == 1
        await db.close()
    assert server.dropped >= 1  # the driver did meet the restart


async def test_a_worker_waits_longer_for_the_store_at_start_than_the_cli(
    mongo_uri: str, db_name: str
) -> None:
    """Down for longer than the server-selection timeout: the CLI's connect gives up after it (one line),
    a worker's (``wait_s``, the worker passes ``STORE_START_WAIT_S``) comes up when the store does."""
    server = RestartingServer(mongo_uri, drop_s=3.0, spare_first=False)
    async with server.serving() as port:
        uri = f"mongodb://127.0.0.1:{port}/?directConnection=true"
        with pytest.raises(StoreUnavailable):
            await MongoDatabase(uri, db_name, server_selection_timeout_ms=500).connect()
        db = MongoDatabase(uri, db_name, server_selection_timeout_ms=500)
        await db.connect(wait_s=60)
        assert (await db.db.command("ping"))["ok"] == 1
        await db.close()
    assert server.dropped >= 2


# --- profiles ------------------------------------------------------------------------------------


async def test_get_creates_the_default_profile_once(
    profiles: MongoUserProfileRepository, database: MongoDatabase
) -> None:
    created = await profiles.get("u1")
    assert (created.language, created.persona, created.tone) == ("en", "Alfred-style дворецкий", "witty")
    assert created.memory_summary is None and created.summary_version == 0
    again = await profiles.get("u1")
    assert again.created_at == created.created_at
    assert len(await _all_docs(database, USER_PROFILES)) == 1


async def test_save_upserts_app_fields_but_never_the_summary(profiles: MongoUserProfileRepository) -> None:
    await profiles.save(UserProfile(user_id="new", language="de", preferred_topics=["chess"]))
    stored = await profiles.get("new")
    assert stored.language == "de" and stored.preferred_topics == ["chess"]

    won = await profiles.update_summary_if_version(
        "new",
        expected_version=0,
        summary="likes chess",
        watermark=Watermark(created_at=T0, event_id=_uuid()),
        folded_refs=[1, 2],
    )
    assert won
    stale = stored.model_copy(update={"tone": "dry", "memory_summary": None, "summary_version": 0})
    await profiles.save(stale)
    after = await profiles.get("new")
    assert after.tone == "dry"
    assert after.memory_summary == "likes chess" and after.summary_version == 1
    assert after.events_summarized == 2


async def test_version_guarded_update_loses_cleanly(profiles: MongoUserProfileRepository) -> None:
    await profiles.get("v")
    mark = Watermark(created_at=T0, event_id=_uuid())
    assert await profiles.update_summary_if_version(
        "v", expected_version=0, summary="first", watermark=mark, folded_refs=["a"]
    )
    assert not await profiles.update_summary_if_version(
        "v", expected_version=0, summary="stale", watermark=mark, folded_refs=["b"]
    )
    stored = await profiles.get("v")
    assert stored.memory_summary == "first" and stored.summary_version == 1
    assert stored.pending_trim is not None and stored.pending_trim.refs == ["a"]
    assert not await profiles.clear_pending_trim("v", summary_version=7)
    assert await profiles.clear_pending_trim("v", summary_version=1)
    assert (await profiles.get("v")).pending_trim is None


async def test_a_summary_write_loses_when_the_summary_is_not_the_one_read(
    profiles: MongoUserProfileRepository, database: MongoDatabase
) -> None:
    """The app writes ``memory_summary`` without bumping the version: the text read is the fence."""
    collection = database.collection(USER_PROFILES)
    await collection.insert_many(
        [
            {"user_id": "missing"},
            {"user_id": "null", "memory_summary": None},
            app_profile("apps", memory_summary="a"),
        ]
    )
    write = {"expected_version": 0, "summary": "ours", "watermark": None, "folded_refs": []}
    for user in ("missing", "null"):  # both read as no summary
        assert await profiles.update_summary_if_version(user, expected_summary=None, **write)
    assert not await profiles.update_summary_if_version("apps", expected_summary=None, **write)
    assert not await profiles.update_summary_if_version("apps", expected_summary="b", **write)
    assert (await profiles.get("apps")).memory_summary == "a"
    assert await profiles.update_summary_if_version("apps", expected_summary="a", **write)
    assert [(await profiles.get(u)).memory_summary for u in ("missing", "null", "apps")] == ["ours"] * 3


async def test_a_summary_write_creates_a_missing_profile_and_no_second_one(
    profiles: MongoUserProfileRepository, database: MongoDatabase
) -> None:
    await ensure_indexes(database)  # the unique index on user_id
    write = {"expected_version": 0, "summary": "s", "watermark": None, "folded_refs": ["a"], "create": True}
    assert await profiles.update_summary_if_version("new", **write)
    created = await profiles.get("new")
    assert (created.memory_summary, created.summary_version, created.language) == ("s", 1, "en")
    assert created.pending_trim is not None and created.events_summarized == 1
    assert not await profiles.update_summary_if_version("new", **write)  # it has one now: refused
    await database.collection(USER_PROFILES).insert_one({"user_id": "apps", "tone": "dry"})
    assert not await profiles.update_summary_if_version("apps", **write)  # the app's, even at version 0
    assert (
        await database.collection(USER_PROFILES).count_documents({"user_id": {"$in": ["new", "apps"]}}) == 2
    )
    assert (await profiles.get("apps")).memory_summary is None


async def test_find_for_fold_reads_profile_overrides_and_the_days_compressions_at_once(
    profiles: MongoUserProfileRepository, database: MongoDatabase
) -> None:
    since = utc_now() - timedelta(days=1)
    nothing = await profiles.find_for_fold("u", since)
    assert (nothing.profile, nothing.overrides, nothing.compressions) == (None, None, 0)
    await profiles.get("u")
    await MongoUserOverrides(database).set("u", UserOverrides(threshold=7))
    log = MongoCompactionLog(database)
    for outcome in (Outcome.COMPRESSED, Outcome.COMPRESSED, Outcome.SKIPPED):
        await log.record(CompactionRecord(user_id="u", outcome=outcome))
    await log.record(
        CompactionRecord(user_id="u", outcome=Outcome.COMPRESSED, finished_at=since - timedelta(1))
    )
    await log.record(CompactionRecord(user_id="other", outcome=Outcome.COMPRESSED))
    state = await profiles.find_for_fold("u", since)
    assert state.profile is not None and state.profile.user_id == "u"
    assert (state.overrides, state.compressions) == (UserOverrides(threshold=7), 2)


async def test_recent_history_says_whether_a_pending_trims_events_may_still_be_stored(
    memory: MongoUserMemoryRepository, database: MongoDatabase
) -> None:
    await append(database, make_events("u", 10))
    stored = [s async for s in memory.iter_oldest("u")]
    refs = [s.ref for s in stored[:3]]
    assert (await memory.recent_history("u", 100, refs)).pending_stored
    await memory.delete_by_refs("u", refs)
    gone = await memory.recent_history("u", 100, refs)
    assert (gone.complete, gone.pending_stored, len(gone.events)) == (True, False, 7)
    assert (await memory.recent_history("u", 5, refs)).pending_stored  # not the whole history: unknown


async def test_malformed_profile_is_a_clear_error_and_left_alone(
    profiles: MongoUserProfileRepository, database: MongoDatabase
) -> None:
    from memcompress.repositories.errors import MalformedDocument

    await database.collection(USER_PROFILES).insert_one({"user_id": "bad", "summary_version": "seven"})
    with pytest.raises(MalformedDocument, match="summary_version"):
        await profiles.get("bad")
    assert await database.collection(USER_PROFILES).count_documents({"user_id": "bad"}) == 1


# --- events --------------------------------------------------------------------------------------


async def test_recent_events_are_chronological_with_ties(
    memory: MongoUserMemoryRepository, database: MongoDatabase
) -> None:
    tied = make_events("u", 30, step=timedelta(0))  # every event at the same instant
    await append(database, tied)
    await append(database, make_events("other", 5))
    recent = await memory.get_recent_events("u", 10)
    assert [e.content for e in recent] == [e.content for e in tied[-10:]]
    assert await memory.count_events("u") == 30
    assert await memory.get_recent_events("u", 0) == []


async def test_streaming_returns_every_event_once_in_total_order(
    memory: MongoUserMemoryRepository, database: MongoDatabase
) -> None:
    # Ties on created_at across batch boundaries, inserted out of order.
    events = make_events("u", 53, step=timedelta(0)) + make_events(
        "u", 40, start=T0 - timedelta(hours=1), tag="x"
    )
    await append(database, events[::2])
    await append(database, events[1::2])
    streamed = [s async for s in memory.iter_oldest("u", batch_size=7)]
    assert len(streamed) == len(events)
    assert len({s.ref["_id"] for s in streamed}) == len(events)
    keys = [(s.event.created_at, s.ref["_id"]) for s in streamed]
    assert keys == sorted(keys)
    limited = [s async for s in memory.iter_oldest("u", max_documents=45, batch_size=7)]
    assert [s.ref for s in limited] == [s.ref for s in streamed[:45]]


async def test_delete_and_archive_by_refs_are_idempotent(
    memory: MongoUserMemoryRepository, database: MongoDatabase
) -> None:
    await append(database, make_events("u", 10))
    stored = [s async for s in memory.iter_oldest("u")]
    refs = [s.ref for s in stored]
    assert refs[0] == {"_id": refs[0]["_id"], "user_id": "u", "event_id": stored[0].event.event_id}
    assert await memory.archive_by_refs("u", refs[:4]) == 4
    assert await memory.archive_by_refs("u", refs[:4]) == 0
    archived = await _all_docs(database, USER_MEMORY_ARCHIVE)
    assert sorted(d["_id"] for d in archived) == sorted(r["_id"] for r in refs[:4])
    assert all("archived_at" in d and d["content"] for d in archived)
    gone = {"_id": ObjectId(), "user_id": "u", "event_id": "gone"}
    assert await memory.delete_by_refs("u", [*refs[4:7], gone]) == 3
    assert await memory.delete_by_refs("u", refs[4:7]) == 0
    remaining = [s.ref for s in [s async for s in memory.iter_oldest("u")]]
    assert remaining == refs[7:]


async def test_archived_events_stream_in_total_order_per_user(
    memory: MongoUserMemoryRepository, database: MongoDatabase
) -> None:
    # Ties on created_at across batch boundaries, archived out of order; another user's archive too.
    events = make_events("u", 23, step=timedelta(0)) + make_events(
        "u", 12, start=T0 - timedelta(hours=1), tag="x"
    )
    await append(database, events[::2])
    await append(database, events[1::2])
    await append(database, make_events("other", 4))
    stored = [s async for s in memory.iter_oldest("u")]
    await memory.archive_by_refs("u", [s.ref for s in stored[1::2]])
    await memory.archive_by_refs("u", [s.ref for s in stored[::2]][:-3])  # three stay in user_memory
    await memory.archive_by_refs("other", [s.ref async for s in memory.iter_oldest("other")])

    kept = [s.ref for s in stored[::2][-3:]]
    archived = [s async for s in memory.iter_archived_oldest("u", batch_size=4)]
    expected = [s for s in stored if s.ref not in kept]  # `stored` is in the fold's total order
    assert [(s.ref, s.event.content) for s in archived] == [(s.ref, s.event.content) for s in expected]
    assert [s.ref async for s in memory.iter_oldest("u")] == [s.ref for s in stored if s.ref in kept]
    assert [s async for s in memory.iter_archived_oldest("nobody")] == []


async def test_archive_finishes_a_copy_that_crashed_before_its_delete(
    memory: MongoUserMemoryRepository, database: MongoDatabase
) -> None:
    await append(database, make_events("u", 3))
    docs = await _all_docs(database, USER_MEMORY)
    await database.collection(USER_MEMORY_ARCHIVE).insert_one(docs[0])  # copied, then "crashed"
    assert await memory.archive_by_refs("u", [d["_id"] for d in docs]) == 3  # bare _ids: older refs
    assert await database.collection(USER_MEMORY_ARCHIVE).count_documents({}) == 3
    assert await memory.count_events("u") == 0


async def test_an_archived_document_of_another_user_with_the_same_id_fails_the_archive(
    memory: MongoUserMemoryRepository, database: MongoDatabase
) -> None:
    """The copies are one insert; one refused as a duplicate ``_id`` is upserted by ``_id`` and user,
    which another user's archived document refuses too: the trim fails and deletes nothing."""
    await append(database, make_events("u", 3))
    docs = await _all_docs(database, USER_MEMORY)
    taken = {**docs[1], "user_id": "other", "content": "another user's"}
    await database.collection(USER_MEMORY_ARCHIVE).insert_one(taken)
    with pytest.raises(BulkWriteError):
        await memory.archive_by_refs("u", [s.ref async for s in memory.iter_oldest("u")])
    assert await memory.count_events("u") == 3
    archived = await database.collection(USER_MEMORY_ARCHIVE).find_one({"_id": docs[1]["_id"]})
    assert archived is not None and archived["user_id"] == "other"


@pytest.mark.parametrize("retention", ["delete", "archive"])
async def test_a_trim_matches_the_user_and_the_event_not_just_the_id(
    memory: MongoUserMemoryRepository, database: MongoDatabase, retention: str
) -> None:
    """App-chosen ``_id``s get reused: a ref must never remove the document that took its ``_id`` over
    (another user's, or a newer event of the same user), nor one of another user's when refs of an
    earlier version are bare ``_id``s."""
    collection = database.collection(USER_MEMORY)
    summarised = [
        {
            "_id": f"m{i}",
            "event_id": f"e{i}",
            "user_id": "u",
            "role": "user",
            "content": f"said {i}",
            "created_at": T0,
        }
        for i in range(3)
    ] + [{"_id": "m3", "user_id": "u", "role": "user", "content": "no event id", "created_at": T0}]
    await collection.insert_many([dict(d) for d in summarised])
    refs = [s.ref async for s in memory.iter_oldest("u")]
    # Before the trim, m0 is reused by another user and m1 by a newer event of the same user.
    await collection.delete_many({"_id": {"$in": ["m0", "m1"]}})
    reused = [
        {
            "_id": "m0",
            "event_id": "x0",
            "user_id": "other",
            "role": "user",
            "content": "not summarised",
            "created_at": T0,
        },
        {"_id": "m1", "event_id": "x1", "user_id": "u", "role": "user", "content": "newer", "created_at": T0},
    ]
    await collection.insert_many([dict(d) for d in reused])
    trim = memory.archive_by_refs if retention == "archive" else memory.delete_by_refs
    assert await trim("u", refs) == 2  # m2 and m3, the summarised documents still stored
    assert sorted(d["_id"] for d in await _all_docs(database, USER_MEMORY)) == ["m0", "m1"]
    # The trim is finished, but its mark stays until the next summary write: a repeat must not take a
    # newer document of the user that took over an _id with no event_id (its time tells it apart).
    newer = {"_id": "m3", "user_id": "u", "role": "user", "content": "newer", "created_at": T0 + timedelta(1)}
    await collection.insert_one(dict(newer))
    assert await trim("u", refs) == 0
    await collection.delete_one({"_id": "m3"})
    assert await trim("other", refs) == 0  # refs of u never match another user's documents
    await collection.insert_one(
        {"_id": "m5", "user_id": "u", "role": "user", "content": "x", "created_at": T0}
    )
    assert await trim("other", ["m0", "m1", "m5"]) == 1  # bare _ids (an older pending trim): the user's only
    assert sorted(d["_id"] for d in await _all_docs(database, USER_MEMORY)) == ["m1", "m5"]
    if retention == "archive":
        archived = await _all_docs(database, USER_MEMORY_ARCHIVE)
        assert sorted((d["_id"], d["user_id"]) for d in archived) == [
            ("m0", "other"),
            ("m2", "u"),
            ("m3", "u"),
        ]


# Not foldable (see documents.FOLDABLE_CONTENT): any role string, any length, a missing or non-UUID
# event_id and odd tags are foldable, so they are not here.
MALFORMED = [
    {"event_id": "e1", "user_id": "u", "role": "user", "content": 42, "created_at": T0, "tags": []},
    {"event_id": "e2", "user_id": "u", "role": "user", "content": "", "created_at": T0, "tags": []},
    {"event_id": "e3", "user_id": "u", "role": "user", "content": None, "created_at": T0, "tags": []},
    {"event_id": "e4", "user_id": "u", "role": "user", "content": [], "created_at": T0},
    {"event_id": "e5", "user_id": "u", "role": "", "content": "empty role", "created_at": T0},
    {"event_id": "e6", "user_id": "u", "content": "no role", "created_at": T0},
    {"event_id": "e7", "user_id": "u", "role": "user", "content": "string date", "created_at": "yesterday"},
]


async def test_malformed_documents_are_skipped_counted_logged_by_id_and_kept(
    memory: MongoUserMemoryRepository,
    database: MongoDatabase,
    metrics: Metrics,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await append(database, make_events("u", 5))
    await database.collection(USER_MEMORY).insert_many([dict(d) for d in MALFORMED])
    with caplog.at_level(logging.WARNING):
        streamed = [s async for s in memory.iter_oldest("u", batch_size=3)]
        recent = await memory.get_recent_events("u", 100)
    assert len(streamed) == 5 and len(recent) == 5
    whole, part = await memory.recent_history("u", 100), await memory.recent_history("u", 3)
    assert (whole.complete, part.complete) == (True, False)
    assert whole.size == part.size  # counted from the documents read, or by the aggregation: alike
    assert (whole.size.events, whole.size.stored, whole.size.unfoldable) == (5, 12, len(MALFORMED))
    assert len(await memory.unfoldable_refs("u", 100)) == len(MALFORMED)
    counted = metrics.registry.get_sample_value(
        "memcompress_malformed_documents_total", {"collection": USER_MEMORY}
    )
    assert counted == len(MALFORMED)  # by get_recent_events; the fold's stream passes them silently
    assert "_id=" in caplog.text
    assert "string date" not in caplog.text and "empty role" not in caplog.text
    await memory.delete_by_refs("u", [s.ref for s in streamed])
    assert await memory.count_events("u") == len(MALFORMED)


async def test_users_over_threshold_is_an_aggregation(
    memory: MongoUserMemoryRepository, database: MongoDatabase
) -> None:
    for user, count in [("a", 12), ("b", 30), ("c", 11), ("d", 10)]:
        await append(database, make_events(user, count))
    await database.collection(USER_MEMORY).insert_one({"user_id": 7, "content": "bad user id"})
    found = await memory.users_over_threshold(10)
    assert [(u.user_id, u.event_count) for u in found] == [("b", 30), ("a", 12), ("c", 11)]
    assert [u.user_id for u in await memory.users_over_threshold(10, limit=2)] == ["b", "a"]


async def test_ensure_indexes_twice_is_harmless(database: MongoDatabase) -> None:
    first = await ensure_indexes(database, memory_ttl_days=90)
    second = await ensure_indexes(database, memory_ttl_days=90)
    assert first == second
    info = await database.collection(USER_PROFILES).index_information()
    assert info["user_id_unique"]["unique"] is True
    memory_info = await database.collection(USER_MEMORY).index_information()
    assert memory_info["user_created_id"]["key"] == [("user_id", 1), ("created_at", 1), ("_id", 1)]
    assert memory_info["created_at_ttl"]["expireAfterSeconds"] == 90 * 86_400
    # The incremental scan's index lives beside the TTL index (another key, so no conflict).
    assert memory_info["created_user"]["key"] == [("created_at", 1), ("user_id", 1)]


async def test_ensure_indexes_has_no_ttl_unless_asked(database: MongoDatabase) -> None:
    await ensure_indexes(database)
    assert "created_at_ttl" not in await database.collection(USER_MEMORY).index_information()


async def test_profile_user_id_is_unique(
    profiles: MongoUserProfileRepository, database: MongoDatabase
) -> None:
    from pymongo.errors import DuplicateKeyError

    await ensure_indexes(database)
    await profiles.get("dup")
    with pytest.raises(DuplicateKeyError):
        await database.collection(USER_PROFILES).insert_one({"user_id": "dup"})


def _uuid() -> Any:
    import uuid

    return str(uuid.uuid4())


class _Reads(monitoring.CommandListener):
    def __init__(self) -> None:
        self.commands: list[dict[str, Any]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if (
            event.command_name in ("find", "aggregate")
            and event.command.get(event.command_name) == USER_MEMORY
        ):
            keep = ("find", "filter", "sort", "limit", "hint", "aggregate", "pipeline", "cursor")
            self.commands.append({k: v for k, v in event.command.items() if k in keep})

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None: ...

    def failed(self, event: monitoring.CommandFailedEvent) -> None: ...


async def test_every_per_user_read_of_a_compression_uses_the_index(
    mongo_uri: str, db_name: str, redis: Redis
) -> None:
    """Captures the reads a real compression sends (paging with ties included: a history longer than
    the first read, so that the sizes are an aggregation and the fold pages) and explains each one.

    The archive's read of the documents to trim is a list of ``_id``s and the user, with no hint (see
    ``archive_by_refs``): MongoDB explains it as ``_id`` index point bounds. SecantusDB's explain says
    the opposite of what it runs for that read (COLLSCAN for its per-``_id`` lookups, IXSCAN for the
    hinted read that decodes the whole collection), so there only its shape is checked."""
    from memcompress.bootstrap import build_services
    from memcompress.jobs import run_compression
    from memcompress.settings import load_settings
    from memcompress.summarizers.extractive import ExtractiveSummarizer

    reads = _Reads()
    database = MongoDatabase(mongo_uri, db_name, event_listeners=[reads])
    await database.connect()
    try:
        await ensure_indexes(database)
        settings = load_settings(batch_size=40)
        services = build_services(settings, database, redis, Metrics(), ExtractiveSummarizer())
        user = f"explain-{db_name}"
        await append(database, make_events(user, 250, step=timedelta(0)))  # all ties
        await append(database, make_events(user, 30, start=T0 + timedelta(hours=1), tag="later"))
        assert (await run_compression(services, user)).outcome is Outcome.COMPRESSED
        secantus = "secantusVersion" in await database.db.client.admin.command("buildInfo")

        def kind(command: dict[str, Any]) -> str:
            if "aggregate" in command:
                return "count"
            if "_id" not in command["filter"]:
                return "page"
            return "trim" if "$in" in command["filter"]["_id"] else "tie"

        kinds = Counter(kind(c) for c in reads.commands)
        assert kinds["count"] >= 1 and kinds["tie"] >= 2 and kinds["page"] >= 2 and kinds["trim"] >= 1, kinds
        for command in reads.commands:
            if kind(command) == "trim":
                assert "hint" not in command and set(command["filter"]) == {"_id", "user_id"}, command
                if secantus:
                    continue
            plan = json.dumps(await database.db.command("explain", command), default=str)
            assert "IXSCAN" in plan and "COLLSCAN" not in plan, (command, plan)
    finally:
        await database.db.client.drop_database(db_name)
        await database.close()


async def test_the_scan_counts_what_the_fold_can_order(
    memory: MongoUserMemoryRepository, database: MongoDatabase
) -> None:
    await append(database, make_events("dated", 51))
    await database.collection(USER_MEMORY).insert_many(
        [
            {"user_id": "undated", "role": "user", "content": f"m{i}", "created_at": "2026-01-01"}
            for i in range(60)
        ]
    )
    assert [u.user_id for u in await memory.users_over_threshold(50)] == ["dated"]


async def test_an_erase_tombstone_counts_until_it_expires_and_brings_its_own_ttl_index(
    database: MongoDatabase,
) -> None:
    """The erase fence without ``migrate``: a tombstone past its ``expires_at`` fences nothing, whether
    or not a TTL monitor has removed it, and ``mark`` makes the TTL index that removes tombstones (so
    an erased id never lingers)."""
    erased = ErasedUsers(database)
    tombstones = database.collection(ERASED_USERS)
    past = utc_now() - timedelta(seconds=1)
    await tombstones.insert_one({"_id": "old", "erased_at": past, "expires_at": past})  # no TTL index yet
    assert not await erased.erased("old") and not await erased.erased("u")
    await erased.mark("u", keep_s=60)
    assert await erased.erased("u")
    indexes = {i["name"]: i async for i in await tombstones.list_indexes()}
    assert indexes["expires"]["expireAfterSeconds"] == 0
    await ensure_indexes(database)  # migrate afterwards: the same index, no conflict


async def test_index_risks_of_a_store_that_does_not_answer_are_one_line_not_an_error(
    database: MongoDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker starting while the store restarts checks the indexes and runs on (it used to exit)."""
    gone: AsyncMongoClient[Any] = AsyncMongoClient(
        "mongodb://127.0.0.1:1/?directConnection=true", serverSelectionTimeoutMS=300
    )
    monkeypatch.setattr(database, "collection", lambda name: gone["x"][name])
    try:
        [risk] = await MongoMaintenance(database).index_risks()
    finally:
        await gone.close()
    assert risk.startswith(
        "the indexes could not be checked (the store did not answer: ServerSelectionTimeoutError)"
    )
