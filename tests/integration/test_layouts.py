"""The other two stores of the app (MEMCOMPRESS_LAYOUT=messages and =conversations), on the real
servers, with documents exactly as those stores' own code writes them: folded to KEEP_LAST, every message
still stored, archived, or inside a summary that came from a request containing it (the invariant
checker, per layout), through crashes at every step, appends during a slow LLM call and duplicate runs."""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta

import pytest
from bson import ObjectId
from redis.asyncio import Redis

from memcompress.jobs import Services, run_compression, scan_and_enqueue
from memcompress.keys import lock_key
from memcompress.layouts import LayoutName, StoreLayout
from memcompress.models import MemoryEvent, Outcome
from memcompress.repositories.database import MongoDatabase
from memcompress.summarizers.openai_chat import OpenAISummarizer
from memcompress.testing.factories import T0
from memcompress.testing.invariant import check_invariant
from memcompress.testing.layout_documents import (
    CONVERSATIONS,
    MESSAGES,
    app_message,
    append_message,
    conversation_message,
    create_conversation,
    create_conversation_indexes,
    create_message_indexes,
)
from memcompress.testing.llm_server import FakeLLM
from memcompress.testing.workers import PASSED_THROUGH, start_worker, worker_env
from tests.integration.conftest import ServicesFactory, run_cli
from tests.integration.test_compress import Crash, CrashingProxy

LAYOUTS = ["messages", "conversations"]


@dataclass
class AppStore:
    """Writes what the layout's own repository writes, and remembers it as events for the checker."""

    database: MongoDatabase
    layout: LayoutName
    written: list[MemoryEvent]

    async def unit(self) -> str:
        """A new lead (messages) or conversation (conversations): its id as memcompress names it."""
        if self.layout == "conversations":
            return await create_conversation(self.database, f"user-{uuid.uuid4().hex[:6]}")
        return f"+52155{uuid.uuid4().int % 10**8:08d}"

    async def write(self, unit: str, count: int, *, start: int = 0, tag: str = "m") -> None:
        for i in range(start, start + count):
            role = "user" if i % 2 == 0 else "assistant"
            content = f"{tag} {unit[-6:]} #{i}: order ORD-{i:04d} noted"
            at = T0 + timedelta(seconds=i)
            if self.layout == "conversations":
                await append_message(self.database, unit, conversation_message(role, content, at))
            else:
                await self.database.collection(MESSAGES).insert_one(app_message(unit, role, content, at))
            self.written.append(MemoryEvent(user_id=unit, role=role, content=content, created_at=at))

    async def stored(self, unit: str) -> int:
        if self.layout == "conversations":
            doc = await self.database.collection(CONVERSATIONS).find_one({"_id": _oid(unit)})
            return len((doc or {}).get("messages") or [])
        return await self.database.collection(MESSAGES).count_documents({"lead_id": unit})


def _oid(unit: str) -> ObjectId:
    return ObjectId(unit)


@pytest.fixture(params=LAYOUTS)
async def store(request: pytest.FixtureRequest, database: MongoDatabase) -> AppStore:
    layout = request.param
    await (create_conversation_indexes if layout == "conversations" else create_message_indexes)(database)
    return AppStore(database, layout, [])


async def _until_asked(llm: FakeLLM, within_s: float = 60) -> None:
    """Until the LLM server has a request (the run holds the lock and waits for its answer)."""
    for _ in range(int(within_s * 20)):
        if llm.requests:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the run never asked the LLM")


async def _assert_nothing_lost(database: MongoDatabase, llm: FakeLLM, store: AppStore) -> None:
    report = await check_invariant(database, llm, store.written, StoreLayout.default(store.layout))
    assert report.lost == []
    assert report.summarised_twice == []
    assert report.checked == len(store.written)


async def test_units_over_the_threshold_are_found_and_folded_to_keep_last(
    make_services: ServicesFactory, database: MongoDatabase, llm: FakeLLM, store: AppStore
) -> None:
    services: Services = make_services(layout=store.layout, chunk_chars=2000)
    await services.maintenance.ensure_indexes()
    big, bigger, small = await store.unit(), await store.unit(), await store.unit()
    await store.write(big, 55)
    await store.write(bigger, 130)
    await store.write(small, 50)

    scan = await scan_and_enqueue(services)
    assert [(u.user_id, u.event_count) for u in scan.users] == [(bigger, 130), (big, 55)]

    for unit in (big, bigger, small):
        record = await run_compression(services, unit)
        assert record.outcome is (Outcome.SKIPPED if unit == small else Outcome.COMPRESSED), record.reason
    assert [await store.stored(u) for u in (big, bigger, small)] == [20, 20, 50]
    assert llm.requests > 2  # the 110 folded messages of `bigger` took more than one chunk
    for unit in (big, bigger):
        profile = await services.profiles.get(unit)
        assert profile.memory_summary in [exchange.answer for exchange in llm.exchanges]
        # the newest 20 are the ones kept, in order
        kept = [e.content for e in await services.memory.get_recent_events(unit, 100)]
        assert kept == [e.content for e in store.written if e.user_id == unit][-20:]
    await _assert_nothing_lost(database, llm, store)
    if store.layout == "messages":  # the lead's summary is in user_profiles under its id
        assert await database.collection("user_profiles").count_documents({"user_id": big}) == 1


async def test_messages_appended_during_a_slow_summary_are_all_kept(
    make_services: ServicesFactory,
    database: MongoDatabase,
    llm: FakeLLM,
    store: AppStore,
    patient_summarizer: OpenAISummarizer,
) -> None:
    services = make_services(patient_summarizer, layout=store.layout)  # its LLM call ends when released
    unit = await store.unit()
    await store.write(unit, 60)
    llm.hold()
    run = asyncio.create_task(run_compression(services, unit))
    await _until_asked(llm)
    await store.write(unit, 7, start=60, tag="late")  # while the LLM works
    llm.release()
    record = await run
    assert record.outcome is Outcome.COMPRESSED
    assert await store.stored(unit) == 20 + 7
    await _assert_nothing_lost(database, llm, store)


async def test_duplicate_runs_at_once_fold_once(
    make_services: ServicesFactory, database: MongoDatabase, llm: FakeLLM, store: AppStore
) -> None:
    first, second = make_services(layout=store.layout), make_services(layout=store.layout)
    unit = await store.unit()
    await store.write(unit, 70)
    llm.hold()  # the run that takes the lock keeps it until the other has been turned away
    runs = [asyncio.create_task(run_compression(services, unit)) for services in (first, second)]
    done, _ = await asyncio.wait(runs, timeout=60, return_when=asyncio.FIRST_COMPLETED)
    assert [run.result().outcome.value for run in done] == ["busy"]
    llm.release()
    records = await asyncio.gather(*runs)
    assert sorted(r.outcome.value for r in records) == ["busy", "compressed"]
    assert await store.stored(unit) == 20
    await _assert_nothing_lost(database, llm, store)


async def test_a_stale_writer_loses_and_cuts_nothing(
    make_services: ServicesFactory, database: MongoDatabase, llm: FakeLLM, store: AppStore
) -> None:
    services = make_services(layout=store.layout)
    unit = await store.unit()
    await store.write(unit, 60)
    profile = await services.profiles.find(unit)
    version = profile.summary_version if profile else 0
    assert await services.profiles.update_summary_if_version(
        unit,
        expected_version=version,
        summary="another writer",
        watermark=None,
        folded_refs=[],
        create=profile is None,
    )
    won = await services.profiles.update_summary_if_version(
        unit, expected_version=version, summary="stale", watermark=None, folded_refs=[], create=False
    )
    assert not won
    # At the right version, a writer that read another summary text (an app's save came between) loses.
    write = {"expected_version": version + 1, "watermark": None, "folded_refs": [], "create": False}
    for read in ("an older text", None):
        assert not await services.profiles.update_summary_if_version(
            unit, summary="stale", expected_summary=read, **write
        )
    assert (await services.profiles.get(unit)).memory_summary == "another writer"
    assert await store.stored(unit) == 60
    assert await services.profiles.update_summary_if_version(
        unit, summary="next", expected_summary="another writer", **write
    )


@pytest.mark.parametrize(
    ("where", "target", "method", "options"),
    [
        ("after LLM", "profiles", "update_summary_if_version", {}),
        ("after summary write", "profiles", "update_summary_if_version", {"after": True}),
        ("mid-trim", "memory", "delete_by_refs", {"partial": True}),
        ("after trim", "memory", "delete_by_refs", {"after": True}),
    ],
)
@pytest.mark.parametrize("retention", ["delete", "archive"])
async def test_a_crash_at_any_step_is_finished_by_the_next_run(
    make_services: ServicesFactory,
    database: MongoDatabase,
    redis: Redis,
    llm: FakeLLM,
    store: AppStore,
    where: str,
    target: str,
    method: str,
    options: dict[str, bool],
    retention: str,
) -> None:
    if retention == "archive" and method == "delete_by_refs":
        method = "archive_by_refs"
    services: Services = make_services(layout=store.layout, chunk_chars=1500, retention=retention)
    unit = await store.unit()
    await store.write(unit, 75)
    original = getattr(services, target)
    setattr(services, target, CrashingProxy(original, method, **options))
    with pytest.raises(Crash):
        await run_compression(services, unit)
    await redis.delete(
        lock_key(unit, services.queue.name)
    )  # the dead process's lock would expire; skip the wait
    await _assert_nothing_lost(database, llm, store)

    setattr(services, target, original)
    record = await run_compression(services, unit)
    assert record.outcome is Outcome.COMPRESSED, where
    assert await store.stored(unit) == 20
    await _assert_nothing_lost(database, llm, store)
    if retention == "archive":
        layout = StoreLayout.default(store.layout)
        assert await database.collection(layout.archive).count_documents({}) == 55


async def test_conversation_cut_is_exact_and_a_repeat_cuts_nothing(
    make_services: ServicesFactory, database: MongoDatabase
) -> None:
    services = make_services(layout="conversations")
    unit = await create_conversation(database, "u-1")
    for i in range(10):
        await append_message(database, unit, conversation_message("user", f"c{i}", T0 + timedelta(seconds=i)))
    refs = [{"seq": s, "user_id": unit} for s in range(4)]
    assert await services.memory.delete_by_refs(unit, refs) == 4
    assert await services.memory.delete_by_refs(unit, refs) == 0  # the same prefix is not cut twice
    assert await services.memory.delete_by_refs(unit, refs[:2]) == 0
    await append_message(database, unit, conversation_message("user", "c10", T0 + timedelta(seconds=10)))
    later = [{"seq": s, "user_id": unit} for s in (4, 5, 7)]  # 6 is missing: the run ends at 5
    assert await services.memory.delete_by_refs(unit, later) == 2
    doc = await database.collection(CONVERSATIONS).find_one({"_id": _oid(unit)})
    assert [m["content"] for m in doc["messages"]] == ["c6", "c7", "c8", "c9", "c10"]
    assert doc["memory_trimmed"] == 6
    skipped = [{"seq": s, "user_id": unit} for s in (8, 9)]  # not at the front: nothing is cut
    assert await services.memory.delete_by_refs(unit, skipped) == 0
    assert await services.memory.count_events(unit) == 5


async def test_a_message_the_fold_cannot_read_stays_with_everything_after_it(
    make_services: ServicesFactory, database: MongoDatabase, llm: FakeLLM
) -> None:
    services = make_services(layout="conversations", batch_size=10)
    unit = await create_conversation(database, "u-2")
    for i in range(60):
        message = conversation_message("user", f"c{i}", T0 + timedelta(seconds=i))
        if i == 30:  # written by another program: no timestamp
            del message["timestamp"]
        await append_message(database, unit, message)
    record = await run_compression(services, unit)
    assert record.outcome is Outcome.COMPRESSED
    doc = await database.collection(CONVERSATIONS).find_one({"_id": _oid(unit)})
    assert "timestamp" not in doc["messages"][0]  # the fold stopped before it
    assert len(doc["messages"]) == 30
    assert [t for e in llm.exchanges for t in e.texts] == [f"c{i}" for i in range(30)]


@pytest.mark.parametrize(
    "empty",
    ["", [{"type": "text", "text": ""}], [{"type": "text", "text": ""}, ""]],
    ids=["empty string", "one empty text part", "only empty parts"],
)
async def test_an_empty_message_is_folded_once_and_the_conversation_ends_at_keep_last(
    make_services: ServicesFactory, database: MongoDatabase, llm: FakeLLM, empty: object
) -> None:
    services = make_services(layout="conversations")
    unit = await create_conversation(database, "u-5")
    for i in range(60):
        content = empty if i == 5 else f"c{i}"
        message = {"role": "user", "content": content, "timestamp": T0 + timedelta(seconds=i)}
        await append_message(database, unit, message)
    assert (await run_compression(services, unit)).outcome is Outcome.COMPRESSED
    asked = llm.requests

    for _ in range(3):  # later runs: nothing over the threshold, no message sent again
        assert (await run_compression(services, unit)).outcome is Outcome.SKIPPED
    assert llm.requests == asked
    doc = await database.collection(CONVERSATIONS).find_one({"_id": _oid(unit)})
    assert [m["content"] for m in doc["messages"]] == [f"c{i}" for i in range(40, 60)]
    sent = [t for e in llm.exchanges for t in e.texts]
    assert sent == [f"c{i}" for i in range(5)] + ["[empty message]"] + [f"c{i}" for i in range(6, 40)]


async def test_an_app_pull_during_the_llm_call_stops_the_cut_and_loses_nothing(
    make_services: ServicesFactory, database: MongoDatabase, llm: FakeLLM
) -> None:
    store = AppStore(database, "conversations", [])
    services = make_services(layout="conversations")
    unit = await store.unit()
    await store.write(unit, 60)
    llm.latency_s = 1.0
    run = asyncio.create_task(run_compression(services, unit))
    await _until_asked(llm)
    pulled = store.written.pop(5)  # the app removes a message the run is summarising
    await database.collection(CONVERSATIONS).update_one(
        {"_id": _oid(unit)}, {"$pull": {"messages": {"content": pulled.content}}}
    )
    record = await run
    assert record.outcome is Outcome.CONFLICT  # retried like a conflict
    assert "another program removed or reordered summarised messages" in (record.reason or "")
    assert await store.stored(unit) == 59  # nothing cut
    await _assert_nothing_lost(database, llm, store)

    # The next run is not blocked: the messages still stored are summarised again (the one case of a
    # message sent twice: the app broke the append-only rule), and the conversation ends at KEEP_LAST.
    assert (await run_compression(services, unit)).outcome is Outcome.COMPRESSED
    assert await store.stored(unit) == 20
    report = await check_invariant(database, llm, store.written, StoreLayout.default(store.layout))
    assert report.lost == [] and report.checked == len(store.written)


async def test_a_pending_trim_of_messages_the_app_removed_meanwhile_is_dropped_not_a_block(
    make_services: ServicesFactory, database: MongoDatabase, redis: Redis, llm: FakeLLM
) -> None:
    store = AppStore(database, "conversations", [])
    services: Services = make_services(layout="conversations")
    unit = await store.unit()
    await store.write(unit, 60)
    original = services.memory
    services.memory = CrashingProxy(original, "archive_by_refs")  # type: ignore[assignment]
    with pytest.raises(Crash):
        await run_compression(services, unit)  # the summary is stored, the cut never happens
    await redis.delete(lock_key(unit, services.queue.name))
    services.memory = original
    pulled = store.written.pop(3)  # then the app removes a summarised message
    await database.collection(CONVERSATIONS).update_one(
        {"_id": _oid(unit)}, {"$pull": {"messages": {"content": pulled.content}}}
    )

    record = await run_compression(services, unit)

    assert record.outcome is Outcome.COMPRESSED, record.reason
    assert await store.stored(unit) == 20
    report = await check_invariant(database, llm, store.written, StoreLayout.default(store.layout))
    assert report.lost == [] and report.checked == len(store.written)


async def test_forget_status_and_the_cli_in_each_layout(
    cli_env: dict[str, str], database: MongoDatabase, store: AppStore
) -> None:
    env = cli_env | {
        "MEMCOMPRESS_LAYOUT": store.layout,
        "MEMCOMPRESS_QUEUE_NAME": f"t:{uuid.uuid4().hex[:8]}",
    }
    assert (await run_cli(env, "migrate")).exit_code == 0
    unit = await store.unit()
    await store.write(unit, 60)
    scan = await run_cli(env, "scan", "--dry-run", "--json")
    assert scan.exit_code == 0, scan.output
    assert [u["user_id"] for u in json.loads(scan.stdout)["users"]] == [unit]
    ran = await run_cli(env, "run-once", "--json")
    assert ran.exit_code == 0, ran.output
    assert await store.stored(unit) == 20
    status = await run_cli(env, "status", "--json")
    assert status.exit_code == 0, status.output
    forgot = await run_cli(env, "forget", unit, "--yes", "--json")
    assert forgot.exit_code == 0, forgot.output
    assert await store.stored(unit) == 0
    layout = StoreLayout.default(store.layout)
    assert await database.collection(layout.archive).count_documents({}) == 0  # the extractive archive too


@pytest.mark.redis
async def test_after_kill_9_mid_run_the_next_run_finishes_with_nothing_lost(
    mongo_uri: str, db_name: str, redis_url: str, llm: FakeLLM, database: MongoDatabase, store: AppStore
) -> None:
    unit = await store.unit()
    await store.write(unit, 60)
    env = {name: os.environ[name] for name in PASSED_THROUGH if name in os.environ} | {
        "MEMCOMPRESS_MONGODB_URI": mongo_uri,
        "MEMCOMPRESS_MONGODB_DB": db_name,
        "MEMCOMPRESS_REDIS_URL": redis_url,
        "MEMCOMPRESS_QUEUE_NAME": f"test:{uuid.uuid4().hex[:10]}",
        "MEMCOMPRESS_LLM_BASE_URL": llm.base_url,
        "MEMCOMPRESS_LLM_API_KEY": "test-key",
        "MEMCOMPRESS_LAYOUT": store.layout,
    }
    argv = [sys.executable, "-m", "memcompress", "compress", unit, "--json"]
    quiet = asyncio.subprocess.DEVNULL
    # The dead run's lock must outlast the start of the next run (so that it finds the unit busy), and
    # then expire soon: a few times as long as a whole run takes on this machine now.
    idle_unit = await store.unit()
    started = time.monotonic()
    timed = await asyncio.create_subprocess_exec(*argv[:-2], idle_unit, "--json", env=env, stdout=quiet)
    assert await timed.wait() == 0  # nothing to fold there: a run without the LLM
    env["MEMCOMPRESS_LOCK_TTL_S"] = str(max(3, math.ceil(6 * (time.monotonic() - started))))
    llm.hold()  # the run waits for its LLM answer, holding the lock, until it is killed
    first = await asyncio.create_subprocess_exec(*argv, env=env, stdout=quiet, stderr=quiet)
    try:
        await _until_asked(llm)
        first.send_signal(signal.SIGKILL)
        await first.wait()
        await store.write(unit, 5, start=60, tag="after-kill")
        llm.release()
        outcomes: list[str] = []
        for _ in range(60):  # the dead run's lock expires by itself (MEMCOMPRESS_LOCK_TTL_S)
            again = await asyncio.create_subprocess_exec(
                *argv, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
            )
            out, err = await again.communicate()
            assert again.returncode == 0, err.decode()
            outcomes.append(json.loads(out)["outcome"])
            if outcomes[-1] != "busy":
                break
            await asyncio.sleep(0.5)
    finally:
        if first.returncode is None:
            first.kill()
            await first.wait()
    assert outcomes[0] == "busy"  # the killed run held the lock
    outcome = outcomes[-1]
    assert outcome == "compressed"
    assert await store.stored(unit) == 20
    await _assert_nothing_lost(database, llm, store)


@pytest.mark.redis
async def test_two_worker_processes_compress_every_unit_once(
    mongo_uri: str,
    db_name: str,
    redis_url: str,
    llm: FakeLLM,
    database: MongoDatabase,
    store: AppStore,
    make_services: ServicesFactory,
) -> None:
    queue = f"test:{uuid.uuid4().hex[:10]}"
    units = [await store.unit() for _ in range(12)]
    for unit in units:
        await store.write(unit, 55)
    scan = await scan_and_enqueue(make_services(layout=store.layout, queue_name=queue))
    assert scan.enqueued == 12
    env = worker_env(
        mongo_uri,
        db_name,
        redis_url,
        queue,
        layout=store.layout,
        llm_base_url=llm.base_url,
        llm_api_key="test-key",
        llm_max_retries=0,
    )
    workers = [start_worker(env, burst=True) for _ in range(2)]
    try:
        assert [worker.wait(timeout=300) for worker in workers] == [0, 0]
    finally:
        for worker in workers:
            worker.stop()
            worker.log_path.unlink(missing_ok=True)
    assert [await store.stored(unit) for unit in units] == [20] * 12
    assert llm.requests == 12
    await _assert_nothing_lost(database, llm, store)


async def test_conversations_another_program_broke_are_passed_over_and_left_as_they_are(
    make_services: ServicesFactory, database: MongoDatabase
) -> None:
    services = make_services(layout="conversations")
    conversations = database.collection(CONVERSATIONS)
    broken = [{"messages": "not a list"}, {"messages": None}, {"user_id": "u-3"}]
    await conversations.insert_many([dict(doc) for doc in broken])
    good = await create_conversation(database, "u-4")
    for i in range(60):
        await append_message(database, good, conversation_message("user", f"g{i}", T0 + timedelta(seconds=i)))

    scan = await scan_and_enqueue(services)
    assert [u.user_id for u in scan.users] == [good]
    async for doc in conversations.find({"_id": {"$ne": ObjectId(good)}}):
        record = await run_compression(services, str(doc["_id"]))
        assert record.outcome is Outcome.SKIPPED
        assert await services.memory.delete_by_refs(str(doc["_id"]), [{"seq": 0}]) == 0
    assert sorted(
        [
            {k: v for k, v in doc.items() if k != "_id"}
            async for doc in conversations.find({"_id": {"$ne": ObjectId(good)}})
        ],
        key=repr,
    ) == sorted(broken, key=repr)


async def test_the_messages_ttl_index_is_reported_with_a_fix_that_exists(
    make_services: ServicesFactory, database: MongoDatabase
) -> None:
    await create_message_indexes(database)
    await database.collection(MESSAGES).create_index([("created_at", 1)], expireAfterSeconds=365 * 86_400)
    risks = await make_services(layout="messages").maintenance.index_risks()
    risks = [risk for risk in risks if "TTL index" in risk]  # not the profiles' index (none here)
    assert len(risks) == 1
    assert "db.messages.dropIndex('created_at_1')" in risks[0] and "messages_archive" in risks[0]
    assert "MEMCOMPRESS_MEMORY_TTL_DAYS=365" not in risks[0]  # refused outside user_memory
