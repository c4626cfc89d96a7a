"""Wiring in one place: settings in, connected services out."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

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

# Ride out a Redis restart or failover of up to about a minute instead of failing the job.
REDIS_RETRIES = 30
# OSError too: a refused connection during a restart can surface as a bare OSError from the socket.
REDIS_RETRY_ON = [RedisConnectionError, RedisTimeoutError, OSError]


def redis_retry(retries: int = REDIS_RETRIES) -> Retry:
    return Retry(ExponentialBackoff(cap=2.0, base=0.1), retries)


def connect_redis(settings: Settings, retries: int = REDIS_RETRIES) -> Redis:
    retry = redis_retry(retries)
    redis: Redis = Redis.from_url(settings.redis_url, retry=retry, retry_on_error=REDIS_RETRY_ON)
    return redis


def fold_policy(settings: Settings) -> FoldPolicy:
    return FoldPolicy(
        threshold=settings.threshold,
        keep_last=settings.keep_last,
        batch_size=settings.batch_size,
        chunk_chars=settings.chunk_chars,
        summary_max_chars=settings.summary_max_chars,
        retention=settings.retention_mode,
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
    settings: Settings,
    metrics: Metrics | None = None,
    summarizer: Summarizer | None = None,
    redis_retries: int = REDIS_RETRIES,
) -> AsyncIterator[tuple[CompressionDeps, MongoDatabase]]:
    """Connect Mongo (ping) and Redis, build the repositories and summariser; close them all on exit.

    Long-running workers ride out Redis restarts (``REDIS_RETRIES``); the CLI asks for few retries so
    that a wrong URL fails in seconds."""
    metrics = metrics or Metrics()
    database = MongoDatabase.from_settings(settings)
    await database.connect()
    redis = connect_redis(settings, redis_retries)
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
