"""The collections the chat app already wrote, exactly as its own repositories write them
(:mod:`memcompress.testing.app_documents`), on the real servers: profiles without our fields and with
nulls, the app's indexes (its 90-day TTL included), every kind of chat turn, and the app's ``save()``
writing a stale summary back between two runs."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import pytest

from memcompress.jobs import find_users, run_compression, run_queued_compression
from memcompress.models import Outcome, utc_now
from memcompress.repositories.database import USER_MEMORY, USER_PROFILES, MongoDatabase
from memcompress.testing.app_documents import app_event, app_profile, app_save, create_app_indexes
from memcompress.testing.llm_server import FakeLLM
from memcompress.testing.workers import eventually
from tests.integration.conftest import ServicesFactory, run_cli

pytestmark = pytest.mark.redis

PRIOR = "Lives in Kazan; order ORD-4471 arrives 2026-03-12; allergic to nuts."


def _recent(i: int) -> Any:
    """Within the app's 90-day TTL, so the server's TTL monitor leaves the test's events alone."""
    return utc_now() - timedelta(days=1) + timedelta(seconds=i)


def _turns(user: str, count: int) -> list[dict[str, Any]]:
    return [
        app_event(
            user, "user" if i % 2 == 0 else "assistant", f"{user} turn {i}: I like topic {i}.", _recent(i)
        )
        for i in range(count)
    ]


async def _stored_texts(database: MongoDatabase, user: str) -> set[str]:
    docs = database.collection(USER_MEMORY).find({"user_id": user}, {"content": 1})
    return {str(doc.get("content")) async for doc in docs}


def _summarised_texts(llm: FakeLLM) -> set[str]:
    return {text for exchange in llm.exchanges for text in exchange.texts}


async def test_an_app_profile_with_nulls_and_no_version_compresses_with_one_call(
    make_services: ServicesFactory, database: MongoDatabase, llm: FakeLLM
) -> None:
    user = f"app-{uuid.uuid4().hex[:8]}"
    await create_app_indexes(database)
    await database.collection(USER_PROFILES).insert_one(app_profile(user, memory_summary=PRIOR, tone=None))
    await database.collection(USER_MEMORY).insert_many(_turns(user, 90))

    record = await run_compression(make_services(), user)

    assert (record.outcome, llm.requests, record.events_folded) == (Outcome.COMPRESSED, 1, 70)
    assert await database.collection(USER_MEMORY).count_documents({"user_id": user}) == 20
    [exchange] = llm.exchanges
    assert exchange.previous_summary == PRIOR  # the app's summary is carried into the new one
    profile = await database.collection(USER_PROFILES).find_one({"user_id": user})
    assert profile is not None and profile["memory_summary"] == exchange.answer
    assert (profile["tone"], profile["persona"]) == (None, "Alfred-style дворецкий")  # app fields untouched


async def test_a_profile_stuck_in_conflict_ends_in_a_dead_letter_with_bounded_llm_calls(
    make_services: ServicesFactory, database: MongoDatabase, llm: FakeLLM
) -> None:
    user = f"stuck-{uuid.uuid4().hex[:8]}"
    services = make_services(max_tries=3)
    profiles = database.collection(USER_PROFILES)
    await profiles.insert_one(app_profile(user))
    await database.collection(USER_MEMORY).insert_many(_turns(user, 60))
    read_profile = services.profiles.find_for_fold

    async def another_writer_moves_the_version_after_each_read(user_id: str, since: Any) -> Any:
        state = await read_profile(user_id, since)
        await profiles.update_one({"user_id": user_id}, {"$inc": {"summary_version": 1}})
        return state

    services.profiles.find_for_fold = another_writer_moves_the_version_after_each_read  # type: ignore[method-assign]
    decisions = [await run_queued_compression(services, user, job_try) for job_try in (1, 2, 3)]

    assert [d.retry_in_s is not None for d in decisions] == [True, True, False]
    assert decisions[-1].result["outcome"] == "dead_letter"
    [letter] = await services.dead_letters.list()
    assert (letter.user_id, letter.tries, letter.error_class) == (user, 3, "VersionConflict")
    assert llm.requests == 3  # one summary per try, then it stops
    assert await database.collection(USER_MEMORY).count_documents({"user_id": user}) == 60


async def test_migrate_refuses_the_apps_ttl_index_unless_asked_for(
    database: MongoDatabase, cli_env: dict[str, str]
) -> None:
    await create_app_indexes(database)
    refused = await run_cli(cli_env, "migrate")
    assert refused.exit_code == 1
    assert "'created_at_ttl'" in refused.stderr and "dropIndex('created_at_ttl')" in refused.stderr
    accepted = await run_cli(cli_env | {"MEMCOMPRESS_MEMORY_TTL_DAYS": "90"}, "migrate")
    assert accepted.exit_code == 0, accepted.output
    assert "at risk" not in accepted.stderr


async def test_every_kind_of_chat_turn_is_folded_and_nothing_is_lost(
    make_services: ServicesFactory, database: MongoDatabase, llm: FakeLLM
) -> None:
    user = f"turns-{uuid.uuid4().hex[:8]}"
    kinds: list[dict[str, Any]] = [
        {"role": "system", "content": "You are Alfred."},
        {"role": "tool", "content": '{"weather": "sunny"}'},
        {"role": "developer", "content": "Keep answers short."},
        {"role": "assistant", "content": "A long answer. " * 800},  # 12,000 characters
        {
            "role": "user",
            "content": [{"type": "text", "text": "What is in this picture?"}, {"type": "image_url"}],
        },
        {"role": "user", "content": "no tags at all", "tags": None},
        {"role": "user", "content": "an id the app chose", "event_id": "msg-17"},
    ]
    docs = []
    for i in range(60):
        doc = app_event(user, "user", f"plain turn {i}", _recent(i)) | kinds[i % len(kinds)]
        if doc["content"] == "no tags at all":
            del doc["tags"]
        doc["content"] = doc["content"] if not isinstance(doc["content"], str) else f"{doc['content']} #{i}"
        docs.append(doc)
    await database.collection(USER_MEMORY).insert_many(docs)

    record = await run_compression(make_services(chunk_chars=20_000), user)

    assert record.outcome is Outcome.COMPRESSED and record.unfoldable == 0
    assert await database.collection(USER_MEMORY).count_documents({"user_id": user}) == 20
    stored, summarised = await _stored_texts(database, user), _summarised_texts(llm)
    for doc in docs:
        text = doc["content"] if isinstance(doc["content"], str) else "What is in this picture?\n[image_url]"
        assert str(doc["content"]) in stored or text in summarised, text[:40]


async def test_documents_the_fold_cannot_use_are_kept_and_never_count(
    make_services: ServicesFactory, database: MongoDatabase, llm: FakeLLM
) -> None:
    stuck, normal = f"stuck-{uuid.uuid4().hex[:8]}", f"normal-{uuid.uuid4().hex[:8]}"
    unusable = [
        app_event(stuck, "user", None, _recent(i)) if i % 3 == 0 else app_event(stuck, "", "x", _recent(i))
        for i in range(200)
    ]
    await database.collection(USER_MEMORY).insert_many([*unusable, *_turns(normal, 60)])
    services = make_services()

    assert [u.user_id for u in await find_users(services, limit=1)] == [normal]
    record = await run_compression(services, stuck)
    assert (record.outcome, record.unfoldable, llm.requests) == (Outcome.SKIPPED, 200, 0)
    assert await database.collection(USER_MEMORY).count_documents({"user_id": stuck}) == 200


async def test_a_stale_save_by_the_app_is_restored_and_nothing_folded_is_lost(
    make_services: ServicesFactory, database: MongoDatabase, llm: FakeLLM
) -> None:
    user = f"saver-{uuid.uuid4().hex[:8]}"
    services = make_services()
    profiles = database.collection(USER_PROFILES)
    await profiles.insert_one(app_profile(user))
    memory = database.collection(USER_MEMORY)
    await memory.insert_many(_turns(user, 60))
    assert (await run_compression(services, user)).outcome is Outcome.COMPRESSED
    stale = await profiles.find_one({"user_id": user})  # the app reads its profile here ...
    assert stale is not None
    await memory.insert_many([app_event(user, "user", f"later {i}", _recent(100 + i)) for i in range(40)])
    assert (await run_compression(services, user)).outcome is Outcome.COMPRESSED
    latest = (await profiles.find_one({"user_id": user}) or {})["memory_summary"]

    await app_save(database, stale | {"tone": "dry"})  # ... and saves it back after the second fold

    record = await run_compression(services, user)
    assert record.summary_repaired == "restored"
    profile = await profiles.find_one({"user_id": user})
    assert profile is not None and profile["memory_summary"] == latest  # the second fold's events are back
    assert profile["tone"] == "dry"  # the app's own change stays
    assert (
        services.metrics.registry.get_sample_value(
            "memcompress_summary_overwrites_total", {"action": "restored"}
        )
        == 1
    )


async def test_a_summary_the_app_wrote_itself_is_merged_not_dropped(
    make_services: ServicesFactory, database: MongoDatabase, llm: FakeLLM
) -> None:
    user = f"writer-{uuid.uuid4().hex[:8]}"
    services = make_services()
    profiles = database.collection(USER_PROFILES)
    await profiles.insert_one(app_profile(user))
    await database.collection(USER_MEMORY).insert_many(_turns(user, 60))
    assert (await run_compression(services, user)).outcome is Outcome.COMPRESSED
    ours = (await profiles.find_one({"user_id": user}) or {})["memory_summary"]

    await profiles.update_one({"user_id": user}, {"$set": {"memory_summary": PRIOR}})

    record = await run_compression(services, user)  # under the threshold now: only the repair
    assert (record.outcome, record.summary_repaired) == (Outcome.SKIPPED, "merged")
    merged = (await profiles.find_one({"user_id": user}) or {})["memory_summary"]
    assert ours in merged and PRIOR in merged


async def test_an_app_save_of_the_summary_during_the_llm_call_wins_and_is_merged_next_run(
    make_services: ServicesFactory, database: MongoDatabase, llm: FakeLLM
) -> None:
    user = f"racer-{uuid.uuid4().hex[:8]}"
    services = make_services()
    profiles, memory = database.collection(USER_PROFILES), database.collection(USER_MEMORY)
    await profiles.insert_one(app_profile(user))
    await memory.insert_many(_turns(user, 60))
    assert (await run_compression(services, user)).outcome is Outcome.COMPRESSED
    ours = (await profiles.find_one({"user_id": user}) or {})["memory_summary"]
    later = [app_event(user, "user", f"later turn {i}: I like {i}.", _recent(100 + i)) for i in range(60)]
    await memory.insert_many(later)
    llm.latency_s = 1.0

    async def app_saves_during_the_llm_call() -> None:
        async def asked() -> bool:
            return llm.requests == 2

        await eventually(asked, within_s=30)
        app = await profiles.find_one({"user_id": user})
        assert app is not None
        await app_save(database, app | {"memory_summary": PRIOR})  # no summary_version bump

    record, _ = await asyncio.gather(run_compression(services, user), app_saves_during_the_llm_call())
    assert record.outcome is Outcome.CONFLICT and record.events_folded == 0
    assert await memory.count_documents({"user_id": user}) == 80  # nothing trimmed
    assert (await profiles.find_one({"user_id": user}) or {})["memory_summary"] == PRIOR  # the app's stands

    llm.latency_s = 0
    record = await run_compression(services, user)
    assert (record.outcome, record.summary_repaired) == (Outcome.COMPRESSED, "merged")
    summary = (await profiles.find_one({"user_id": user}) or {})["memory_summary"]
    assert ours in summary and PRIOR in summary  # both texts kept
    last = llm.exchanges[-1]
    assert PRIOR in last.previous_summary  # summarised on
    stored = await _stored_texts(database, user)
    assert all(doc["content"] in stored or doc["content"] in last.texts for doc in later)
