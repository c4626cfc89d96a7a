"""Per-user fold cost vs history length: wall time, chunks, and peak RSS growth of this process.

Starts the embedded Mongo wire server and Valkey, seeds one user with N events, compresses it once with
the offline summariser and prints a table. A script that prints numbers, not a test.

    .venv/bin/python bench/fold_memory.py --events 1000 10000 100000

SecantusDB does not push sort/limit down (every page query reads all of the user's remaining events),
so large histories use a large --batch-size here; on MongoDB the (user_id, created_at, _id) index
makes each page a bounded range read.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from redis.asyncio import Redis

from memcompress.embedded import mongo_server, valkey_server
from memcompress.jobs.compress import CompressionDeps, FoldPolicy, run_compression
from memcompress.metrics import Metrics
from memcompress.models import MemoryEvent, Role
from memcompress.repositories import (
    MongoCompactionLog,
    MongoDatabase,
    MongoUserMemoryRepository,
    MongoUserProfileRepository,
    ensure_indexes,
)
from memcompress.summarizers import ExtractiveSummarizer

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def one_run(mongo_url: str, redis_url: str, events: int, batch_size: int) -> dict[str, float]:
    database = MongoDatabase(mongo_url, f"bench_{uuid.uuid4().hex[:8]}")
    await database.connect()
    await ensure_indexes(database)
    metrics = Metrics()
    redis = Redis.from_url(redis_url)
    deps = CompressionDeps(
        memory=MongoUserMemoryRepository(database, metrics),
        profiles=MongoUserProfileRepository(database, metrics),
        compaction_log=MongoCompactionLog(database, metrics),
        summarizer=ExtractiveSummarizer(),
        redis=redis,
        policy=FoldPolicy(batch_size=batch_size, lock_ttl_s=600),
        metrics=metrics,
    )
    user = "bench-user"
    for start in range(0, events, 5000):
        await deps.memory.append_events(
            [
                MemoryEvent(
                    user_id=user,
                    role=Role.USER if i % 2 == 0 else Role.ASSISTANT,
                    content=f"Message {i}: I met Anna in Kazan on day {i % 365} and paid {i % 97} euros.",
                    created_at=T0 + timedelta(seconds=i),
                )
                for i in range(start, min(start + 5000, events))
            ]
        )
    baseline, peak = rss_mb(), rss_mb()
    done = asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss_mb())
            await asyncio.sleep(0.05)

    sampler = asyncio.create_task(sample())
    started = time.perf_counter()
    record = await run_compression(deps, user)
    elapsed = time.perf_counter() - started
    done.set()
    await sampler
    await database.db.client.drop_database(database.db.name)
    await database.close()
    await redis.aclose()
    assert record.outcome.value == "compressed", record
    return {
        "events": events,
        "folded": record.events_folded,
        "chunks": record.chunks,
        "seconds": elapsed,
        "rss_growth_mb": peak - baseline,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--batch-size", type=int, default=5000)
    args = parser.parse_args()
    mongo, valkey = mongo_server().start(), valkey_server().start()
    try:
        print(f"{'events':>8} {'folded':>8} {'chunks':>7} {'seconds':>9} {'RSS growth MB':>14}")
        for n in args.events:
            row = await one_run(mongo.url, valkey.url, n, args.batch_size)
            print(
                f"{row['events']:>8} {row['folded']:>8} {row['chunks']:>7} "
                f"{row['seconds']:>9.1f} {row['rss_growth_mb']:>14.1f}",
                flush=True,
            )
    finally:
        mongo.stop()
        valkey.stop()


if __name__ == "__main__":
    asyncio.run(main())
