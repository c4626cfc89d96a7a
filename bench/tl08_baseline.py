"""A REIMPLEMENTATION of the TL-08 design, for benchmark comparison ONLY. Never use it on real data.

It is written here from the TL-08 description so that ``bench/throughput.py`` can run it on the same
data, servers and FakeLLM, in the same run, as our worker. It is not imported by memcompress.

The TL-08 design, as reimplemented:

1. one global Redis lock held for the whole run (so only one process compresses at a time);
2. users processed one after another;
3. per user: read the newest events with ``get_recent_events(limit=1000)`` (at most 1000);
4. summarise all but the newest ``keep_last`` of them with ONE LLM call (our ``OpenAISummarizer``);
5. store the summary on the profile;
6. delete ``{"user_id": u, "_id": {"$nin": kept_ids}}``.

Why it was not adopted (visible in step 6): the delete removes every event of the user that is not
among the kept ones, including events beyond the 1000 that were read and events appended between the
read and the delete; none of those are in the summary. The benchmark seeds users with fewer than 1000
events and appends nothing meanwhile, so both designs do the same work here and only speed differs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from redis.asyncio import Redis

from memcompress.metrics import Metrics
from memcompress.repositories.database import USER_MEMORY, USER_PROFILES, MongoDatabase
from memcompress.repositories.documents import valid_events
from memcompress.repositories.user_memory import MongoUserMemoryRepository
from memcompress.summarizers.base import Summarizer, SummaryRequest

GLOBAL_LOCK_KEY = "tl08:global-compression-lock"  # a bench-only key, not one of memcompress's
READ_LIMIT = 1000
NEWEST_FIRST = [("created_at", -1), ("_id", -1)]


@dataclass
class BaselineResult:
    users: int = 0
    compressed: int = 0
    llm_calls: int = 0
    events_deleted: int = 0
    scan_s: float = 0.0
    failures: list[str] = field(default_factory=list)


async def run_tl08(
    database: MongoDatabase,
    redis: Redis,
    summarizer: Summarizer,
    *,
    threshold: int,
    keep_last: int,
    language: str = "ru",
    summary_max_chars: int = 4000,
) -> BaselineResult:
    """One TL-08 pass over every user with more than ``threshold`` events."""
    result = BaselineResult()
    events = database.collection(USER_MEMORY)
    profiles = database.collection(USER_PROFILES)
    metrics = Metrics()
    # The same user list as our scan (one aggregation), so that both sides do the same work.
    started = time.perf_counter()
    users = await MongoUserMemoryRepository(database, metrics).users_over_threshold(threshold)
    result.scan_s = time.perf_counter() - started
    result.users = len(users)

    # 1. One global lock for the whole run: a second process would wait here.
    async with redis.lock(GLOBAL_LOCK_KEY, timeout=3600, blocking=True, blocking_timeout=3600):
        for backlog in users:  # 2. sequentially
            user_id = backlog.user_id
            # 3. get_recent_events(limit=1000), with the documents' _ids (needed for step 6).
            newest = await events.find({"user_id": user_id}).sort(NEWEST_FIRST).limit(READ_LIMIT).to_list()
            stored = list(valid_events(USER_MEMORY, reversed(newest), metrics))
            if len(stored) <= keep_last:
                continue
            kept, older = stored[len(stored) - keep_last :], stored[: len(stored) - keep_last]
            profile = await profiles.find_one({"user_id": user_id})
            previous = profile.get("memory_summary") if profile else None
            # 4. One LLM call for everything older than the newest keep_last.
            try:
                answer = await summarizer.summarize(
                    SummaryRequest(previous, [s.event for s in older], language, summary_max_chars)
                )
            except Exception as error:  # counted, not retried: TL-08 had no retry story
                result.failures.append(f"{user_id}: {type(error).__name__}: {error}")
                continue
            result.llm_calls += 1
            # 5. Store the summary.
            await profiles.update_one(
                {"user_id": user_id}, {"$set": {"memory_summary": answer.text}}, upsert=True
            )
            # 6. Delete everything but the kept ids (see the module docstring for why this loses data).
            deleted = await events.delete_many(
                {"user_id": user_id, "_id": {"$nin": [s.ref["_id"] for s in kept]}}
            )
            result.events_deleted += deleted.deleted_count
            result.compressed += 1
    return result
