"""Wiring in one place: settings in, connected services out."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from redis.asyncio import Redis

from memcompress.jobs.compress import CompressionDeps, FoldPolicy
from memcompress.metrics import Metrics
from memcompress.repositories import (
    MongoCompactionLog,
    MongoDatabase,
    MongoUserMemoryRepository,
    MongoUserProfileRepository,
)
from memcompress.settings import Settings
from memcompress.summarizers import ExtractiveSummarizer, OpenAISummarizer, Summarizer


def fold_policy(settings: Settings) -> FoldPolicy:
    return FoldPolicy(
        threshold=settings.threshold,
        keep_last=settings.keep_last,
        batch_size=settings.batch_size,
        chunk_chars=settings.chunk_chars,
        summary_max_chars=settings.summary_max_chars,
        retention=settings.retention,
        lock_ttl_s=settings.lock_ttl_s,
    )


def build_summarizer(settings: Settings) -> Summarizer:
    if settings.summarizer_name == "extractive":
        return ExtractiveSummarizer()
    return OpenAISummarizer(
        model=settings.llm_model,
        base_url=settings.llm_base_url,
        api_key=settings.llm_api_key.get_secret_value() if settings.llm_api_key else None,
        timeout_s=settings.llm_timeout_s,
        max_retries=settings.llm_max_retries,
    )


@contextlib.asynccontextmanager
async def open_services(
    settings: Settings, metrics: Metrics | None = None, summarizer: Summarizer | None = None
) -> AsyncIterator[tuple[CompressionDeps, MongoDatabase]]:
    """Connect Mongo (ping) and Redis, build the repositories and summariser; close them all on exit."""
    metrics = metrics or Metrics()
    database = MongoDatabase.from_settings(settings)
    await database.connect()
    redis = Redis.from_url(settings.redis_url)
    summarizer = summarizer or build_summarizer(settings)
    try:
        deps = CompressionDeps(
            memory=MongoUserMemoryRepository(database, metrics),
            profiles=MongoUserProfileRepository(database, metrics, settings.profile_defaults()),
            compaction_log=MongoCompactionLog(database, metrics),
            summarizer=summarizer,
            redis=redis,
            policy=fold_policy(settings),
            metrics=metrics,
        )
        yield deps, database
    finally:
        await summarizer.aclose()
        await redis.aclose()
        await database.close()
