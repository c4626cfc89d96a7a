"""``memcompress user`` and ``queue list``'s tries, age and last error, on real servers: the state a
failed LLM leaves (compaction records, a dead letter), a queued job with tries started, a held lock."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from redis.asyncio import Redis

from memcompress.embedded import free_port
from memcompress.jobs import run_queued_compression
from memcompress.keys import job_id, lock_key
from memcompress.repositories.database import USER_MEMORY, MongoDatabase
from memcompress.testing.app_documents import app_event, app_profile, app_save
from memcompress.testing.llm_server import HTTP_400, FakeLLM

from .conftest import ServicesFactory, run_cli

pytestmark = pytest.mark.redis
T0 = datetime(2026, 3, 1, tzinfo=UTC)
SECRET = "my passport number is 4512 998877"
SUMMARY = "The user keeps a passport 4512 998877."


async def seed(database: MongoDatabase, user: str, events: int) -> None:
    await app_save(database, app_profile(user, memory_summary=SUMMARY, language="en"))
    await database.collection(USER_MEMORY).insert_many(
        [
            app_event(
                user,
                "user" if i % 2 == 0 else "assistant",
                f"{SECRET} (message {i})",
                T0 + timedelta(minutes=i),
            )
            for i in range(events)
        ]
    )


@pytest.fixture
def queue() -> str:
    return f"test:{uuid.uuid4().hex[:10]}"


@pytest.fixture
def env(cli_env: dict[str, str], queue: str) -> dict[str, str]:
    return cli_env | {
        "MEMCOMPRESS_QUEUE_NAME": queue,
        "MEMCOMPRESS_REQUESTS_KEY": f"{queue}:requests",
        "MEMCOMPRESS_THRESHOLD": "10",
        "MEMCOMPRESS_KEEP_LAST": "5",
        "MEMCOMPRESS_LOCK_TTL_S": "10",  # as the workers have it: "renewed ago" is read against it
    }


async def test_user_shows_what_happened_to_a_user_whose_llm_failed(
    make_services: ServicesFactory,
    database: MongoDatabase,
    redis: Redis,
    llm: FakeLLM,
    env: dict[str, str],
    queue: str,
) -> None:
    user = f"u-{uuid.uuid4().hex[:8]}"
    await seed(database, user, 30)
    services = make_services(queue_name=queue, requests_key=f"{queue}:requests", threshold=10, keep_last=5)
    llm.fail_next(HTTP_400)  # permanent: the first try dead-letters the user
    decision = await run_queued_compression(services, user, 1)
    assert decision.result["outcome"] == "dead_letter"
    assert await services.queue.request(user) is True
    await redis.set(f"arq:retry:{job_id(user, queue)}", 2)  # two tries started (arq counts them there)
    try:
        async with services.locks.hold(user):
            result = await run_cli(env, "user", user, "--json")
            text = await run_cli(env, "user", user)
            listed = await run_cli(env, "queue", "list", "--json")
            listed_text = await run_cli(env, "queue", "list")
    finally:
        await redis.delete(f"arq:retry:{job_id(user, queue)}", f"arq:job:{job_id(user, queue)}")

    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["profile"] == report["profile"] | {"summary_version": 0, "summary_chars": len(SUMMARY)}
    assert report["profile"]["language"] == "en"
    assert report["events"] == report["events"] | {"stored": 30, "archived": 0, "foldable": 30}
    assert report["events"]["would_fold_now"] == 25
    assert report["lock"] is not None and report["lock"]["stale"] is False
    assert report["job"] == report["job"] | {"running": False, "tries": 2}
    assert report["job"]["age_s"] >= 0
    letter = report["dead_letter"]
    assert (letter["tries"], letter["error_class"]) == (1, "PermanentSummarizerError")
    [run] = report["compactions"]
    assert (run["outcome"], run["llm_calls"], run["events_folded"]) == ("failed", 1, 0)
    assert report["last_error"]["error_class"] == "PermanentSummarizerError"
    assert "summary" not in report
    for shown in (result.output, text.output, listed.output, listed_text.output):
        assert "passport" not in shown and "4512" not in shown  # no content, no summary text
    assert "DEAD LETTER:" in text.output and "job: queued" in text.output and "2 tries started" in text.output

    [job] = json.loads(listed.output)["jobs"]
    assert job == job | {"user_id": user, "tries": 2, "running": False}
    assert job["last_error"]["error_class"] == "PermanentSummarizerError" and job["age_s"] >= 0
    assert "tries 2" in listed_text.output and "last error PermanentSummarizerError" in listed_text.output


async def test_user_shows_the_summary_only_when_asked(database: MongoDatabase, env: dict[str, str]) -> None:
    user = f"u-{uuid.uuid4().hex[:8]}"
    await seed(database, user, 3)
    shown = await run_cli(env, "user", user, "--show-summary", "--json")
    assert json.loads(shown.output)["summary"] == SUMMARY
    assert SUMMARY in (await run_cli(env, "user", user, "--show-summary")).output
    plain = await run_cli(env, "user", user)
    assert plain.exit_code == 0 and SUMMARY not in plain.output
    assert "next run would fold 0: not over the threshold" in plain.output


async def test_an_unknown_user_is_exit_1_with_a_hint(env: dict[str, str]) -> None:
    result = await run_cli(env, "user", "nobody-" + uuid.uuid4().hex)
    assert result.exit_code == 1
    assert "nothing stored for this id — check the id" in result.output


async def test_a_lock_its_holder_stopped_renewing_shows_as_stale(
    redis: Redis, env: dict[str, str], queue: str
) -> None:
    user = f"u-{uuid.uuid4().hex[:8]}"
    await redis.set(lock_key(user, queue), uuid.uuid4().hex, px=3000)  # TTL 10 s, last renewed 7 s ago
    try:
        report = json.loads((await run_cli(env, "user", user, "--json")).output)
    finally:
        await redis.delete(lock_key(user, queue))
    assert report["lock"]["stale"] is True and report["lock"]["renewed_s_ago"] >= 6
    assert report["profile"] is None and report["events"]["stored"] == 0


async def test_queue_list_with_mongodb_down_lists_the_jobs_without_last_errors(env: dict[str, str]) -> None:
    down = env | {
        "MEMCOMPRESS_MONGODB_URI": f"mongodb://127.0.0.1:{free_port()}/?directConnection=true",
        "MEMCOMPRESS_MONGODB_SERVER_SELECTION_TIMEOUT_MS": "300",
    }
    user = f"u-{uuid.uuid4().hex[:8]}"
    assert (await run_cli(down, "enqueue", user, "--delay", "600")).exit_code == 0
    listed = await run_cli(down, "queue", "list", "--json")
    assert listed.exit_code == 0
    report = json.loads(listed.output)
    [job] = report["jobs"]
    assert job["user_id"] == user and job["tries"] == 0 and "last_error" not in job
    assert "cannot reach MongoDB" in report["store_error"]
    await run_cli(down, "queue", "purge", "--yes")
