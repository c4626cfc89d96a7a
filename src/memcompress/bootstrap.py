"""The composition root: settings in, connected :class:`~memcompress.jobs.services.Services` out.

The only module that names concrete adapters (the Mongo repositories, the Redis locks and queue, the
summarisers). Entry points (the worker, the CLI, the demo) call :func:`open_services` or
:func:`open_queue` and never build an adapter themselves.

Each adapter is imported by the function that builds it, so importing this module (as every CLI
command module does) loads no MongoDB driver, no arq and no LLM client: ``memcompress --help`` starts
without them, and ``memcompress pause`` loads arq but never pymongo or openai.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from memcompress.jobs.fold_policy import FoldPolicy
from memcompress.jobs.services import JobPolicy, Services
from memcompress.keys import llm_budget_key
from memcompress.metrics import Metrics
from memcompress.models import MemoryEvent
from memcompress.redaction import redact_url
from memcompress.repositories.protocols import JobQueue, LLMBudget, QueueAdmin, UserLocks
from memcompress.settings import ConfigError, Settings
from memcompress.summarizers.base import (
    RetryableSummarizerError,
    Summarizer,
    SummaryRequest,
    SummaryResult,
    estimate_request_tokens,
)
from memcompress.timing import REDIS_BACKOFF_BASE_S, REDIS_BACKOFF_CAP_S, REDIS_RETRIES

if TYPE_CHECKING:
    from memcompress.repositories.command_timing import CommandObserver
    from memcompress.repositories.database import MongoDatabase

# OSError too: a refused connection during a restart can surface as a bare OSError from the socket.
REDIS_RETRY_ON = [RedisConnectionError, RedisTimeoutError, OSError]


def redis_retry(retries: int = REDIS_RETRIES) -> Retry:
    return Retry(ExponentialBackoff(cap=REDIS_BACKOFF_CAP_S, base=REDIS_BACKOFF_BASE_S), retries)


def connect_redis(settings: Settings, retries: int = REDIS_RETRIES) -> Redis:
    redis: Redis = Redis.from_url(
        settings.redis_url, retry=redis_retry(retries), retry_on_error=REDIS_RETRY_ON
    )
    return redis


def worker_health_check_key(settings: Settings) -> str:
    """The key this worker process writes its health line to (``status`` and ``worker --check`` read it)."""
    from memcompress.repositories.queue_admin import health_check_key

    return health_check_key(settings.queue_name, socket.gethostname(), os.getpid())


def build_summarizer(settings: Settings) -> Summarizer:
    if settings.summarizer_name == "extractive":
        from memcompress.summarizers.extractive import ExtractiveSummarizer

        return ExtractiveSummarizer()
    from memcompress.summarizers.openai_chat import OpenAISummarizer

    return NamesTheEndpoint(
        OpenAISummarizer(
            model=settings.llm_model,
            base_url=settings.llm_base_url,
            api_key=settings.llm_api_key.get_secret_value() if settings.llm_api_key else None,
            timeout_s=settings.llm_timeout_s,
            max_retries=settings.llm_max_retries,
        )
    )


# The route the OpenAI client adds to the base URL (MEMCOMPRESS_LLM_BASE_URL) it was given.
CHAT_ROUTE = "/chat/completions"


class NamesTheEndpoint:
    """A summariser whose "no answer from the LLM" failures (no connection, a timeout) also say where it
    asked: ``APIConnectionError: no answer from the LLM at http://host:port/v1``, the URL redacted
    (:func:`memcompress.redaction.redact_url`) and without its query. The LLM client's error carries
    the request it failed on; everything else passes through unchanged."""

    def __init__(self, inner: Summarizer) -> None:
        self.inner = inner
        self.name = inner.name
        self.model = inner.model

    async def summarize(self, request: SummaryRequest) -> SummaryResult:
        try:
            return await self.inner.summarize(request)
        except RetryableSummarizerError as error:
            url = getattr(getattr(error.__cause__, "request", None), "url", None)
            if url is None:
                raise
            endpoint = redact_url(str(url).partition("?")[0]).removesuffix(CHAT_ROUTE).rstrip("/")
            named = RetryableSummarizerError(f"{error} at {endpoint}")
            named.__dict__.update(error.__dict__)  # the requests sent and tokens reported
            raise named from error.__cause__

    async def aclose(self) -> None:
        await self.inner.aclose()


def build_llm_budget(settings: Settings, redis: Redis, summarizer: Summarizer) -> LLMBudget | None:
    """The shared LLM budget, when one is set and the summariser calls an LLM (the offline extractive
    summariser makes no requests, so nothing limits it)."""
    from memcompress.repositories.llm_budget import RedisLLMBudget
    from memcompress.summarizers.extractive import ExtractiveSummarizer

    if isinstance(summarizer, ExtractiveSummarizer) or (
        settings.llm_rpm is None and settings.llm_tpm is None
    ):
        return None
    window_s = settings.llm_rate_window_s
    if settings.llm_tpm and window_s < 60:
        _check_window_holds_a_request(settings.llm_tpm, window_s, _largest_request_tokens(settings))
    return RedisLLMBudget(
        redis,
        llm_budget_key(settings.queue_name),
        max_requests=settings.llm_rpm * window_s // 60 if settings.llm_rpm else None,
        max_tokens=settings.llm_tpm * window_s // 60 if settings.llm_tpm else None,
        window_s=window_s,
    )


def _largest_request_tokens(settings: Settings) -> int:
    """What the budget reserves for a full request: a chunk of ``CHUNK_CHARS`` and a summary at its
    budget, in the script that costs the most tokens per character, plus the most the answer may use."""
    text = "ж" * settings.chunk_chars
    request = SummaryRequest(
        "ж" * settings.summary_max_chars,
        [MemoryEvent(user_id="u", role="user", content=text)],
        settings.default_language,
        settings.summary_max_chars,
    )
    estimate = estimate_request_tokens(request)
    return estimate.prompt + estimate.completion_max


def _check_window_holds_a_request(tpm: int, window_s: int, request_tokens: int) -> None:
    """A request bigger than one window's share of ``MEMCOMPRESS_LLM_TPM`` would be granted alone in
    every window (see :mod:`memcompress.repositories.llm_budget`), spending more than the TPM: refused."""
    share = tpm * window_s // 60
    if share < request_tokens:
        needed = min(60, -(-request_tokens * 60 // tpm))
        raise ConfigError(
            f"MEMCOMPRESS_LLM_TPM ({tpm}) allows {share} tokens per MEMCOMPRESS_LLM_RATE_WINDOW_S "
            f"({window_s} s), less than one full request (about {request_tokens}): set "
            f"MEMCOMPRESS_LLM_RATE_WINDOW_S to at least {needed}, or lower MEMCOMPRESS_CHUNK_CHARS"
        )


def build_services(
    settings: Settings, database: MongoDatabase, redis: Redis, metrics: Metrics, summarizer: Summarizer
) -> Services:
    """The services over clients that are already connected (``open_services`` connects them)."""
    from memcompress.repositories.documents import EventRules
    from memcompress.repositories.erasures import ErasedUsers
    from memcompress.repositories.maintenance import MongoMaintenance
    from memcompress.repositories.overrides import MongoUserOverrides
    from memcompress.repositories.run_records import MongoCompactionLog, MongoDeadLetters
    from memcompress.repositories.storage_layouts import storage_layout

    layout = storage_layout(settings.store_layout())
    redis_ports = build_queue(settings, redis)
    return Services(
        memory=layout.memory(database, metrics, EventRules(settings.pinned_tag, settings.pinned_roles)),
        profiles=layout.summaries(database, metrics, settings.profile_defaults()),
        overrides=MongoUserOverrides(database, metrics),
        compaction_log=MongoCompactionLog(database, metrics),
        dead_letters=MongoDeadLetters(database, metrics),
        maintenance=MongoMaintenance(database, memory_ttl_days=settings.memory_ttl_days, layout=layout),
        erasures=ErasedUsers(database),
        locks=redis_ports.locks,
        queue=redis_ports.queue,
        queue_admin=redis_ports.admin,
        summarizer=summarizer,
        policy=FoldPolicy.from_settings(settings),
        job_policy=JobPolicy.from_settings(settings),
        metrics=metrics,
        llm_budget=build_llm_budget(settings, redis, summarizer),
    )


@contextlib.asynccontextmanager
async def open_services(
    settings: Settings,
    metrics: Metrics | None = None,
    summarizer: Summarizer | None = None,
    redis_retries: int = REDIS_RETRIES,
    on_store_command: CommandObserver | None = None,
    store_wait_s: float | None = None,
) -> AsyncIterator[Services]:
    """Connect Mongo and Redis (pinging both), build every service; close them all on exit.

    Long-running workers ride out Redis restarts (``REDIS_RETRIES``); the CLI asks for few retries so
    that a wrong URL fails in seconds; likewise a worker waits up to ``store_wait_s`` for MongoDB at start
    (the CLI: the server-selection timeout). ``on_store_command`` is told when every MongoDB command starts
    and ends (the worker's job limit follows how busy the store keeps it)."""
    from memcompress.repositories.command_timing import CommandTimer
    from memcompress.repositories.database import MongoDatabase

    timers = [CommandTimer(on_store_command)] if on_store_command else []
    database = MongoDatabase.from_settings(settings, event_listeners=timers)
    await database.connect(wait_s=store_wait_s)
    redis = connect_redis(settings, redis_retries)
    summarizer = summarizer or build_summarizer(settings)
    try:
        await redis.ping()
        yield build_services(settings, database, redis, metrics or Metrics(), summarizer)
    finally:
        await summarizer.aclose()
        await redis.aclose()
        await database.close()


@dataclass(frozen=True, slots=True)
class QueuePorts:
    """What Redis alone serves: the worker's queue (where operators' requests go), the operators' view
    of it, and the per-user locks. The CLI's queue commands need nothing more, so they answer with
    MongoDB down."""

    queue: JobQueue
    admin: QueueAdmin
    locks: UserLocks


def build_queue(settings: Settings, redis: Redis) -> QueuePorts:
    from memcompress.repositories.job_queue import RedisJobQueue
    from memcompress.repositories.locks import RedisUserLocks
    from memcompress.repositories.queue_admin import RedisQueueAdmin

    return QueuePorts(
        queue=RedisJobQueue(redis, settings.queue_name, settings.requests_key),
        admin=RedisQueueAdmin(redis, settings.queue_name, settings.requests_key),
        locks=RedisUserLocks(redis, settings.lock_ttl_s, settings.queue_name),
    )


@contextlib.asynccontextmanager
async def open_queue(settings: Settings, redis_retries: int = REDIS_RETRIES) -> AsyncIterator[QueuePorts]:
    """The queue alone (Redis only): enough to queue users, list, purge or pause the queue, and check
    workers' health."""
    redis = connect_redis(settings, redis_retries)
    try:
        yield build_queue(settings, redis)
    finally:
        await redis.aclose()
