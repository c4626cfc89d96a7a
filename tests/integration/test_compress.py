"""The compression job against the real Mongo wire server, real Redis and a real HTTP LLM server."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import pytest
from redis.asyncio import Redis

from memcompress.jobs import Services, compress_now, run_compression
from memcompress.keys import lock_key
from memcompress.models import Outcome, UserProfile, Watermark
from memcompress.repositories.database import (
    COMPACTION_LOG,
    USER_MEMORY,
    USER_MEMORY_ARCHIVE,
    USER_PROFILES,
    MongoDatabase,
)
from memcompress.summarizers.carry import estimate_prompt_tokens
from memcompress.summarizers.openai_chat import OpenAISummarizer
from memcompress.testing import llm_server
from memcompress.testing.app_documents import app_event
from memcompress.testing.factories import T0, make_events
from memcompress.testing.invariant import check_invariant
from memcompress.testing.llm_server import FakeLLM
from memcompress.testing.workers import eventually
from tests.integration.conftest import ServicesFactory, append, until_held

pytestmark = pytest.mark.redis  # the per-user lock: also run against the machine's Redis 7 in CI


@pytest.fixture
def user() -> str:
    return f"user-{uuid.uuid4().hex[:8]}"


async def _assert_nothing_lost(database: MongoDatabase, llm: FakeLLM, appended: list[Any]) -> None:
    report = await check_invariant(database, llm, appended)
    assert report.lost == []
    assert report.summarised_twice == []
    assert report.checked == len(appended)


async def test_51_events_end_as_20_and_the_llm_answer(
    make_services: ServicesFactory, database: MongoDatabase, llm: FakeLLM, user: str
) -> None:
    services = make_services()
    events = make_events(user, 51)
    await append(database, events)

    record = await run_compression(services, user)

    assert record.outcome is Outcome.COMPRESSED
    assert (record.events_before, record.events_folded, record.events_after) == (51, 31, 20)
    remaining = await services.memory.get_recent_events(user, 100)
    assert [e.event_id for e in remaining] == [e.event_id for e in events[-20:]]
    profile = await services.profiles.get(user)
    assert profile.memory_summary == llm.exchanges[-1].answer
    assert await _still_stored(database, profile) == 0  # the mark stays, its events are gone
    assert profile.summary_version == 1
    assert profile.watermark == Watermark(created_at=events[30].created_at, event_id=events[30].event_id)
    assert llm.exchanges[0].texts == [e.content for e in events[:31]]
    await _assert_nothing_lost(database, llm, events)
    logged = await database.collection(COMPACTION_LOG).find_one({"user_id": user})
    assert logged is not None
    sent = estimate_prompt_tokens("".join(m["content"] for m in llm.exchanges[0].body["messages"]))
    assert (logged["outcome"], logged["llm_calls"], logged["prompt_tokens"]) == ("compressed", 1, sent)


async def test_compaction_log_lists_runs_newest_first(
    make_services: ServicesFactory, database: MongoDatabase, llm: FakeLLM, user: str
) -> None:
    services = make_services()
    await append(database, make_events(user, 60))
    first = await run_compression(services, user)
    second = await run_compression(services, user)
    await database.collection(COMPACTION_LOG).insert_one({"user_id": user, "outcome": "???"})
    recent = await services.compaction_log.recent(user_id=user)
    assert [r.outcome for r in recent] == [second.outcome, first.outcome]
    assert [r.outcome for r in recent] == [Outcome.SKIPPED, Outcome.COMPRESSED]
    assert len(await services.compaction_log.recent(limit=1)) == 1


async def test_at_threshold_is_skipped_and_recorded(
    make_services: ServicesFactory, database: MongoDatabase, llm: FakeLLM, user: str
) -> None:
    services = make_services()
    await append(database, make_events(user, 50))
    record = await run_compression(services, user)
    assert record.outcome is Outcome.SKIPPED
    assert await services.memory.count_events(user) == 50
    assert llm.requests == 0
    assert (
        await database.collection(COMPACTION_LOG).count_documents({"user_id": user, "outcome": "skipped"})
        == 1
    )


async def test_concurrent_appends_during_a_slow_summary_are_kept(
    make_services: ServicesFactory,
    database: MongoDatabase,
    llm: FakeLLM,
    user: str,
    patient_summarizer: OpenAISummarizer,
) -> None:
    services = make_services(patient_summarizer)  # a held call ends when the test says
    events = make_events(user, 60)
    await append(database, events)
    llm.hold()

    async def append_meanwhile() -> list[Any]:
        await until_held(llm)  # the run has read what it folds and waits for its summary
        late = make_events(user, 10, start=T0 + timedelta(hours=1), tag="late")
        # Clock skew: stamped before the newest event being folded.
        skewed = make_events(user, 5, start=T0 + timedelta(seconds=5), tag="skewed")
        await append(database, late + skewed)
        llm.release()
        return late + skewed

    record, added = await asyncio.gather(run_compression(services, user), append_meanwhile())
    assert record.outcome is Outcome.COMPRESSED
    stored_ids = {e.event_id for e in await services.memory.get_recent_events(user, 1000)}
    assert {e.event_id for e in added} <= stored_ids
    assert len(stored_ids) == 20 + len(added)
    await _assert_nothing_lost(database, llm, events + added)


async def test_chunks_feed_each_other_in_order(
    make_services: ServicesFactory, database: MongoDatabase, llm: FakeLLM, user: str
) -> None:
    services = make_services(chunk_chars=1000, batch_size=7)
    events = make_events(user, 120)
    await append(database, events)

    record = await run_compression(services, user)

    assert record.outcome is Outcome.COMPRESSED
    assert record.chunks == len(llm.exchanges) > 3
    assert llm.exchanges[0].previous_summary == "(none yet)"
    for earlier, later in zip(llm.exchanges, llm.exchanges[1:], strict=False):
        assert later.previous_summary == earlier.answer
    folded = [text for exchange in llm.exchanges for text in exchange.texts]
    assert folded == [e.content for e in events[:100]]
    assert (await services.profiles.get(user)).summary_version == record.chunks
    await _assert_nothing_lost(database, llm, events)


async def test_archive_retention_moves_exactly_the_folded_events(
    make_services: ServicesFactory, database: MongoDatabase, llm: FakeLLM, user: str
) -> None:
    services = make_services(retention="archive")
    events = make_events(user, 55)
    await append(database, events)
    await run_compression(services, user)
    archived = await database.collection(USER_MEMORY_ARCHIVE).find({"user_id": user}).to_list()
    assert sorted(d["event_id"] for d in archived) == sorted(str(e.event_id) for e in events[:35])
    assert await services.memory.count_events(user) == 20


async def test_malformed_documents_are_never_deleted(
    make_services: ServicesFactory, database: MongoDatabase, llm: FakeLLM, user: str
) -> None:
    services = make_services()
    events = make_events(user, 60)
    await append(database, events)
    bad = [
        {
            "user_id": user,
            "role": "user",
            "content": 5,
            "created_at": T0,
            "tags": [],
            "event_id": str(uuid.uuid4()),
        },
        {"user_id": user, "content": "no role", "created_at": T0 + timedelta(seconds=3)},
        {"user_id": user, "content": "bad date", "created_at": "2026-01-01"},
    ]
    await database.collection(USER_MEMORY).insert_many(bad)
    record = await run_compression(services, user)
    assert record.outcome is Outcome.COMPRESSED
    for doc in bad:
        assert await database.collection(USER_MEMORY).count_documents({"_id": doc["_id"]}) == 1
    await _assert_nothing_lost(database, llm, events)


# --- failures ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("behaviour", "error_class", "kind"),
    [
        (llm_server.HTTP_500, "RetryableSummarizerError", "retryable"),
        (llm_server.HTTP_429, "RetryableSummarizerError", "retryable"),
        (llm_server.HANG, "RetryableSummarizerError", "retryable"),
        (llm_server.GARBAGE, "RetryableSummarizerError", "retryable"),
        (llm_server.HTTP_400, "PermanentSummarizerError", "permanent"),
        (llm_server.EMPTY, "RejectedAnswer", "rejected_output"),
        (llm_server.ERROR_TEXT, "RejectedAnswer", "rejected_output"),
        (llm_server.CUT_OFF, "RejectedAnswer", "rejected_output"),
    ],
)
async def test_llm_failure_trims_nothing_and_is_recorded(
    make_services: ServicesFactory,
    database: MongoDatabase,
    llm: FakeLLM,
    user: str,
    behaviour: str,
    error_class: str,
    kind: str,
) -> None:
    llm.hang_s = 4  # longer than the client's 2 s timeout
    services = make_services()
    await append(database, make_events(user, 60))
    await services.profiles.get(user)
    await services.profiles.update_summary_if_version(
        user,
        expected_version=0,
        summary="earlier facts",
        watermark=Watermark(created_at=T0, event_id=str(uuid.uuid4())),
        folded_refs=[],
    )
    # An answer that is no summary gets one repair request: it fails only if that answer is none either.
    llm.fail_next(*([behaviour] * (2 if kind == "rejected_output" else 1)))

    record = await run_compression(services, user)

    assert record.outcome is Outcome.FAILED
    assert (record.error_class, record.retryable) == (error_class, kind != "permanent")
    assert await services.memory.count_events(user) == 60
    assert (await services.profiles.get(user)).memory_summary == "earlier facts"
    logged = await database.collection(COMPACTION_LOG).find_one({"user_id": user})
    assert logged is not None
    assert logged["outcome"] == "failed"
    assert logged["error_class"] == error_class
    failures = services.metrics.registry.get_sample_value(
        "memcompress_llm_failures_total", {"summarizer": "openai", "error_class": kind}
    )
    assert failures == llm.requests == record.llm_calls  # every request counted, its repair's too


async def test_failure_mid_chain_keeps_the_chunks_already_stored(
    make_services: ServicesFactory, database: MongoDatabase, llm: FakeLLM, user: str
) -> None:
    services = make_services(chunk_chars=1000)
    events = make_events(user, 80)
    await append(database, events)
    llm.fail_next(llm_server.OK, llm_server.OK, llm_server.HTTP_500)
    first = await run_compression(services, user)
    assert first.outcome is Outcome.FAILED
    assert first.chunks == 2
    await _assert_nothing_lost(database, llm, events)
    second = await run_compression(services, user)
    assert second.outcome is Outcome.COMPRESSED
    assert await services.memory.count_events(user) == 20
    await _assert_nothing_lost(database, llm, events)


# --- concurrency ---------------------------------------------------------------------------------


async def test_two_runs_together_one_compresses_the_other_finds_it_busy(
    make_services: ServicesFactory,
    database: MongoDatabase,
    llm: FakeLLM,
    user: str,
    patient_summarizer: OpenAISummarizer,
) -> None:
    services = make_services(patient_summarizer)  # a held call ends when the test says
    events = make_events(user, 70)
    await append(database, events)
    llm.hold()  # the run that takes the lock keeps it until the other has been turned away
    runs = [asyncio.create_task(run_compression(services, user)) for _ in range(2)]
    done, _ = await asyncio.wait(runs, timeout=60, return_when=asyncio.FIRST_COMPLETED)
    assert [run.result().outcome.value for run in done] == ["busy"]
    llm.release()
    outcomes = sorted(r.outcome.value for r in await asyncio.gather(*runs))
    assert outcomes == ["busy", "compressed"]
    assert llm.requests == 1
    assert services.metrics.registry.get_sample_value("memcompress_lock_contention_total") == 1
    await _assert_nothing_lost(database, llm, events)


async def test_a_stale_writer_is_fenced_and_deletes_nothing(
    make_services: ServicesFactory,
    database: MongoDatabase,
    llm: FakeLLM,
    user: str,
    patient_summarizer: OpenAISummarizer,
) -> None:
    services = make_services(patient_summarizer)  # a held call ends when the test says
    events = make_events(user, 70)
    await append(database, events)
    await services.profiles.get(user)
    llm.hold()

    async def another_writer_moves_the_version() -> None:
        await until_held(llm)  # the run has read version 0 and waits for its summary
        won = await services.profiles.update_summary_if_version(
            user,
            expected_version=0,
            summary="written by someone else",
            watermark=Watermark(created_at=T0, event_id=str(uuid.uuid4())),
            folded_refs=[],
        )
        assert won
        llm.release()

    record, _ = await asyncio.gather(run_compression(services, user), another_writer_moves_the_version())
    assert record.outcome is Outcome.CONFLICT
    assert await services.memory.count_events(user) == 70
    assert (await services.profiles.get(user)).memory_summary == "written by someone else"
    assert services.metrics.registry.get_sample_value("memcompress_version_conflicts_total") == 1


async def test_a_run_that_lost_its_lock_writes_nothing(
    make_services: ServicesFactory,
    database: MongoDatabase,
    redis: Redis,
    llm: FakeLLM,
    user: str,
    patient_summarizer: OpenAISummarizer,
) -> None:
    services = make_services(patient_summarizer)  # a held call ends when the test says
    await append(database, make_events(user, 70))
    llm.hold()

    async def lock_taken_over() -> None:
        await until_held(llm)  # the run holds the lock and waits for its summary
        await redis.set(lock_key(user, services.queue.name), b"someone-else")
        llm.release()

    record, _ = await asyncio.gather(run_compression(services, user), lock_taken_over())
    assert record.outcome is Outcome.CONFLICT
    assert "lock lost" in (record.reason or "")
    assert await services.memory.count_events(user) == 70
    assert await redis.get(lock_key(user, services.queue.name)) == b"someone-else"  # not ours: never deleted


async def test_the_lock_is_renewed_while_the_llm_works(
    make_services: ServicesFactory, database: MongoDatabase, redis: Redis, llm: FakeLLM, user: str
) -> None:
    llm.latency_s = 1.5
    services = make_services(lock_ttl_s=0.6, job_timeout_s=0.5, llm_timeout_s=0.4)
    events = make_events(user, 60)
    await append(database, events)
    record = await run_compression(services, user)
    assert record.outcome is Outcome.COMPRESSED
    assert await redis.exists(lock_key(user, services.queue.name)) == 0  # released at the end


async def _still_stored(database: MongoDatabase, profile: UserProfile) -> int:
    """How many of the events the profile's pending mark names are still stored. The mark is not
    cleared after its trim (the next summary write replaces it): its events being gone is what counts."""
    refs = profile.pending_trim.refs if profile.pending_trim else []
    ids = [ref["_id"] for ref in refs]
    return await database.collection(USER_MEMORY).count_documents({"_id": {"$in": ids}})


# --- crashes -------------------------------------------------------------------------------------


class Crash(BaseException):
    """Stands for the process dying: not an Exception, so nothing in the job handles it."""


class CrashingProxy:
    def __init__(self, inner: Any, method: str, *, after: bool = False, partial: bool = False) -> None:
        self._inner, self._method, self._after, self._partial = inner, method, after, partial
        self.armed = True

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._inner, name)
        if name != self._method or not self.armed:
            return attribute

        async def crashing(*args: Any, **kwargs: Any) -> Any:
            self.armed = False
            if self._partial:  # e.g. half of a delete went through: (user_id, refs)
                user_id, refs = args
                await attribute(user_id, refs[: len(refs) // 2])
            elif self._after:
                await attribute(*args, **kwargs)
            raise Crash(name)

        return crashing


@pytest.mark.parametrize(
    ("where", "target", "method", "options"),
    [
        ("after read", "summarizer", "summarize", {}),
        ("after LLM", "profiles", "update_summary_if_version", {}),
        ("after summary write", "profiles", "update_summary_if_version", {"after": True}),
        ("mid-delete", "memory", "delete_by_refs", {"partial": True}),
        ("after delete", "memory", "delete_by_refs", {"after": True}),
    ],
)
@pytest.mark.parametrize("retention", ["delete", "archive"])
async def test_a_crash_at_any_step_is_finished_by_the_next_run(
    make_services: ServicesFactory,
    database: MongoDatabase,
    redis: Redis,
    llm: FakeLLM,
    user: str,
    where: str,
    target: str,
    method: str,
    options: dict[str, bool],
    retention: str,
) -> None:
    if retention == "archive" and method == "delete_by_refs":
        method = "archive_by_refs"
    services: Services = make_services(chunk_chars=1500, retention=retention)
    events = make_events(user, 75)
    await append(database, events)
    original = getattr(services, target)
    setattr(services, target, CrashingProxy(original, method, **options))

    with pytest.raises(Crash):
        await run_compression(services, user)
    await redis.delete(
        lock_key(user, services.queue.name)
    )  # the dead process's lock would expire; skip the wait
    await _assert_nothing_lost(database, llm, events)

    setattr(services, target, original)
    record = await run_compression(services, user)
    assert record.outcome is Outcome.COMPRESSED, where
    assert await services.memory.count_events(user) == 20
    assert await _still_stored(database, await services.profiles.get(user)) == 0
    await _assert_nothing_lost(database, llm, events)


# --- app-chosen _ids -----------------------------------------------------------------------------


@pytest.mark.parametrize("retention", ["delete", "archive"])
@pytest.mark.parametrize("pending_refs", ["as written now", "bare _ids (an earlier version)"])
async def test_a_pending_trim_spares_documents_that_took_over_a_summarised_id(
    make_services: ServicesFactory,
    database: MongoDatabase,
    redis: Redis,
    llm: FakeLLM,
    user: str,
    retention: str,
    pending_refs: str,
) -> None:
    """The app chooses its own ``_id``s and reuses them: between a summary write and its trim, the
    ``_id`` of a summarised event is taken over by another user's event and by a newer event of the same
    user. Neither was summarised, so finishing the pending trim must leave both stored."""
    services: Services = make_services(retention=retention)
    other = f"other-{user}"
    docs = [
        app_event(user, "user", f"{user} said {i}", T0 + timedelta(seconds=i), _id=f"{user}:{i}")
        for i in range(60)
    ]
    await database.collection(USER_MEMORY).insert_many(docs)
    original = services.profiles
    services.profiles = CrashingProxy(original, "update_summary_if_version", after=True)  # type: ignore[assignment]
    with pytest.raises(Crash):
        await run_compression(services, user)
    services.profiles = original
    await redis.delete(lock_key(user, services.queue.name))
    profile = await database.collection(USER_PROFILES).find_one({"user_id": user})
    assert profile is not None and len(profile["pending_trim"]["refs"]) == 40
    if pending_refs.startswith("bare"):
        bare = [ref["_id"] for ref in profile["pending_trim"]["refs"]]
        await database.collection(USER_PROFILES).update_one(
            {"user_id": user}, {"$set": {"pending_trim.refs": bare}}
        )
    # The summarised events 0 and 1 go away, and their _ids are reused.
    await database.collection(USER_MEMORY).delete_many({"_id": {"$in": [f"{user}:0", f"{user}:1"]}})
    late = T0 + timedelta(hours=1)
    reused = [
        app_event(other, "user", "another user's event", late, _id=f"{user}:0"),
        app_event(user, "user", "a newer event of the same user", late, _id=f"{user}:1"),
    ]
    await database.collection(USER_MEMORY).insert_many([dict(d) for d in reused])

    record = await run_compression(services, user)

    # Bare _ids name no event: one reused by the same user cannot be told apart (it goes), but another
    # user's document is never matched.
    spared = reused[:1] if pending_refs.startswith("bare") else reused
    for doc in spared:
        stored = await database.collection(USER_MEMORY).find_one({"_id": doc["_id"]})
        assert stored is not None and stored["event_id"] == doc["event_id"], doc["content"]
    if pending_refs.startswith("bare"):
        return
    assert record.outcome is Outcome.SKIPPED  # 21 left: 20 kept and the newer event
    assert await services.memory.count_events(user) == 21


async def test_an_inline_compression_is_time_limited_like_a_job_and_continues_until_done(
    make_services: ServicesFactory,
    database: MongoDatabase,
    llm: FakeLLM,
    user: str,
    patient_summarizer: OpenAISummarizer,
) -> None:
    """``memcompress compress`` and ``run-once``: each run stops at the job timeout (so the erase fence
    outlasts it), and the command carries on in fresh runs while they move forward."""
    # The first run folds one chunk, then its next LLM call is held until the run's time limit stops
    # it (a limit that one chunk keeps within on a loaded machine).
    services = make_services(patient_summarizer, job_timeout_s=4.0, llm_timeout_s=3.0, chunk_chars=1000)
    events = make_events(user, 80)
    await append(database, events)
    llm.hold(passes=1)

    async def timed_out() -> bool:
        query = {"user_id": user, "error_class": "JobTimeout"}
        return await database.collection(COMPACTION_LOG).count_documents(query) > 0

    async def release_after_the_time_limit() -> None:
        await eventually(timed_out)
        llm.release()

    record, _ = await asyncio.gather(compress_now(services, user), release_after_the_time_limit())

    assert record.outcome is Outcome.COMPRESSED
    left = await services.memory.count_events(user)
    assert (record.events_before, record.events_folded, record.events_after) == (80, 80 - left, left)
    assert 20 <= left <= 50  # at most the threshold: fresh runs went on while it was over it
    runs = [d async for d in database.collection(COMPACTION_LOG).find({"user_id": user})]
    assert len(runs) >= 2 and runs[0]["error_class"] == "JobTimeout" and runs[0]["chunks"] == 1
    await _assert_nothing_lost(database, llm, events)
