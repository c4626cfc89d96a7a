from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from datetime import timedelta
from typing import Any

import pytest
from click.testing import CliRunner, Result
from pymongo import MongoClient
from pymongo.database import Database
from redis.asyncio import Redis

from memcompress.bootstrap import build_services
from memcompress.cli.app import cli
from memcompress.jobs import Services
from memcompress.layouts import StoreLayout
from memcompress.metrics import Metrics
from memcompress.models import MemoryEvent, utc_now
from memcompress.repositories.database import USER_MEMORY, USER_PROFILES, MongoDatabase
from memcompress.settings import load_settings
from memcompress.summarizers.base import Summarizer
from memcompress.summarizers.openai_chat import OpenAISummarizer
from memcompress.testing.app_documents import app_event, app_profile
from memcompress.testing.app_layouts import app_layout
from memcompress.testing.llm_server import FakeLLM
from memcompress.testing.workers import eventually

# Short locks so that tests about expiry run quickly; the timeouts stay layered below them. The
# summariser the tests pass (the local LLM server's by default) is an OpenAI-compatible one.
TEST_SETTINGS: dict[str, Any] = {
    "lock_ttl_s": 10.0,
    "job_timeout_s": 8.0,
    "llm_timeout_s": 2.0,
    "summarizer": "openai",
}


@contextlib.asynccontextmanager
async def _local_summarizer(llm: FakeLLM, timeout_s: float) -> AsyncIterator[OpenAISummarizer]:
    summarizer = OpenAISummarizer(
        model="test-model", base_url=llm.base_url, api_key="k", timeout_s=timeout_s, max_retries=0
    )
    try:
        yield summarizer
    finally:
        await summarizer.aclose()


@pytest.fixture
async def openai_summarizer(llm: FakeLLM) -> AsyncIterator[OpenAISummarizer]:
    async with _local_summarizer(llm, timeout_s=2) as summarizer:
        yield summarizer


@pytest.fixture
async def patient_summarizer(llm: FakeLLM) -> AsyncIterator[OpenAISummarizer]:
    """One that waits for an answer longer than any test's time limit: a held LLM call ends by the
    job's own time limit, not the client's."""
    async with _local_summarizer(llm, timeout_s=120) as summarizer:
        yield summarizer


async def until_held(llm: FakeLLM, count: int = 1) -> None:
    """Until ``count`` requests wait at the LLM server's closed gate (their runs are mid-call)."""

    async def held() -> bool:
        return llm.held >= count

    await eventually(held)


ServicesFactory = Callable[..., Services]


@pytest.fixture
def mongo(mongo_uri: str, db_name: str) -> Iterator[Database[dict[str, Any]]]:
    """The test's database through the synchronous driver, for tests that drive the CLI."""
    client: MongoClient[dict[str, Any]] = MongoClient(mongo_uri, tz_aware=True)
    try:
        yield client[db_name]
    finally:
        client.drop_database(db_name)
        client.close()


@pytest.fixture
def make_services(
    database: MongoDatabase, redis: Redis, metrics: Metrics, openai_summarizer: OpenAISummarizer
) -> ServicesFactory:
    """The services as bootstrap builds them, over the test's database and Redis; ``settings`` are
    ``MEMCOMPRESS_*`` settings by their field names (``chunk_chars=1000``, ``retention="archive"``)."""

    def build(summarizer: Summarizer | None = None, **settings: Any) -> Services:
        return build_services(
            load_settings(**(TEST_SETTINGS | settings)),
            database,
            redis,
            metrics,
            summarizer or openai_summarizer,
        )

    return build


@pytest.fixture
def cli_env(mongo_uri: str, db_name: str, redis_url: str) -> dict[str, str]:
    """``MEMCOMPRESS_*`` settings for CLI runs against the test's stores, with the offline summariser."""
    return {
        "MEMCOMPRESS_MONGODB_URI": mongo_uri,
        "MEMCOMPRESS_MONGODB_DB": db_name,
        "MEMCOMPRESS_REDIS_URL": redis_url,
        "MEMCOMPRESS_SUMMARIZER": "extractive",
    }


async def run_cli(env: dict[str, str], *args: str) -> Result:
    """The CLI in-process, from an async test: it runs its own event loop, so in a thread."""
    return await asyncio.to_thread(CliRunner().invoke, cli, list(args), env=env, catch_exceptions=False)


async def append(
    database: MongoDatabase, events: Sequence[MemoryEvent], names: StoreLayout | None = None
) -> None:
    """Append ``events`` as the app does, in the layout ``names`` (the default layout without)."""
    await app_layout(names).append(database, events)


async def seed_app_user(
    database: MongoDatabase,
    user: str,
    summary: str | None,
    count: int = 60,
    text: str = "Topic {i} was fine.",
) -> list[dict[str, Any]]:
    """A profile as the app writes it (with ``summary``, if any) and ``count`` events a day old, user and
    assistant by turns, as the app writes them; ``text`` is formatted with ``user`` and ``i``."""
    if summary is not None:
        await database.collection(USER_PROFILES).insert_one(app_profile(user, memory_summary=summary))
    docs = [
        app_event(
            user,
            "user" if i % 2 == 0 else "assistant",
            text.format(user=user, i=i),
            utc_now() - timedelta(days=1, seconds=-i),
        )
        for i in range(count)
    ]
    await database.collection(USER_MEMORY).insert_many(docs)
    return docs
