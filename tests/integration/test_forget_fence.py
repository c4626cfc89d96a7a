"""``forget`` is final: placed in each gap a running compression has, it leaves nothing of the user
behind, in MongoDB or Redis, once both have finished (the erase fence, :mod:`memcompress.jobs.forget`).

The gaps: right after the summary write (the job still holds the lock), between the archive's read and
its write, before the profile is created, before the summary write while the app re-creates the
profile, mid-LLM-call with the lock lost (a Redis restart), and after the job released its lock
(before its compaction record, dead letter, retry or re-check)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from arq.connections import ArqRedis
from arq.worker import Worker, func
from redis.asyncio import Redis

from memcompress.jobs import Services, forget_user, run_compression
from memcompress.keys import JOB_FUNCTION, job_id, lock_key
from memcompress.models import Outcome
from memcompress.repositories.database import (
    COMPACTION_LOG,
    DEAD_LETTERS,
    ERASED_USERS,
    USER_MEMORY,
    USER_MEMORY_ARCHIVE,
    USER_PROFILES,
    MongoDatabase,
)
from memcompress.repositories.indexes import ensure_indexes
from memcompress.summarizers.openai_chat import OpenAISummarizer
from memcompress.testing import llm_server
from memcompress.testing.app_documents import app_profile, app_save
from memcompress.testing.factories import make_events
from memcompress.testing.llm_server import FakeLLM
from memcompress.testing.workers import eventually
from memcompress.worker.tasks import after_job_end, compress_user
from tests.integration.conftest import ServicesFactory, append, until_held

pytestmark = pytest.mark.redis

Hook = Callable[[], Awaitable[None]]


class Hooked:
    """``inner`` with ``before`` and/or ``after`` run around the first call of ``method``."""

    def __init__(
        self, inner: Any, method: str, *, before: Hook | None = None, after: Hook | None = None
    ) -> None:
        self._inner, self._method, self._before, self._after = inner, method, before, after
        self.armed = True

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._inner, name)
        if name != self._method or not self.armed:
            return attribute

        async def hooked(*args: Any, **kwargs: Any) -> Any:
            self.armed = False
            if self._before:
                await self._before()
            result = await attribute(*args, **kwargs)
            if self._after:
                await self._after()
            return result

        return hooked


class ForgetAfterRelease:
    """The user's locks, with ``forget`` run to its end right after the first lock is released."""

    def __init__(self, inner: Any, forget: Hook) -> None:
        self._inner, self._forget = inner, forget
        self.armed = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    @contextlib.asynccontextmanager
    async def hold(self, user_id: str, *, wait_s: float = 0.0) -> AsyncIterator[Any]:
        async with self._inner.hold(user_id, wait_s=wait_s) as held:
            yield held
        if self.armed:
            self.armed = False
            await self._forget()


@pytest.fixture
def user() -> str:
    return f"erased-{uuid.uuid4().hex[:8]}"


@pytest.fixture(autouse=True)
async def indexes(database: MongoDatabase) -> None:
    await ensure_indexes(database)


async def _traces(database: MongoDatabase, redis: Redis, services: Services, user: str) -> dict[str, int]:
    """Everything of ``user`` still stored anywhere (the tombstone aside): collection → count, and Redis."""
    found = {
        name: await database.collection(name).count_documents({"$or": [{"user_id": user}, {"_id": user}]})
        for name in (USER_MEMORY, USER_MEMORY_ARCHIVE, USER_PROFILES, COMPACTION_LOG, DEAD_LETTERS)
    }
    found["redis keys"] = len([key async for key in redis.scan_iter(match=f"*{user}*", count=1000)])
    found["queued"] = int(
        await redis.zscore(services.queue.name, job_id(user, services.queue.name)) is not None
    )
    return {name: count for name, count in found.items() if count}


def _forget(services: Services, user: str, redis: Redis, *, lose_lock: bool) -> Hook:
    """``forget`` of ``user``, to its end; with ``lose_lock``, the job's lock vanishes first (Redis
    restarted without persistence), so ``forget`` does not wait for the job."""

    async def forget() -> None:
        if lose_lock:
            await redis.delete(lock_key(user, services.queue.name))
        await forget_user(services, user, wait_s=10)

    return forget


@pytest.mark.parametrize("retention", ["delete", "archive"])
async def test_forget_right_after_the_summary_write_leaves_nothing(
    make_services: ServicesFactory,
    database: MongoDatabase,
    redis: Redis,
    llm: FakeLLM,
    user: str,
    retention: str,
) -> None:
    """The job holds its lock: ``forget`` waits for it, and the job's record, written before the lock
    is released (here slowed down), is erased with the rest."""
    services = make_services(retention=retention, queue_name=f"test:{uuid.uuid4().hex}")
    await append(database, make_events(user, 60))
    forgetting: list[asyncio.Task[dict[str, int]]] = []

    async def tombstone_written() -> bool:
        return await database.collection(ERASED_USERS).count_documents({"_id": user}) == 1

    async def start_forget() -> None:
        forgetting.append(asyncio.create_task(forget_user(services, user, wait_s=10)))
        await eventually(tombstone_written)  # then it waits for the lock

    async def slowly() -> None:
        await asyncio.sleep(0.5)

    services.profiles = Hooked(services.profiles, "update_summary_if_version", after=start_forget)  # type: ignore[assignment]
    services.compaction_log = Hooked(services.compaction_log, "record", before=slowly)  # type: ignore[assignment]

    await run_compression(services, user)
    await forgetting[0]

    assert await _traces(database, redis, services, user) == {}


@pytest.mark.parametrize(
    "place", ["between the archive's read and write", "before the profile is created", "mid-LLM-call"]
)
async def test_forget_while_the_job_has_lost_its_lock_leaves_nothing(
    make_services: ServicesFactory, database: MongoDatabase, redis: Redis, llm: FakeLLM, user: str, place: str
) -> None:
    """Redis lost the job's lock: ``forget`` takes the lock at once and erases while the job runs on;
    every write the job still makes undoes itself."""
    services = make_services(retention="archive", queue_name=f"test:{uuid.uuid4().hex}")
    await append(database, make_events(user, 60))
    forget = _forget(services, user, redis, lose_lock=True)
    if place.startswith("between"):
        memory: Any = services.memory
        memory._archive.collection = Hooked(memory._archive.collection, "insert_many", before=forget)
    elif place.startswith("before the profile"):
        # the user has no profile: the summary write creates it
        services.profiles = Hooked(services.profiles, "update_summary_if_version", before=forget)  # type: ignore[assignment]
    else:
        services.summarizer = Hooked(services.summarizer, "summarize", before=forget)  # type: ignore[assignment]

    record = await run_compression(services, user)

    assert record.outcome in (Outcome.SKIPPED, Outcome.CONFLICT), record
    assert await _traces(database, redis, services, user) == {}
    assert await database.collection(ERASED_USERS).count_documents({"_id": user}) == 1  # the fence


async def test_a_summary_never_lands_in_a_profile_recreated_after_forget(
    make_services: ServicesFactory, database: MongoDatabase, redis: Redis, llm: FakeLLM, user: str
) -> None:
    """The job lost its lock just before its summary write; ``forget`` runs, and the user signs up
    again (the app creates a new profile). The erased history's summary must not land in it."""
    services = make_services(queue_name=f"test:{uuid.uuid4().hex}")
    await append(database, make_events(user, 60))
    forget = _forget(services, user, redis, lose_lock=True)

    async def forget_then_sign_up_again() -> None:
        await forget()
        await app_save(database, app_profile(user, tone="new"))

    services.profiles = Hooked(
        services.profiles, "update_summary_if_version", before=forget_then_sign_up_again
    )  # type: ignore[assignment]

    await run_compression(services, user)

    new_profile = await database.collection(USER_PROFILES).find_one({"user_id": user})
    assert new_profile is not None and new_profile["tone"] == "new"
    assert new_profile["memory_summary"] is None and "summary_version" not in new_profile
    assert await _traces(database, redis, services, user) == {USER_PROFILES: 1}  # the app's, nothing else


@pytest.fixture
async def pool(redis_url: str) -> AsyncIterator[ArqRedis]:
    pool = ArqRedis.from_url(redis_url)
    try:
        yield pool
    finally:
        await pool.aclose()


@pytest.mark.parametrize("ending", ["dead letter", "retry", "re-check"])
async def test_forget_right_after_the_job_released_its_lock_leaves_nothing(
    make_services: ServicesFactory,
    database: MongoDatabase,
    redis: Redis,
    llm: FakeLLM,
    pool: ArqRedis,
    user: str,
    ending: str,
    monkeypatch: pytest.MonkeyPatch,
    patient_summarizer: OpenAISummarizer,
) -> None:
    """A queued job, run by a real arq worker; ``forget`` runs the moment the job's lock is released.
    What the job decided (a dead letter, arq's re-queue of a retry, a re-check request) and its record
    must not outlive the erase."""
    monkeypatch.setattr("memcompress.jobs.queued.retry_delay", lambda job_try: 0.05)
    settings: dict[str, Any] = {"max_tries": 3}
    if ending == "dead letter":
        llm.fail_next(llm_server.HTTP_400)
    elif ending == "retry":
        llm.fail_next(llm_server.HTTP_500)
    else:  # out of time after some chunks: continued in a fresh job through a re-check request
        # One chunk is answered; the next is held until the time limit (which one chunk keeps within
        # on a loaded machine) has stopped the job.
        llm.hold(passes=1)
        settings |= {"job_timeout_s": 4.0, "llm_timeout_s": 3.0, "chunk_chars": 1000}
        settings["summarizer"] = patient_summarizer

        async def release_after_the_time_limit() -> None:
            await until_held(llm)
            await asyncio.sleep(settings["job_timeout_s"])  # later is safe: the job is over by then
            llm.release()

        releasing = asyncio.create_task(release_after_the_time_limit())
    services = make_services(queue_name=f"test:{uuid.uuid4().hex}", **settings)
    await append(database, make_events(user, 80))
    services.locks = ForgetAfterRelease(services.locks, _forget(services, user, redis, lose_lock=False))  # type: ignore[assignment]
    queue = services.queue.name
    assert await pool.enqueue_job(
        JOB_FUNCTION, user, _job_id=job_id(user, services.queue.name), _queue_name=queue
    )
    worker = Worker(
        functions=[func(compress_user, name=JOB_FUNCTION)],
        redis_pool=pool,
        queue_name=queue,
        burst=True,
        ctx={"services": services},
        after_job_end=after_job_end,
        max_tries=services.job_policy.max_tries + 1,
        handle_signals=False,
        poll_delay=0.05,
        keep_result=0,
    )
    await worker.main()
    await worker.close()
    if ending == "re-check":
        await releasing

    assert worker.jobs_retried == (1 if ending == "retry" else 0)
    assert await _traces(database, redis, services, user) == {}
