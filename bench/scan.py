"""Scan cost vs total events: the full aggregation, the incremental scan and ``scan_and_enqueue``,
with their explain plans.

For each total N this seeds a fresh database with users of 20, 40, 60, 80 and 100 events in turn
(60 on average, so 3 in 5 users are over the threshold of 50), then times the aggregation alone
(best and median of ``--repeat``), the whole ``scan_and_enqueue`` (aggregation + one arq enqueue per
user found), and prints ``explain`` for the exact pipeline the repository sent (captured with a
pymongo ``CommandListener``, so it cannot drift from ``users_over_threshold``).

Then 1 % of the users (``ACTIVE_FRACTION``) get 5 new events each, stamped now, and the incremental
scan (``scan_backlog(since=...)``: users with events since a watermark, then only their events) is
timed the same way; ``full/incr`` is the full aggregation's best time over the incremental one's.

    .venv/bin/python bench/scan.py                       # 10k and 100k events
    .venv/bin/python bench/scan.py --events 1000000      # slow on SecantusDB (~6,000 inserts/s)

A script that prints numbers, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from arq.constants import job_key_prefix
from bson import json_util
from common import (
    CommandCounter,
    Servers,
    bench_servers,
    load_average,
    print_machine,
    process_cpu_s,
    seed_users,
    table,
)
from redis.asyncio import Redis

from memcompress.bootstrap import build_services
from memcompress.jobs import scan_and_enqueue
from memcompress.keys import job_id
from memcompress.metrics import Metrics
from memcompress.repositories.database import USER_MEMORY, MongoDatabase
from memcompress.repositories.indexes import ensure_indexes
from memcompress.settings import load_settings
from memcompress.summarizers.extractive import ExtractiveSummarizer

THRESHOLD = 50
SIZES = (20, 40, 60, 80, 100)
QUICK_EVENTS = [10_000, 100_000]
FULL_EVENTS = [10_000, 100_000]
ACTIVE_FRACTION = 0.01  # users with new events since the last scan, for the incremental scan
NEW_EVENTS = 5  # each


def user_counts(total: int, tag: str) -> list[tuple[str, int]]:
    counts: list[tuple[str, int]] = []
    left, i = total, 0
    while left > 0:
        n = min(SIZES[i % len(SIZES)], left)
        counts.append((f"scan-{tag}-{i:07d}", n))
        left -= n
        i += 1
    return counts


def group_pipeline(counter: CommandCounter) -> list[dict[str, Any]]:
    """The pipeline of the scan's aggregation, as sent (count_documents is an aggregate too)."""
    for command in reversed(counter.aggregates):
        pipeline: list[dict[str, Any]] = command.get("pipeline", [])
        if any("$group" in stage and stage["$group"].get("_id") == "$user_id" for stage in pipeline):
            return pipeline
    raise RuntimeError("the scan's aggregation was not seen")


async def one_size(servers: Servers, total: int, repeat: int) -> dict[str, Any]:
    counter = CommandCounter()
    tag = uuid.uuid4().hex[:8]
    name = f"bench_scan_{tag}"
    database = MongoDatabase(servers.mongo_url, name, event_listeners=[counter])
    await database.connect()
    await ensure_indexes(database)
    counts = user_counts(total, tag)
    started = time.perf_counter()
    await seed_users(database, counts)
    seed_s = time.perf_counter() - started
    redis = Redis.from_url(servers.redis_url)
    queue = f"bench:scan:{uuid.uuid4().hex[:6]}"
    settings = load_settings(
        mongodb_uri=servers.mongo_url,
        mongodb_db=name,
        redis_url=servers.redis_url,
        queue_name=queue,
        threshold=THRESHOLD,
        summarizer="extractive",  # the scan calls no summariser
    )
    services = build_services(settings, database, redis, Metrics(), ExtractiveSummarizer())
    memory = services.memory

    timings: list[float] = []
    mongo_cpu: list[float] = []
    found = 0
    for _ in range(repeat):
        before = process_cpu_s(servers.mongo_pid)
        started = time.perf_counter()
        found = len(await memory.users_over_threshold(THRESHOLD))
        timings.append(time.perf_counter() - started)
        after = process_cpu_s(servers.mongo_pid)
        if before is not None and after is not None:
            mongo_cpu.append(after - before)
    pipeline = group_pipeline(counter)
    explain = await database.db.command(
        "explain", {"aggregate": USER_MEMORY, "pipeline": pipeline, "cursor": {}}, verbosity="queryPlanner"
    )

    incremental = await incremental_scan(servers, database, memory, counts, counter, repeat)

    started = time.perf_counter()
    result = await scan_and_enqueue(services, threshold=THRESHOLD, limit=None, full=True)
    scan_s = time.perf_counter() - started
    # Leave nothing behind: the queue and the arq job records of the users queued.
    await redis.delete(queue, *[job_key_prefix + job_id(user.user_id, queue) for user in result.users])
    await redis.aclose()
    await database.db.client.drop_database(name)
    await database.close()
    expected = sum(1 for _, n in counts if n > THRESHOLD)
    return {
        "events": total,
        "users": len(counts),
        "over_threshold": found,
        "expected_over": expected,
        "seed_s": seed_s,
        "inserts_per_s": total / seed_s,
        "agg_best_s": min(timings),
        "agg_median_s": statistics.median(timings),
        "agg_mongo_cpu_s": statistics.median(mongo_cpu) if mongo_cpu else None,
        "scan_and_enqueue_s": scan_s,
        "enqueued": result.enqueued,
        "pipeline": pipeline,
        "explain": explain,
        **incremental,
        "full_vs_incremental": round(min(timings) / incremental["inc_best_s"], 1),
        "load": load_average(),
    }


async def incremental_scan(
    servers: Servers,
    database: MongoDatabase,
    memory: Any,
    counts: list[tuple[str, int]],
    counter: CommandCounter,
    repeat: int,
) -> dict[str, Any]:
    """Append ``NEW_EVENTS`` events now to ``ACTIVE_FRACTION`` of the users, then time the incremental
    scan from a watermark just before them, with the plan of its first query."""
    watermark = datetime.now(UTC) - timedelta(seconds=1)
    active = [user for index, (user, _) in enumerate(counts) if index % round(1 / ACTIVE_FRACTION) == 0]
    now = datetime.now(UTC)
    await database.collection(USER_MEMORY).insert_many(
        [
            {"user_id": user, "role": "user", "content": f"new {i}", "created_at": now, "tags": []}
            for user in active
            for i in range(NEW_EVENTS)
        ]
    )
    timings: list[float] = []
    backlog = None
    for _ in range(repeat):
        counter.reset()
        started = time.perf_counter()
        backlog = await memory.scan_backlog(THRESHOLD, since=watermark)
        timings.append(time.perf_counter() - started)
    recent: list[dict[str, Any]] = counter.aggregates[0]["pipeline"] if counter.aggregates else []
    explain = await database.db.command(
        "explain", {"aggregate": USER_MEMORY, "pipeline": recent, "cursor": {}}, verbosity="queryPlanner"
    )
    return {
        "inc_active_users": backlog.active_users if backlog else None,
        "inc_found": len(backlog.users) if backlog else None,
        "inc_best_s": min(timings),
        "inc_median_s": statistics.median(timings),
        "inc_commands": counter.total,
        "inc_pipeline": recent,
        "inc_explain": explain,
    }


def render(rows: list[dict[str, Any]]) -> str:
    body = [
        [
            f"{r['events']:,}",
            f"{r['users']:,}",
            f"{r['over_threshold']:,}" + ("" if r["over_threshold"] == r["expected_over"] else " (WRONG)"),
            f"{r['seed_s']:.1f}",
            f"{r['inserts_per_s']:,.0f}",
            f"{r['agg_best_s']:.2f}",
            f"{r['agg_median_s']:.2f}",
            "-" if r["agg_mongo_cpu_s"] is None else f"{r['agg_mongo_cpu_s']:.2f}",
            f"{r['agg_best_s'] / r['events'] * 1e6:.1f}",
            f"{r['scan_and_enqueue_s']:.2f}",
            f"{r['enqueued']:,}" + ("" if r["enqueued"] == r["over_threshold"] else " (WRONG)"),
            f"{r['inc_active_users']:,}",
            f"{r['inc_best_s']:.3f}",
            str(r["inc_commands"]),
            plan_summary(r["inc_explain"]),
            f"{r['full_vs_incremental']:g}x",
        ]
        for r in rows
    ]
    headers = [
        "events",
        "users",
        "over 50",
        "seed s",
        "inserts/s",
        "agg best s",
        "agg median s",
        "agg mongo CPU s",
        "us/event",
        "scan+enqueue s",
        "enqueued",
        "incr: active users",
        "incr best s",
        "incr commands",
        "incr plan",
        "full/incr",
    ]
    return table(headers, body)


def extended_json(value: Any) -> str:
    """``value`` as MongoDB Extended JSON: the pipeline holds a datetime (the "dated events" bound),
    which plain ``json.dumps`` refuses. Datetimes as ``{"$date": ISO-8601}``, readable and read back by
    ``bson.json_util.loads``; anything else BSON-only as ``bson.json_util`` writes it."""

    def default(item: Any) -> Any:
        if isinstance(item, datetime):
            return {"$date": item.isoformat()}
        return json_util.default(item)

    return json.dumps(value, default=default)


def plan_summary(explain: dict[str, Any]) -> str:
    """The plan of the first stage ($match): the part an index could serve."""
    text = json.dumps(explain, default=str)
    for marker in ("IXSCAN", "COLLSCAN", "DISTINCT_SCAN", "COUNT_SCAN"):
        if marker in text:
            return marker
    return "unknown (see the full plan)"


async def run(events: list[int], repeat: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with bench_servers() as servers:
        print_machine({"threshold": str(THRESHOLD), "repeat": str(repeat)})
        for total in events:
            row = await one_size(servers, total, repeat)
            rows.append(row)
            print(
                f"# {total:,} events: seeded in {row['seed_s']:.1f} s, aggregation {row['agg_best_s']:.2f} s,"
                f" plan {plan_summary(row['explain'])}; load {row['load']}",
                flush=True,
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, nargs="+", help=f"total events (default {FULL_EVENTS})")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_EVENTS}, 2 repeats")
    parser.add_argument("--repeat", type=int, help="aggregation runs per size (default 3)")
    parser.add_argument("--json", type=Path, help="also write the rows here (scratch output, e.g. /tmp)")
    args = parser.parse_args()
    events = args.events or (QUICK_EVENTS if args.quick else FULL_EVENTS)
    repeat = args.repeat or (2 if args.quick else 3)
    rows = asyncio.run(run(events, repeat))
    print()
    print(render(rows))
    largest = rows[-1]
    print(f"\nPipeline sent by users_over_threshold: {extended_json(largest['pipeline'])}")
    print(f"explain (queryPlanner) at {largest['events']:,} events:")
    noise = ("$clusterTime", "operationTime", "serverInfo", "command", "ok")
    shown = {k: v for k, v in largest["explain"].items() if k not in noise}
    print(json.dumps(shown, indent=2, default=str))
    print(
        f"\nIncremental scan, its first query (users with events since the watermark): {extended_json(largest['inc_pipeline'])}"
    )
    print(f"explain (queryPlanner) at {largest['events']:,} events:")
    shown = {k: v for k, v in largest["inc_explain"].items() if k not in noise}
    print(json.dumps(shown, indent=2, default=str))
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2, default=str))


if __name__ == "__main__":
    main()
