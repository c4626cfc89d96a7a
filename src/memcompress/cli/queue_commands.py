"""``worker``, ``enqueue`` and ``status``."""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
from typing import Any

import click
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from memcompress.bootstrap import open_queue, open_services
from memcompress.cli.context import (
    CLI_REDIS_RETRIES,
    EXIT_CONFIG,
    EXIT_FAILED,
    CliState,
    echo_json,
    echo_report,
    fail,
    plural,
    run,
    shown,
    valid_user_ids,
)
from memcompress.jobs import queue_report, store_report
from memcompress.logs import setup_logging
from memcompress.redaction import describe_error
from memcompress.repositories.errors import StoreUnavailable
from memcompress.settings import Settings


@click.command()
@click.option("--burst", is_flag=True, help="Exit once the queue is empty.")
@click.option(
    "--check", is_flag=True, help="Health check: exit 0 if this host's worker reported in recently, else 1."
)
@click.pass_obj
def worker(state: CliState, burst: bool, check: bool) -> None:
    """Run the worker: arq with memcompress's jobs, the scheduled scan and /metrics. SIGTERM stops
    taking jobs and gives running ones MEMCOMPRESS_JOB_COMPLETION_WAIT_S to finish."""
    from memcompress.settings import ConfigError
    from memcompress.worker.arq_settings import worker_settings
    from memcompress.worker.runner import run as run_worker

    try:
        ours = state.settings()
    except ConfigError as error:
        fail(str(error), EXIT_CONFIG)
    if check:
        run(state, _check_health(ours))
    setup_logging(
        state.log_format, logging.DEBUG if state.verbose else logging.INFO, debug_drivers=state.debug_drivers
    )
    run_worker(worker_settings(ours), burst=burst, adaptive=ours.adaptive_jobs)


async def _check_health(settings: Settings) -> int:
    """0 when a worker on this host wrote its health-check key within the last interval, else 1."""
    try:
        async with open_queue(settings, CLI_REDIS_RETRIES) as ports:
            health = await ports.admin.worker_health(socket.gethostname())
    except (RedisConnectionError, RedisTimeoutError) as error:
        fail(f"unhealthy: cannot reach Redis: {describe_error(error)}", EXIT_FAILED)
    for worker, line in sorted(health.items()):
        click.echo(f"{worker}: {line}")
    if not health:
        click.echo(f"memcompress: unhealthy: no worker on {socket.gethostname()} reported in", err=True)
    return 0 if health else EXIT_FAILED


@click.command()
@click.argument("user_ids", nargs=-1, callback=valid_user_ids)
@click.option(
    "--delay", type=click.FloatRange(min=0), default=0.0, show_default=True, help="Seconds to wait."
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_obj
def enqueue(state: CliState, user_ids: tuple[str, ...], delay: float, as_json: bool) -> None:
    """Queue a compression of each USER_ID now (or deferred by --delay). A user whose job is already
    queued or running gets a request instead, compressed again after that job ends, as the apps' are.
    (Dead-lettered users: `memcompress dead retry`.)"""
    if not user_ids:
        raise click.UsageError("give at least one USER_ID")

    async def work() -> int:
        settings = state.settings()
        async with open_queue(settings, CLI_REDIS_RETRIES) as ports:
            queued = {user_id: await ports.queue.request(user_id, delay_s=delay) for user_id in user_ids}
        if as_json:
            echo_report({"queued": queued}, as_json)
        for user_id, new in [] if as_json else queued.items():
            if not new:
                click.echo(f"{user_id}: already queued or running; will re-check")
            else:
                click.echo(f"{user_id}: queued" + (f", due in {delay:g}s" if delay else ""))
        return 0

    run(state, work())


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--watch", is_flag=True, help="Refresh every --interval seconds until Ctrl-C.")
@click.option(
    "--interval", type=click.FloatRange(min=0.5), default=2.0, show_default=True, help="With --watch."
)
@click.pass_obj
def status(state: CliState, as_json: bool, watch: bool, interval: float) -> None:
    """Queue depth, jobs in progress, held locks, last scan, dead letters and the last compactions.
    With MongoDB down it still shows the Redis parts, and one line for what failed."""

    async def work() -> int:
        settings = state.settings()
        while True:
            report = await _status(settings)
            if as_json:
                echo_json(report)
            else:
                if watch:
                    click.clear()
                _print_status(report)
            if not watch:
                return 0
            await asyncio.sleep(interval)

    try:
        run(state, work())
    except KeyboardInterrupt:  # the way out of --watch
        sys.exit(0)


async def _status(settings: Settings) -> dict[str, Any]:
    async with open_queue(settings, CLI_REDIS_RETRIES) as ports:
        report = await queue_report(ports.admin, ports.locks)
    report["in_progress"] = [shown(user) for user in report["in_progress"]]
    for lock in report["held_locks"]:
        lock["user_id"] = shown(lock["user_id"])
    try:
        async with open_services(settings, redis_retries=CLI_REDIS_RETRIES) as services:
            report |= await store_report(services)
    except StoreUnavailable as error:
        return report | {"store_error": str(error)}
    if settings.summarizer_name == "extractive":  # offline: its "requests" are no LLM's, it has no tokens
        del report["llm_usage_24h"]
    return report


def _print_status(report: dict[str, Any]) -> None:
    click.echo(
        f"queue {report['queue']}{' (PAUSED)' if report['paused'] else ''}: {plural(report['queue_depth'], 'job')} ({report['in_progress_count']} running, {report['waiting']} waiting, {report['deferred']} deferred)"
    )
    click.echo(f"in progress: {report['in_progress_count']} {' '.join(report['in_progress'])}".rstrip())
    click.echo(f"requests from apps: {report['requests']} ({report['requests_due']} due)")
    click.echo(f"workers reporting in: {len(report['worker_health'])}")
    for worker, line in sorted(report["worker_health"].items()):
        click.echo(f"  {worker}: {line}")
    scan = report["last_scan"]
    click.echo(
        f"last scan: {scan['finished_at']}, {plural(scan['users_found'], 'user')} found, {scan['enqueued']} queued"
        if scan
        else "last scan: none recorded"
    )
    click.echo(f"held locks: {report['held_locks_count']}")
    for lock in report["held_locks"]:
        click.echo(f"  {lock['user_id']} (expires in {lock['expires_in_s']}s)")
    if "store_error" in report:
        click.echo(f"store: {report['store_error']} (dead letters and compactions not shown)")
        return
    click.echo(f"dead letters: {report['dead_letters_count']}")
    for letter in report["dead_letters"]:
        click.echo(
            f"  {letter['user_id']}: {letter['reason']} (tries {letter['tries']}, {letter['failed_at']})"
        )
    for risk in report["risks"]:
        click.echo(f"AT RISK: {risk}")
    usage = report.get("llm_usage_24h")
    if usage is not None:
        click.echo(
            f"LLM, last 24 hours: {plural(usage['llm_calls'], 'request')}, {usage['prompt_tokens']} prompt + "
            f"{usage['completion_tokens']} completion tokens"
        )
    click.echo("last compactions:")
    for record in report["last_compactions"]:
        click.echo(
            f"  {record['finished_at']} {record['user_id']} {record['outcome']}"
            f" folded={record['events_folded']}"
            + (f" unfoldable={record['unfoldable']}" if record["unfoldable"] else "")
            + (f" summary {record['summary_repaired']}" if record["summary_repaired"] else "")
            + f" {record['reason'] or ''}".rstrip()
        )


COMMANDS = [worker, enqueue, status]
