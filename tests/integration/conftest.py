from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from redis.asyncio import Redis

from memcompress.jobs.compress import CompressionDeps, FoldPolicy
from memcompress.metrics import Metrics
from memcompress.repositories import (
    MongoCompactionLog,
    MongoDatabase,
    MongoUserMemoryRepository,
    MongoUserProfileRepository,
)
from memcompress.summarizers import OpenAISummarizer, Summarizer
from tests.support.llm_server import FakeLLM


@pytest.fixture
def llm() -> Iterator[FakeLLM]:
    server = FakeLLM().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def openai_summarizer(llm: FakeLLM) -> AsyncIterator[OpenAISummarizer]:
    summarizer = OpenAISummarizer(
        model="test-model", base_url=llm.base_url, api_key="k", timeout_s=2, max_retries=0
    )
    try:
        yield summarizer
    finally:
        await summarizer.aclose()


DepsFactory = Callable[..., CompressionDeps]


@pytest.fixture
def make_deps(
    database: MongoDatabase, redis: Redis, metrics: Metrics, openai_summarizer: OpenAISummarizer
) -> DepsFactory:
    def build(summarizer: Summarizer | None = None, **policy: Any) -> CompressionDeps:
        return CompressionDeps(
            memory=MongoUserMemoryRepository(database, metrics),
            profiles=MongoUserProfileRepository(database, metrics),
            compaction_log=MongoCompactionLog(database, metrics),
            summarizer=summarizer or openai_summarizer,
            redis=redis,
            policy=FoldPolicy(**({"lock_ttl_s": 10.0} | policy)),
            metrics=metrics,
        )

    return build
