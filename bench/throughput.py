"""Users compressed per second: our worker (scan + arq worker processes) vs the TL-08 design.

Every configuration gets a fresh database seeded with the same data: U users x ``--events`` events
(threshold 50, keep_last 20, so each user is one LLM call on our side too). The LLM is the local
FakeLLM (``memcompress.testing.llm_server``) answering after ``--latency`` seconds.

- ``tl08``: ``bench/tl08_baseline.py``, a reimplementation of the TL-08 design for comparison only
  (one global lock, users one after another).
- ``ours``: ``scan_and_enqueue`` (the real scan), then P real worker processes
  (``python -m memcompress worker --burst``, configured by ``MEMCOMPRESS_*`` only)
  with ``MEMCOMPRESS_MAX_JOBS`` = J and the product's default poll delay. Wall time runs from the
  scan's start to the last worker's exit, so it includes the scan and the workers' start-up (imports,
  connecting); "job span" is the first job's start to the last job's end as recorded in
  ``compaction_log``.

The ideal is ``J / latency`` users/s per process: the LLM wait alone. The embedded Mongo server
(SecantusDB, one pure-Python process) is usually the real limit: the table shows its CPU use, and a
last pass (skipped by ``--quick`` / ``--no-mongo-only``) runs both sides with latency 0 to show the
store's own cost per user.

The worker polls the queue every ``MEMCOMPRESS_POLL_DELAY_S`` (the product default, 0.1 s, in the
``ours`` rows; arq starts jobs only when it polls). Unless ``--quick``, what-if rows (``ours-poll``)
run the same worker with only that variable changed: ``--poll-delay``, default 0.5 s = arq's own
default, i.e. the worker's behaviour before the setting existed.

    .venv/bin/python bench/throughput.py                 # 200 users, J in 1 4 16 32, P in 1 2
    .venv/bin/python bench/throughput.py --quick         # the short version for `make bench`
    .venv/bin/python bench/throughput.py --chart docs/benchmarks.png

Servers: embedded SecantusDB and Valkey unless MEMCOMPRESS_BENCH_MONGODB_URI / _REDIS_URL are set
(then server CPU is not measured). A script that prints numbers, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time
import uuid
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from common import Servers, bench_servers, load_average, print_machine, process_cpu_s, seed_users, table
from redis.asyncio import Redis
from tl08_baseline import run_tl08

from memcompress.bootstrap import build_services
from memcompress.jobs import scan_and_enqueue
from memcompress.metrics import Metrics
from memcompress.repositories.database import COMPACTION_LOG, USER_MEMORY, MongoDatabase
from memcompress.repositories.indexes import ensure_indexes
from memcompress.settings import Settings, load_settings
from memcompress.summarizers.extractive import ExtractiveSummarizer
from memcompress.summarizers.openai_chat import OpenAISummarizer
from memcompress.testing.llm_server import FakeLLM
from memcompress.testing.workers import start_worker, worker_env

THRESHOLD = 50
KEEP_LAST = 20
WORKER_WAIT_S = 1800
# What the worker uses when MEMCOMPRESS_POLL_DELAY_S is not set (the "ours" rows).
PRODUCT_POLL_DELAY_S = float(Settings.model_fields["poll_delay_s"].default)
SLOW_MAX_JOBS = 16  # the slow-LLM row's MAX_JOBS
ARQ_DEFAULT_POLL_DELAY_S = 0.5  # arq's own default: the worker's behaviour before the setting existed


@dataclass
class Row:
    config: str
    design: str
    processes: int
    max_jobs: int
    latency_s: float
    poll_delay_s: float | None  # the worker's MEMCOMPRESS_POLL_DELAY_S; None for the TL-08 rows
    users: int
    wall_s: float
    compressed: int
    llm_calls: int
    events_left: int
    mongo_cpu_s: float | None = None
    workers_cpu_s: float | None = None
    job_span_s: float | None = None
    server_ops: int | None = None  # serverStatus opcounters, every client (heartbeats included)
    scan_s: float | None = None
    load: str = ""
    problems: list[str] = field(default_factory=list)

    @property
    def users_per_s(self) -> float:
        return self.compressed / self.wall_s if self.wall_s else 0.0

    @property
    def ideal(self) -> float | None:
        if not self.latency_s:
            return None
        return self.processes * self.max_jobs / self.latency_s

    @property
    def mongo_busy(self) -> float | None:
        return None if self.mongo_cpu_s is None else self.mongo_cpu_s / self.wall_s

    @property
    def mongo_busy_in_span(self) -> float | None:
        """Mongo CPU over the job span (the server is nearly idle outside it: start-up, exit)."""
        span = self.job_span_s or (self.wall_s - (self.scan_s or 0.0))
        return None if self.mongo_cpu_s is None or not span else self.mongo_cpu_s / span


# --- one configuration ---------------------------------------------------------------------------


async def fresh_database(servers: Servers, users: list[str], events: int) -> tuple[MongoDatabase, str]:
    name = f"bench_tp_{uuid.uuid4().hex[:8]}"
    database = MongoDatabase(servers.mongo_url, name)
    await database.connect()
    await database.db.client.drop_database(name)
    await ensure_indexes(database)
    await seed_users(database, [(u, events) for u in users])
    return database, name


async def server_ops(database: MongoDatabase) -> int:
    """Operations the server has counted so far (opcounters: queries, writes, getMores, commands)."""
    status = await database.db.client.admin.command("serverStatus")
    return sum(int(v) for v in status.get("opcounters", {}).values())


async def outcome_counts(database: MongoDatabase) -> tuple[dict[str, int], float | None, int]:
    rows = await (
        await database.collection(COMPACTION_LOG).aggregate(
            [
                {
                    "$group": {
                        "_id": "$outcome",
                        "n": {"$sum": 1},
                        "first": {"$min": "$started_at"},
                        "last": {"$max": "$finished_at"},
                    }
                }
            ]
        )
    ).to_list()
    counts = {row["_id"]: row["n"] for row in rows}
    firsts = [row["first"] for row in rows if row.get("first")]
    lasts = [row["last"] for row in rows if row.get("last")]
    span = (max(lasts) - min(firsts)).total_seconds() if firsts and lasts else None
    left = await database.collection(USER_MEMORY).count_documents({})
    return counts, span, left


async def run_ours(
    servers: Servers,
    llm: FakeLLM,
    users: int,
    events: int,
    processes: int,
    max_jobs: int,
    tag: str,
    poll_delay_s: float | None = None,
) -> Row:
    """P real worker processes at J jobs each; ``poll_delay_s`` (a what-if row) sets
    ``MEMCOMPRESS_POLL_DELAY_S``, otherwise the worker runs with the product default."""
    user_ids = [f"{tag}-user-{i:05d}" for i in range(users)]
    database, db_name = await fresh_database(servers, user_ids, events)
    redis = Redis.from_url(servers.redis_url)
    queue = f"bench:queue:{tag}"
    env = worker_env(
        servers.mongo_url,
        db_name,
        servers.redis_url,
        queue,
        summarizer="openai",
        llm_base_url=llm.base_url,
        llm_model="bench",
        threshold=THRESHOLD,
        keep_last=KEEP_LAST,
        max_jobs=max_jobs,
        **({} if poll_delay_s is None else {"poll_delay_s": poll_delay_s}),
    )
    # The scan runs here, on the workers' database, queue and fold settings; it calls no summariser.
    settings = load_settings(
        mongodb_uri=servers.mongo_url,
        mongodb_db=db_name,
        redis_url=servers.redis_url,
        queue_name=queue,
        threshold=THRESHOLD,
        keep_last=KEEP_LAST,
        summarizer="extractive",
    )
    services = build_services(settings, database, redis, Metrics(), ExtractiveSummarizer())
    llm_before = llm.requests
    ops_before = await server_ops(database)
    mongo_before = process_cpu_s(servers.mongo_pid)
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    scan = await scan_and_enqueue(services, threshold=THRESHOLD, limit=None)
    workers = [start_worker(env, burst=True) for _ in range(processes)]
    problems: list[str] = []
    for worker in workers:
        code = await asyncio.to_thread(worker.wait, WORKER_WAIT_S)
        if code != 0:
            problems.append(f"worker exited {code}; log {worker.log_path}")
    wall = time.perf_counter() - started
    mongo_after = process_cpu_s(servers.mongo_pid)
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    ops_after = await server_ops(database)
    counts, span, left = await outcome_counts(database)
    queued_left = await redis.zcard(queue)
    if queued_left:
        problems.append(f"{queued_left} jobs still queued")
    if scan.enqueued != users:
        problems.append(f"scan enqueued {scan.enqueued} of {users}")
    others = {k: v for k, v in counts.items() if k != "compressed"}
    if others:
        problems.append(f"other outcomes: {others}")
    await database.db.client.drop_database(db_name)
    await database.close()
    await redis.aclose()
    for worker in workers:
        if not problems:
            worker.log_path.unlink(missing_ok=True)
    poll = "" if poll_delay_s is None else f" poll={poll_delay_s:g}s"
    return Row(
        config=f"ours P={processes} J={max_jobs}{poll}",
        design="ours" if poll_delay_s is None else "ours-poll",
        processes=processes,
        max_jobs=max_jobs,
        latency_s=llm.latency_s,
        poll_delay_s=PRODUCT_POLL_DELAY_S if poll_delay_s is None else poll_delay_s,
        users=users,
        wall_s=wall,
        compressed=counts.get("compressed", 0),
        llm_calls=llm.requests - llm_before,
        events_left=left,
        mongo_cpu_s=None if mongo_before is None or mongo_after is None else mongo_after - mongo_before,
        workers_cpu_s=(children_after.ru_utime + children_after.ru_stime)
        - (children_before.ru_utime + children_before.ru_stime),
        job_span_s=span,
        server_ops=ops_after - ops_before,
        scan_s=scan.duration_s,
        load=load_average(),
        problems=problems,
    )


async def run_baseline(servers: Servers, llm: FakeLLM, users: int, events: int, tag: str) -> Row:
    user_ids = [f"{tag}-user-{i:05d}" for i in range(users)]
    database, db_name = await fresh_database(servers, user_ids, events)
    redis = Redis.from_url(servers.redis_url)
    summarizer = OpenAISummarizer(model="bench", base_url=llm.base_url)
    llm_before = llm.requests
    ops_before = await server_ops(database)
    mongo_before = process_cpu_s(servers.mongo_pid)
    cpu_before = time.process_time()
    started = time.perf_counter()
    result = await run_tl08(database, redis, summarizer, threshold=THRESHOLD, keep_last=KEEP_LAST)
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu_before  # this process also serves the FakeLLM: an upper bound
    mongo_after = process_cpu_s(servers.mongo_pid)
    ops_after = await server_ops(database)
    left = await database.collection(USER_MEMORY).count_documents({})
    await database.db.client.drop_database(db_name)
    await summarizer.aclose()
    await database.close()
    await redis.aclose()
    return Row(
        config="tl08 baseline",
        design="tl08",
        processes=1,
        max_jobs=1,
        latency_s=llm.latency_s,
        poll_delay_s=None,
        users=users,
        wall_s=wall,
        compressed=result.compressed,
        llm_calls=llm.requests - llm_before,
        events_left=left,
        mongo_cpu_s=None if mongo_before is None or mongo_after is None else mongo_after - mongo_before,
        workers_cpu_s=cpu,
        scan_s=result.scan_s,
        server_ops=ops_after - ops_before,
        load=load_average(),
        problems=result.failures[:3],
    )


# --- the whole run -------------------------------------------------------------------------------


@dataclass
class Plan:
    users: int
    events: int
    latency_s: float
    max_jobs: list[int]
    processes: list[int]
    mongo_only: bool
    poll_delays: list[float]
    slow_latency_s: float | None = None  # one more row: P=1 J=16, the LLM this slow
    slow_users: int = 200


async def run(plan: Plan) -> list[Row]:
    rows: list[Row] = []
    llm = FakeLLM(latency_s=plan.latency_s).start()
    try:
        with bench_servers() as servers:
            print_machine({"users": str(plan.users), "events_per_user": str(plan.events)})
            rows.append(await run_baseline(servers, llm, plan.users, plan.events, uuid.uuid4().hex[:6]))
            report(rows[-1])
            for processes in plan.processes:
                for max_jobs in plan.max_jobs:
                    tag = uuid.uuid4().hex[:6]
                    rows.append(
                        await run_ours(servers, llm, plan.users, plan.events, processes, max_jobs, tag)
                    )
                    report(rows[-1])
            for poll_delay_s in plan.poll_delays:
                for processes in plan.processes:
                    for max_jobs in plan.max_jobs:
                        tag = uuid.uuid4().hex[:6]
                        rows.append(
                            await run_ours(
                                servers, llm, plan.users, plan.events, processes, max_jobs, tag, poll_delay_s
                            )
                        )
                        report(rows[-1])
            if plan.slow_latency_s:
                llm.latency_s = plan.slow_latency_s
                tag = uuid.uuid4().hex[:6]
                rows.append(await run_ours(servers, llm, plan.slow_users, plan.events, 1, SLOW_MAX_JOBS, tag))
                report(rows[-1])
            if plan.mongo_only:
                llm.latency_s = 0.0
                rows.append(await run_baseline(servers, llm, plan.users, plan.events, uuid.uuid4().hex[:6]))
                report(rows[-1])
                best_jobs = max(plan.max_jobs)
                for processes in plan.processes:
                    tag = uuid.uuid4().hex[:6]
                    rows.append(
                        await run_ours(servers, llm, plan.users, plan.events, processes, best_jobs, tag)
                    )
                    report(rows[-1])
    finally:
        llm.stop()
    return rows


def report(row: Row) -> None:
    note = f"; PROBLEMS: {row.problems}" if row.problems else ""
    print(
        f"# {row.config} latency={row.latency_s:g}: {row.compressed}/{row.users} users in {row.wall_s:.1f} s"
        f" (load {row.load}){note}",
        flush=True,
    )


def render(rows: list[Row]) -> str:
    body: list[list[object]] = []
    baselines = {r.latency_s: r for r in rows if r.design == "tl08"}
    for r in rows:
        base = baselines.get(r.latency_s)
        ratio = r.users_per_s / base.users_per_s if base and base.users_per_s else None
        ideal = r.ideal
        body.append(
            [
                r.config,
                f"{r.latency_s * 1000:.0f}",
                "-" if r.poll_delay_s is None else f"{r.poll_delay_s:g}",
                f"{r.compressed}/{r.users}",
                f"{r.wall_s:.1f}",
                f"{r.users_per_s:.1f}",
                "-" if ratio is None else f"{ratio:.1f}x",
                "-" if ideal is None else f"{ideal:.0f}",
                "-" if ideal is None else f"{r.users_per_s / ideal:.0%}",
                "-" if r.job_span_s is None else f"{r.job_span_s:.1f}",
                "-" if not r.job_span_s else f"{r.compressed / r.job_span_s:.1f}",
                "-" if r.mongo_busy is None else f"{r.mongo_busy:.0%}",
                "-" if r.mongo_busy_in_span is None else f"{r.mongo_busy_in_span:.0%}",
                "-"
                if r.mongo_cpu_s is None or not r.compressed
                else f"{r.mongo_cpu_s / r.compressed * 1000:.0f}",
                "-" if r.server_ops is None or not r.compressed else f"{r.server_ops / r.compressed:.1f}",
                "-" if r.workers_cpu_s is None else f"{r.workers_cpu_s:.1f}",
                r.llm_calls,
                "ok" if not r.problems and r.compressed == r.users else "CHECK",
            ]
        )
    headers = [
        "config",
        "LLM ms",
        "poll s",
        "users",
        "wall s",
        "users/s",
        "vs tl08",
        "ideal/s",
        "of ideal",
        "job span s",
        "users/s in span",
        "mongo CPU",
        "in span",
        "mongo ms/user",
        "ops/user",
        "client CPU s",
        "LLM calls",
        "check",
    ]
    return table(headers, body)


def draw_chart(rows: list[Row], path: Path, latency_s: float) -> None:
    """Users/s vs max_jobs per process count (with the ideal and the TL-08 line), and the Mongo
    server's CPU use, for the rows measured at ``latency_s``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, NullLocator, ScalarFormatter

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.6), gridspec_kw={"width_ratios": [3, 2]})
    measured = [r for r in rows if r.latency_s == latency_s]
    baseline = next((r for r in measured if r.design == "tl08"), None)
    colours = {1: "tab:blue", 2: "tab:orange"}
    styles = {"ours": ("o-", "ours"), "ours-poll": ("s-.", "what-if")}
    all_jobs: set[int] = set()
    for design, (style, name) in styles.items():
        groups = sorted({(r.poll_delay_s or 0.0, r.processes) for r in measured if r.design == design})
        for poll_delay_s, processes in groups:
            mine = sorted(
                (
                    r
                    for r in measured
                    if r.design == design
                    and r.processes == processes
                    and (r.poll_delay_s or 0.0) == poll_delay_s
                ),
                key=lambda r: r.max_jobs,
            )
            jobs = [r.max_jobs for r in mine]
            all_jobs.update(jobs)
            colour = colours.get(processes, "tab:green")
            poll = f" poll {poll_delay_s:g} s" if poll_delay_s else ""
            label = f"{name}{poll}, {processes} process{'es' if processes > 1 else ''}"
            alpha = 1.0 if design == "ours" else 0.6
            left.plot(jobs, [r.users_per_s for r in mine], style, color=colour, alpha=alpha, label=label)
            right.plot(
                jobs,
                [(r.mongo_busy_in_span or 0) * 100 for r in mine],
                style,
                color=colour,
                alpha=alpha,
                label=label,
            )
            if design == "ours":
                ideal = [r.ideal or 0 for r in mine]
                left.plot(jobs, ideal, ":", color=colour, alpha=0.5, label=f"ideal J/latency x {processes}")
    if baseline is not None:
        left.axhline(baseline.users_per_s, color="tab:red", linestyle="--", label="TL-08 baseline")
        left.axhline(10 * baseline.users_per_s, color="tab:red", linestyle=":", alpha=0.5, label="10x TL-08")
    ceiling = max((r.users_per_s for r in rows if r.design == "ours" and r.latency_s == 0), default=None)
    if ceiling:
        left.axhline(
            ceiling, color="grey", linestyle="--", alpha=0.7, label="ours with LLM latency 0 (store-bound)"
        )
    for axis in (left, right):
        axis.set_xscale("log", base=2)
        axis.xaxis.set_major_locator(FixedLocator(sorted(all_jobs)))
        axis.xaxis.set_major_formatter(ScalarFormatter())
        axis.xaxis.set_minor_locator(NullLocator())
        axis.set_xlabel("MEMCOMPRESS_MAX_JOBS per process")
        axis.grid(True, alpha=0.3)
    left.set_yscale("log")
    left.yaxis.set_major_formatter(ScalarFormatter())
    left.set_ylabel("users compressed per second (wall)")
    users = baseline.users if baseline else "?"
    left.set_title(f"Throughput, LLM latency {latency_s * 1000:.0f} ms, {users} users x 60 events")
    left.legend(fontsize=7, loc="upper left")
    right.set_ylim(0, 110)
    right.set_ylabel("Mongo server CPU during the job span, % of one core")
    right.set_title("Embedded SecantusDB (one pure-Python process)")
    right.legend(fontsize=7, loc="lower right")
    fig.text(
        0.01,
        0.01,
        "2-core machine shared with other engineers' test runs; see docs/benchmarks.md",
        fontsize=7,
    )
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--users", type=int, help="users per configuration (default 200; --quick 60)")
    parser.add_argument("--events", type=int, default=60, help="events per user (default 60)")
    parser.add_argument("--latency", type=float, default=0.2, help="simulated LLM latency, s (default 0.2)")
    parser.add_argument("--max-jobs", type=int, nargs="+", default=[1, 4, 16, 32])
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--poll-delay",
        type=float,
        nargs="*",
        help="what-if rows with MEMCOMPRESS_POLL_DELAY_S set to these, s"
        f" (default {ARQ_DEFAULT_POLL_DELAY_S:g} = arq's own default; --quick: none)",
    )
    parser.add_argument(
        "--slow-latency",
        type=float,
        default=2.0,
        help=f"one more row: 1 process at J={SLOW_MAX_JOBS}, 200 users, the LLM this slow, s"
        " (default 2; 0: none)",
    )
    parser.add_argument("--quick", action="store_true", help="fewer users, no latency-0 or what-if pass")
    parser.add_argument("--no-mongo-only", action="store_true", help="skip the latency-0 pass")
    parser.add_argument("--chart", type=Path, help="draw users/s vs max_jobs to this PNG")
    parser.add_argument("--json", type=Path, help="also write the rows here (scratch output, e.g. /tmp)")
    parser.add_argument(
        "--from-json", type=Path, help="measure nothing: print (and chart) rows saved by --json"
    )
    args = parser.parse_args()
    if args.from_json is not None:
        saved = json.loads(args.from_json.read_text())
        names = {f.name for f in fields(Row)}
        rows = [Row(**{k: v for k, v in item.items() if k in names}) for item in saved]
        print(render(rows))
        if args.chart is not None:
            draw_chart(rows, args.chart, next(r.latency_s for r in rows if r.design == "tl08"))
        return
    plan = Plan(
        users=args.users or (60 if args.quick else 200),
        events=args.events,
        latency_s=args.latency,
        max_jobs=args.max_jobs,
        processes=args.processes,
        mongo_only=not (args.quick or args.no_mongo_only),
        poll_delays=args.poll_delay
        if args.poll_delay is not None
        else ([] if args.quick else [ARQ_DEFAULT_POLL_DELAY_S]),
        slow_latency_s=args.slow_latency or None,
    )
    rows = asyncio.run(run(plan))
    print()
    print(render(rows))
    if args.json is not None:
        payload: list[dict[str, Any]] = [asdict(r) | {"users_per_s": r.users_per_s} for r in rows]
        args.json.write_text(json.dumps(payload, indent=2))
    if args.chart is not None:
        draw_chart(rows, args.chart, plan.latency_s)
        print(f"\nchart: {args.chart}")


if __name__ == "__main__":
    main()
