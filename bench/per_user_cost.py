"""Per-user fold cost vs history length: wall time, Mongo round trips, chunks, peak RSS growth.

For each history length N this seeds one user with N events (from this process), then compresses
that user once in a *fresh* child process (the real ``run_compression``, the OpenAI-compatible
summariser against the local FakeLLM), so that the child's peak RSS (``ru_maxrss``) measures the fold
alone: its baseline is taken after imports and connecting, before the fold starts.

Mongo round trips are counted with a pymongo ``CommandListener`` on the child's client (one command
= one round trip; ``count_documents`` is an ``aggregate``). Redis round trips (the lock) are not
counted.

    .venv/bin/python bench/per_user_cost.py --events 1000 10000 100000
    .venv/bin/python bench/per_user_cost.py --quick            # 1k and 10k

A script that prints numbers, not a test. SecantusDB (the embedded server) does not push sort/limit
down, so each page query reads every remaining event of the user in the key range: time grows
faster than linearly there; on MongoDB each page is a bounded index range read.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from common import (
    CommandCounter,
    bench_servers,
    load_average,
    print_machine,
    rss_mb,
    seed_users,
    table,
)
from redis.asyncio import Redis

from memcompress.bootstrap import build_services
from memcompress.jobs import run_compression
from memcompress.metrics import Metrics
from memcompress.repositories.database import MongoDatabase
from memcompress.repositories.indexes import ensure_indexes
from memcompress.settings import BATCH_SIZE, load_settings
from memcompress.summarizers.base import Summarizer
from memcompress.summarizers.extractive import ExtractiveSummarizer
from memcompress.summarizers.openai_chat import OpenAISummarizer
from memcompress.testing.llm_server import FakeLLM

USER = "bench-user"
OFFLINE = "-"  # in place of the LLM URL: the offline extractive summariser
QUICK_EVENTS = [60, 1000, 10000]  # 60: one chunk, as every user of bench/throughput.py
FULL_EVENTS = [60, 1000, 10000, 100000]


# --- the child: one fold, measured ---------------------------------------------------------------


def make_summarizer(llm_url: str) -> Summarizer:
    """The OpenAI-compatible summariser against the FakeLLM, or the offline one (``llm_url`` "-")."""
    if llm_url == OFFLINE:
        return ExtractiveSummarizer()
    return OpenAISummarizer(model="bench", base_url=llm_url, timeout_s=120)


async def measure_one(
    mongo_url: str, redis_url: str, db_name: str, llm_url: str, batch_size: int
) -> dict[str, Any]:
    counter = CommandCounter()
    database = MongoDatabase(mongo_url, db_name, event_listeners=[counter])
    await database.connect()
    metrics = Metrics()
    redis = Redis.from_url(redis_url)
    summarizer = make_summarizer(llm_url)
    settings = load_settings(
        mongodb_uri=mongo_url,
        mongodb_db=db_name,
        redis_url=redis_url,
        summarizer="extractive" if llm_url == OFFLINE else "openai",
        retention="delete",  # with either summariser, as this benchmark always measured
        batch_size=batch_size,
        lock_ttl_s=600,
    )
    services = build_services(settings, database, redis, metrics, summarizer)
    await redis.ping()
    baseline = rss_mb()
    peak = baseline
    done = threading.Event()

    def sample() -> None:  # a thread: still samples while the event loop is busy parsing a batch
        nonlocal peak
        while not done.wait(0.02):
            peak = max(peak, rss_mb())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    counter.reset()
    started = time.perf_counter()
    record = await run_compression(services, USER)
    elapsed = time.perf_counter() - started
    done.set()
    sampler.join()
    maxrss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    round_trips = counter.total
    by_name = dict(counter.by_name)
    await summarizer.aclose()
    await redis.aclose()
    await database.close()
    return {
        "outcome": record.outcome.value,
        "reason": record.reason,
        "folded": record.events_folded,
        "chunks": record.chunks,
        "llm_calls": record.llm_calls,
        "seconds": elapsed,
        "round_trips": round_trips,
        "by_command": by_name,
        "rss_baseline_mb": baseline,
        "rss_peak_sampled_mb": peak,
        "rss_peak_mb": max(maxrss_mb, peak),
    }


# --- the parent: seed, run the child, tabulate ---------------------------------------------------


async def seed(mongo_url: str, db_name: str, events: int) -> float:
    database = MongoDatabase(mongo_url, db_name)
    await database.connect()
    await ensure_indexes(database)
    started = time.perf_counter()
    await seed_users(database, [(USER, events)])
    elapsed = time.perf_counter() - started
    await database.close()
    return elapsed


async def drop(mongo_url: str, db_name: str) -> None:
    database = MongoDatabase(mongo_url, db_name)
    await database.connect()
    await database.db.client.drop_database(db_name)
    await database.close()


def run_child(mongo_url: str, redis_url: str, db_name: str, llm_url: str, batch_size: int) -> dict[str, Any]:
    argv = [sys.executable, __file__, "--child", mongo_url, redis_url, db_name, llm_url, str(batch_size)]
    out = subprocess.run(argv, capture_output=True, text=True, check=False, env=os.environ.copy())
    if out.returncode != 0:
        raise RuntimeError(f"measuring child failed:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


async def run(
    events: list[int], batch_size: int, latency_s: float, summarizer: str = "fakellm"
) -> list[dict[str, Any]]:
    llm = FakeLLM(latency_s=latency_s).start()
    llm_url = OFFLINE if summarizer == "extractive" else llm.base_url
    rows: list[dict[str, Any]] = []
    try:
        with bench_servers() as servers:
            described = f"FakeLLM, latency {latency_s:g} s" if llm_url != OFFLINE else "extractive (offline)"
            print_machine({"summarizer": described, "batch_size": str(batch_size)})
            for n in events:
                db_name = f"bench_cost_{uuid.uuid4().hex[:8]}"
                seed_s = await seed(servers.mongo_url, db_name, n)
                try:
                    row = run_child(servers.mongo_url, servers.redis_url, db_name, llm_url, batch_size)
                finally:
                    await drop(servers.mongo_url, db_name)
                row |= {"events": n, "seed_s": seed_s, "load": load_average()}
                if row["outcome"] != "compressed":
                    print(f"# {n} events: outcome {row['outcome']} ({row['reason']})", flush=True)
                rows.append(row)
                print(
                    f"# {n} events done in {row['seconds']:.1f} s (seeding took {seed_s:.1f} s); load {row['load']}",
                    flush=True,
                )
    finally:
        llm.stop()
    print()
    print(render(rows))
    return rows


def render(rows: list[dict[str, Any]]) -> str:
    body = []
    first = rows[0] if rows else None
    for row in rows:
        chunks = max(row["chunks"], 1)
        growth = row["rss_peak_mb"] - row["rss_baseline_mb"]
        vs_first = row["rss_peak_mb"] - first["rss_peak_mb"] if first else 0.0
        commands = ", ".join(f"{k} {v}" for k, v in sorted(row["by_command"].items(), key=lambda kv: -kv[1]))
        body.append(
            [
                f"{row['events']:,}",
                f"{row['folded']:,}",
                row["chunks"],
                f"{row['seconds']:.1f}",
                f"{row['seconds'] / chunks * 1000:.0f}",
                row["round_trips"],
                f"{row['round_trips'] / chunks:.1f}",
                f"{growth:.1f}",
                f"{vs_first:+.1f}",
                commands,
            ]
        )
    headers = [
        "events",
        "folded",
        "chunks",
        "wall s",
        "ms/chunk",
        "mongo RTs",
        "RTs/chunk",
        "peak RSS growth MB",
        "peak RSS vs first MB",
        "round trips by command",
    ]
    return table(headers, body)


def main(
    default_batch_size: int = BATCH_SIZE, default_summarizer: str = "fakellm", doc: str | None = __doc__
) -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        mongo_url, redis_url, db_name, llm_url, batch_size = sys.argv[2:7]
        result = asyncio.run(measure_one(mongo_url, redis_url, db_name, llm_url, int(batch_size)))
        print(json.dumps(result))
        return
    parser = argparse.ArgumentParser(description=doc.splitlines()[0] if doc else None)
    parser.add_argument("--events", type=int, nargs="+", help=f"history lengths (default {FULL_EVENTS})")
    parser.add_argument("--quick", action="store_true", help=f"only {QUICK_EVENTS}")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=default_batch_size,
        help=f"events per page (default {default_batch_size}; production default {BATCH_SIZE})",
    )
    parser.add_argument(
        "--summarizer",
        choices=["fakellm", "extractive"],
        default=default_summarizer,
        help=f"the OpenAI-compatible one against the FakeLLM, or the offline one (default {default_summarizer})",
    )
    parser.add_argument("--latency", type=float, default=0.0, help="FakeLLM latency, seconds (default 0)")
    parser.add_argument("--json", type=Path, help="also write the rows here (scratch output, e.g. /tmp)")
    args = parser.parse_args()
    events = args.events or (QUICK_EVENTS if args.quick else FULL_EVENTS)
    rows = asyncio.run(run(events, args.batch_size, args.latency, args.summarizer))
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
