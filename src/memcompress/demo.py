"""``memcompress demo``: the real path on embedded servers, from nothing to a before/after table.

Starts the embedded Mongo wire server and Valkey (unless MEMCOMPRESS_MONGODB_URI / MEMCOMPRESS_REDIS_URL
are set), seeds a synthetic corpus (about 200 users, a few languages, planted facts), scans for users
over the threshold and queues them, lets worker processes (``memcompress worker``) compress them with
the configured summariser (offline by default), then prints a before/after table and the workers'
metrics, read from their /metrics endpoints.

It waits until every queued user has ended: compressed or skipped, or dead-lettered after its tries (a
failed try that is retried is not an end). A user that did not end well is printed on one line with
its error class; no traceback is printed, the clean-up's included. Everything it wrote is removed at
the end: its database, and every Redis key of its queue and of its users' jobs and locks.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from arq.constants import in_progress_key_prefix, job_key_prefix, result_key_prefix, retry_key_prefix
from prometheus_client.parser import text_string_to_metric_families

from memcompress.bootstrap import connect_redis, open_services
from memcompress.embedded import EmbeddedServerError, Server, free_port, mongo_server, valkey_server
from memcompress.jobs import Services, scan_and_enqueue
from memcompress.keys import job_id, lock_key
from memcompress.layouts import LayoutName
from memcompress.models import Outcome, UserBacklog
from memcompress.repositories.errors import StoreUnavailable
from memcompress.settings import ConfigError, Settings, load_settings
from memcompress.testing.app_layouts import app_layout, append_as_app
from memcompress.testing.corpus import USERS, corpus

PROGRESS_EVERY_S = 5.0  # a progress line this often (and a last one) when stderr is not a terminal
WAIT_WITHIN_S = 900.0
# Concurrent jobs per worker process against the embedded SecantusDB: one Python process serves every
# command, so more jobs at once only queue up there and stretch each job towards its time limit. With
# two busy loops on 2 cores: the same users/s as the default 16 (within the runs' noise), and a job's
# mean wall time 3.7 s instead of 8.9 s.
EMBEDDED_MAX_JOBS = 4


async def run_demo(
    users: int, workers: int, layout: LayoutName = "user_memory", worker_env: dict[str, str] | None = None
) -> int:
    # Always a database and queue of its own, dropped at the end: the demo never touches real data.
    tag = uuid.uuid4().hex[:8]
    settings = load_settings(
        mongodb_db=f"memcompress_demo_{tag}",
        queue_name=f"memcompress:demo:{tag}",
        requests_key=f"memcompress:demo:{tag}:requests",  # never drain the apps' requests
        layout=layout,
    )
    print(
        f"layout: {layout}; summariser: {settings.summarizer_name}; "
        f"threshold {settings.threshold}, keep {settings.keep_last}"
    )
    events, planted = app_layout(settings.store_layout()).as_units(*corpus(random.Random(7), users))
    scanned: list[UserBacklog] = []
    async with open_services(settings) as services:
        try:
            await services.maintenance.ensure_indexes()
            await append_as_app(settings, events)
            before = Counter(e.user_id for e in events)
            print(f"seeded {len(events)} events for {len(before)} users")

            scan = await scan_and_enqueue(services)
            scanned = scan.users
            print(f"scan: {len(scan.users)} users over the threshold; {scan.enqueued} jobs queued")
            started = time.monotonic()
            ports = [free_port() for _ in range(workers)]
            processes = [_start_worker(settings, port, worker_env or {}) for port in ports]
            try:
                ended = await _wait_for_users(services, [user.user_id for user in scan.users])
                elapsed = time.monotonic() - started
                metrics = _scrape(ports)
            finally:
                _stop(processes)
            kept = await _print_table(services, scan.users[:15], before, planted)
            calls = sum(v for (name, _), v in metrics.items() if name == "memcompress_llm_requests_total")
            retried = {
                label: int(value)
                for (name, label), value in metrics.items()
                if name == "user_memory_compressions_total" and label != "compressed" and value
            }
            outcomes = Counter(end.outcome for end in ended.values())
            print(
                f"\n{workers} worker process{'es' if workers > 1 else ''}, "
                f"{len(ended) / max(elapsed, 1e-9):.1f} users/s in {elapsed:.0f} s; "
                f"events folded {int(metrics.get(('memcompress_events_folded_total', ''), 0))}; "
                + (f"LLM requests {int(calls)}; " if settings.summarizer_name == "openai" else "")
                + f"outcomes {dict(sorted(outcomes.items()))}"
                + (f"; tries retried {retried}" if retried else "")
            )
            for user_id, end in sorted(ended.items()):
                if end.outcome not in GOOD_ENDS:
                    print(f"  {user_id}: {end.outcome} ({end.error_class or 'no error class'})")
            missing = [user.user_id for user in scan.users if user.user_id not in ended]
            if missing:
                print(
                    f"  {len(missing)} users did not end within {WAIT_WITHIN_S:g} s: {', '.join(missing[:10])}"
                )
            good = not missing and all(end.outcome in GOOD_ENDS for end in ended.values())
            return 0 if good and kept == min(len(scan.users), 15) else 1
        finally:
            await _clean_up(services, settings, [user.user_id for user in scanned])


GOOD_ENDS = (Outcome.COMPRESSED.value, Outcome.SKIPPED.value)


@dataclass(frozen=True, slots=True)
class UserEnd:
    """How a user's jobs ended: ``compressed`` or ``skipped``, or ``dead letter`` with its error class."""

    outcome: str
    error_class: str | None = None


def _start_worker(settings: Settings, metrics_port: int, extra: dict[str, str]) -> subprocess.Popen[bytes]:
    env = (
        os.environ
        | extra
        | {
            "MEMCOMPRESS_MONGODB_DB": settings.mongodb_db,
            "MEMCOMPRESS_QUEUE_NAME": settings.queue_name,
            "MEMCOMPRESS_REQUESTS_KEY": settings.requests_key,
            "MEMCOMPRESS_LAYOUT": settings.layout,
            "MEMCOMPRESS_METRICS_PORT": str(metrics_port),
            "MEMCOMPRESS_SCAN_CRON": "0 0 1 1 *",  # the demo scans once itself
        }
    )
    return subprocess.Popen(
        [sys.executable, "-m", "memcompress", "worker"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _stop(processes: list[subprocess.Popen[bytes]], within_s: float = 30) -> None:
    """SIGTERM (a worker finishes its jobs), then SIGKILL for one that has not stopped within_s."""
    for process in processes:
        process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + within_s
    for process in processes:
        try:
            process.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def _wait_for_users(
    services: Services, users: list[str], within_s: float = WAIT_WITHIN_S
) -> dict[str, UserEnd]:
    """Until every user has ended (compressed or skipped by a run, or dead-lettered) and no job or
    request of the queue is left, or ``within_s``: the users that ended, with how. Progress: one line
    kept up to date on stderr when it is a terminal, else a line on stdout every ``PROGRESS_EVERY_S``
    and one at the end."""
    deadline = time.monotonic() + within_s
    started = last_line = time.monotonic()
    wanted = set(users)
    ended: dict[str, UserEnd] = {}
    terminal = sys.stderr.isatty()
    while True:
        for record in await services.compaction_log.recent(limit=10 * len(users) + 100):
            if record.user_id in wanted and record.outcome.value in GOOD_ENDS:
                ended[record.user_id] = UserEnd(record.outcome.value)
        for letter in await services.dead_letters.list(limit=len(users) + 1):
            if letter.user_id in wanted and letter.user_id not in ended:
                ended[letter.user_id] = UserEnd("dead letter", letter.error_class)
        now = time.monotonic()
        line = f"  {len(ended)}/{len(users)} users done, {len(ended) / max(now - started, 1e-9):.1f} users/s"
        if terminal:
            print(f"\r{line}", end="", file=sys.stderr, flush=True)
        elif now - last_line >= PROGRESS_EVERY_S:
            print(line, flush=True)
            last_line = now
        idle = await services.queue_admin.depth() == 0 and not await services.queue_admin.waiting_requests(1)
        if (len(ended) == len(users) and idle) or now >= deadline:
            if terminal:
                print(file=sys.stderr)
            else:
                print(line, flush=True)
            return ended
        await asyncio.sleep(1.0)


async def _clean_up(services: Services, settings: Settings, users: list[str]) -> None:
    """Drop the demo's database, and delete its Redis keys: its queue's (the queue, its requests, the
    last scan's record, workers' health lines) and its users' job and lock keys. A failure is printed
    in one line, never as a traceback."""
    steps = [
        ("database", services.maintenance.drop_database()),
        ("redis keys", _delete_redis_keys(settings, users)),
    ]
    for what, step in steps:
        try:
            await step
        except Exception as error:  # the clean-up reports, the run's own outcome stands
            print(
                f"memcompress demo: could not remove the demo's {what} ({type(error).__name__})",
                file=sys.stderr,
            )


async def _delete_redis_keys(settings: Settings, users: list[str]) -> None:
    redis = connect_redis(settings, retries=1)
    try:
        queue = settings.queue_name
        keys = {
            key
            for pattern in (f"{queue}*", f"arq:*{queue}*")
            async for key in redis.scan_iter(match=pattern, count=1000)
        }
        for user_id in users:
            job = job_id(user_id, queue)
            keys.update(
                prefix + job
                for prefix in (job_key_prefix, in_progress_key_prefix, retry_key_prefix, result_key_prefix)
            )
            keys.add(lock_key(user_id, queue))
        for start in range(0, len(keys), 500):
            await redis.delete(*list(keys)[start : start + 500])
    finally:
        await redis.aclose()


def _scrape(ports: list[int]) -> dict[tuple[str, str], float]:
    """Every sample of the workers' /metrics endpoints, summed: (name, first label value) -> value
    (a worker that does not answer is left out)."""
    totals: dict[tuple[str, str], float] = {}
    for port in ports:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
                text = response.read().decode()
        except OSError:
            continue
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                key = (sample.name, next(iter(sample.labels.values()), ""))
                totals[key] = totals.get(key, 0.0) + sample.value
    return totals


async def _print_table(
    services: Services, users: list[UserBacklog], before: Counter[str], planted: dict[str, str]
) -> int:
    width = max([10, *(len(user.user_id) for user in users)])
    print(f"\n{'user':<{width}} {'before':>6} {'after':>5}  planted fact kept?  summary excerpt")
    kept = 0
    for user in users:
        profile = await services.profiles.get(user.user_id)
        summary = profile.memory_summary or ""
        fact = planted[user.user_id]
        in_summary = fact in summary
        still_stored = any(
            e.content == fact for e in await services.memory.get_recent_events(user.user_id, 100)
        )
        kept += in_summary or still_stored
        where = "in summary" if in_summary else ("still stored" if still_stored else "NO")
        excerpt = summary.splitlines()[0][:60] if summary else ""
        after = await services.memory.count_events(user.user_id)
        print(f"{user.user_id:<{width}} {before[user.user_id]:>6} {after:>5}  {where:<18}  {excerpt}")
    return kept


def main(users: int = USERS, workers: int = 2, layout: LayoutName = "user_memory") -> int:
    started: list[Server] = []
    cleanup: list[Path] = []
    worker_env: dict[str, str] = {}
    try:
        if not os.environ.get("MEMCOMPRESS_MONGODB_URI"):
            data_dir = Path(tempfile.mkdtemp(prefix="memcompress-demo-data-"))
            cleanup.append(data_dir)
            print(f"starting the embedded MongoDB wire server (SecantusDB, data in {data_dir}) ...")
            started.append(mongo := mongo_server(data_dir=data_dir).start())
            os.environ["MEMCOMPRESS_MONGODB_URI"] = mongo.url
            if not os.environ.get("MEMCOMPRESS_MAX_JOBS"):
                worker_env["MEMCOMPRESS_MAX_JOBS"] = str(EMBEDDED_MAX_JOBS)
        if not os.environ.get("MEMCOMPRESS_REDIS_URL"):
            print("starting the embedded Valkey ...")
            started.append(valkey := valkey_server().start())
            os.environ["MEMCOMPRESS_REDIS_URL"] = valkey.url
        return asyncio.run(run_demo(users, workers, layout, worker_env))
    except (ConfigError, StoreUnavailable, EmbeddedServerError) as error:
        print(f"memcompress demo: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # one line, never a traceback: the class says what failed
        print(f"memcompress demo: failed ({type(error).__name__})", file=sys.stderr)
        return 1
    finally:
        for server in started:
            server.close()
        for path in cleanup:
            shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
