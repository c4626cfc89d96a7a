"""``memcompress replay`` on the real servers: a user compressed twice with the extractive summariser
and archive retention is replayed from its archive and current events; the command shows both
summaries and the carry verdict, and stores nothing (every document and every Redis key unchanged).

The compressions run on the test's services; the command runs in click's runner, in a thread (it runs
its own event loop: ``run_cli``)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from click.testing import Result
from redis.asyncio import Redis

from memcompress.jobs import Services, run_compression
from memcompress.models import MemoryEvent, Outcome, Role
from memcompress.repositories.database import USER_MEMORY, USER_MEMORY_ARCHIVE, MongoDatabase
from memcompress.summarizers.extractive import ExtractiveSummarizer
from memcompress.testing.factories import T0
from memcompress.testing.llm_server import FakeLLM
from tests.integration.conftest import ServicesFactory, append, run_cli

pytestmark = pytest.mark.redis

FOLD = {"threshold": 10, "keep_last": 3, "chunk_chars": 1000}


@pytest.fixture
def user() -> str:
    return f"replay-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def env(cli_env: dict[str, str]) -> dict[str, str]:
    """The CLI's settings: the same fold as the compressions below, the extractive summariser."""
    return cli_env | {
        "MEMCOMPRESS_THRESHOLD": str(FOLD["threshold"]),
        "MEMCOMPRESS_KEEP_LAST": str(FOLD["keep_last"]),
        "MEMCOMPRESS_CHUNK_CHARS": str(FOLD["chunk_chars"]),
    }


async def replay(env: dict[str, str], *args: str) -> Result:
    return await run_cli(env, "replay", *args)


def session(user: str, day: int, facts: list[str]) -> list[MemoryEvent]:
    """A user's facts, each answered by the assistant, one minute apart on day ``day``."""
    events = []
    for i, fact in enumerate(facts):
        at = T0 + timedelta(days=day, minutes=2 * i)
        events.append(MemoryEvent(user_id=user, role=Role.USER, content=fact, created_at=at))
        reply = f"Noted, thank you for telling me ({day}.{i})."
        events.append(
            MemoryEvent(
                user_id=user, role=Role.ASSISTANT, content=reply, created_at=at + timedelta(minutes=1)
            )
        )
    return events


FIRST = [f"My flat number is {100 + i} and I like walking to work number {i}." for i in range(8)] + [
    "My sister Anastasia lives in Kazan.",
    "I prefer green tea in the morning.",
]
SECOND = [f"We moved: the new flat is {300 + i}, I love the view from floor {i + 2}." for i in range(6)]


async def compressed_twice(database: MongoDatabase, services: Services, user: str) -> None:
    await append(database, session(user, 0, FIRST))
    assert (await run_compression(services, user)).outcome is Outcome.COMPRESSED
    await append(database, session(user, 3, SECOND))
    assert (await run_compression(services, user)).outcome is Outcome.COMPRESSED


async def stored_state(
    database: MongoDatabase, redis: Redis, user: str
) -> tuple[dict[str, list[Any]], set[bytes]]:
    """Every document of every collection, and the Redis keys a replay could write: every key of the
    user, and every key that does not expire (a shared server's keys that expire on their own, left by
    other runs, would make the comparison flaky)."""
    documents = {
        name: await database.collection(name).find({}).sort("_id", 1).to_list()
        for name in await database.db.list_collection_names()
    }
    keys = set()
    async for key in redis.scan_iter(count=1000):
        if user.encode() in key or await redis.ttl(key) == -1:
            keys.add(key)
    return documents, keys


async def test_replay_shows_both_summaries_and_the_verdict_and_stores_nothing(
    make_services: ServicesFactory, database: MongoDatabase, redis: Redis, env: dict[str, str], user: str
) -> None:
    services = make_services(ExtractiveSummarizer(), retention="archive", **FOLD)
    await compressed_twice(database, services, user)
    profile = await services.profiles.get(user)
    archived = await database.collection(USER_MEMORY_ARCHIVE).count_documents({"user_id": user})
    assert archived == len(FIRST + SECOND) * 2 - FOLD["keep_last"]
    before = await stored_state(database, redis, user)

    as_json = await replay(env, user, "--json")
    as_text = await replay(env, user)

    assert await stored_state(database, redis, user) == before
    assert as_json.exit_code == 0, as_json.output
    shown = json.loads(as_json.stdout)
    assert (shown["archived_events"], shown["current_events"]) == (archived, FOLD["keep_last"])
    assert (shown["stored_summary"], shown["stored_version"]) == (
        profile.memory_summary,
        profile.summary_version,
    )
    replayed = shown["replayed_summary"]
    assert "My sister Anastasia lives in Kazan." in replayed  # from the archive
    assert "We moved: the new flat is 305" in replayed  # still in user_memory (the kept history)
    assert shown["chunks"] > 1 and shown["summarizer"] == "extractive"
    assert shown["verdict"] == {
        "ok": True,
        "reason": "kept every value of the previous summary",
        "dropped": {},
        "shrunk": False,
        "at_budget": False,
    }
    assert (shown["folded_not_archived"], shown["version_moved"], shown["failed"]) == (0, False, None)

    assert as_text.exit_code == 0, as_text.output
    lines = as_text.output.splitlines()
    assert f"replayed: {archived} archived + 3 current events in {shown['chunks']} chunks" in lines[1]
    stored_header = f"--- stored summary (version {profile.summary_version}, {len(profile.memory_summary or '')} chars) ---"
    assert stored_header in lines
    assert f"--- replayed summary ({len(replayed)} chars) ---" in lines
    assert as_text.output.count("My sister Anastasia lives in Kazan.") == 2  # in both summaries
    assert lines[-1] == "carry verdict: ok: kept every value of the previous summary"


async def test_replay_names_what_it_cannot_carry(
    make_services: ServicesFactory, database: MongoDatabase, redis: Redis, env: dict[str, str], user: str
) -> None:
    """With delete retention the folded events are gone: the replay sees only the kept history, says how
    many folded events it cannot see, and its verdict counts the stored summary's values it drops."""
    services = make_services(ExtractiveSummarizer(), retention="delete", **FOLD)
    await compressed_twice(database, services, user)
    profile = await services.profiles.get(user)
    before = await stored_state(database, redis, user)

    result = await replay(env, user)

    assert await stored_state(database, redis, user) == before
    assert result.exit_code == 0, result.output
    folded = profile.events_summarized
    assert folded == len(FIRST + SECOND) * 2 - FOLD["keep_last"]
    assert "replayed: 0 archived + 3 current events" in result.output
    assert f"not replayable: {folded} of the {folded} events folded into the stored summary" in result.output
    verdict = result.output.splitlines()[-1]
    assert verdict.startswith("carry verdict: NOT ok: dropped ") and " name" in verdict
    assert await database.collection(USER_MEMORY).count_documents({"user_id": user}) == FOLD["keep_last"]


async def test_replay_of_an_unknown_user_creates_nothing(
    database: MongoDatabase, redis: Redis, env: dict[str, str], user: str
) -> None:
    before = await stored_state(database, redis, user)
    result = await replay(env, user)
    assert await stored_state(database, redis, user) == before  # not even a default profile
    assert result.exit_code == 0, result.output
    assert result.output.count("(none)") == 2
    assert "replayed: 0 archived + 0 current events in 0 chunks" in result.output


@pytest.fixture
def forgetful_llm() -> Iterator[FakeLLM]:
    """An LLM whose every answer forgets the summary so far: "summary #<n> of <k> messages"."""
    server = FakeLLM(answer=lambda number, previous, texts: f"summary #{number} of {len(texts)} messages")
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def test_replay_holds_each_answer_to_the_answer_guard_and_exits_1_when_it_fails(
    make_services: ServicesFactory,
    database: MongoDatabase,
    redis: Redis,
    env: dict[str, str],
    user: str,
    forgetful_llm: FakeLLM,
) -> None:
    """With an LLM that answers the second chunk with markup (and its repair request too), the replay
    stops there: exit 1, the reason (a check name, no content) on stderr, nothing stored."""
    await compressed_twice(database, make_services(ExtractiveSummarizer(), retention="archive", **FOLD), user)
    before = await stored_state(database, redis, user)
    with_llm = env | {
        "MEMCOMPRESS_SUMMARIZER": "openai",
        "MEMCOMPRESS_LLM_BASE_URL": forgetful_llm.base_url,
        "MEMCOMPRESS_LLM_API_KEY": "k",
        "MEMCOMPRESS_LLM_MAX_RETRIES": "0",
    }
    forgetful_llm.answer = lambda number, previous, texts: (
        f"summary #{number} of {len(texts)} messages" if number == 1 else "<div>summary</div>"
    )

    result = await replay(with_llm, user)

    assert await stored_state(database, redis, user) == before
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith(
        "memcompress: the replay failed at chunk 2: RejectedAnswer: the answer is not a summary: the answer "
        "holds markup"
    )
    # Chunk 1 and its repair request (its answer dropped the events' values: they were patched in),
    # chunk 2 and its repair request.
    assert forgetful_llm.requests == 4
    repair = forgetful_llm.exchanges[3].body["messages"][-1]["content"]
    assert "Your last answer was rejected" in repair
    assert "--- replayed summary (" in result.stdout and "summary #1 of " in result.stdout
