"""``scan`` (find users over the threshold, optionally queue them) and ``run-once`` (cron mode)."""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import click
from prometheus_client import pushadd_to_gateway
from prometheus_client.exposition import basic_auth_handler, default_handler

from memcompress.bootstrap import open_services
from memcompress.cli.context import CLI_REDIS_RETRIES, EXIT_FAILED, CliState, echo_json, plural, run
from memcompress.jobs import (
    BacklogEstimate,
    Candidates,
    LLMPrices,
    Services,
    compress_now,
    estimate_backlog,
    find_candidates,
    scan_and_enqueue,
)
from memcompress.metrics import RunMetrics, exported_without_created
from memcompress.models import CompactionRecord, Outcome, UserBacklog
from memcompress.redaction import describe_error, split_userinfo


@click.command()
@click.option("--dry-run", is_flag=True, help="Only list the users; change nothing, queue nothing.")
@click.option("--limit", type=click.IntRange(min=1), help="At most this many users (most events first).")
@click.option(
    "--threshold",
    type=click.IntRange(min=1),
    help="Override MEMCOMPRESS_THRESHOLD for this scan (queued jobs still use the workers' own threshold).",
)
@click.option(
    "--full",
    is_flag=True,
    help="Count every user's events, not only those of users with events since the last scan.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
@click.pass_obj
def scan(
    state: CliState, dry_run: bool, limit: int | None, threshold: int | None, full: bool, as_json: bool
) -> None:
    """List users with more than THRESHOLD events and (without --dry-run) queue a job for each.

    A scan is incremental (only users with events since the last scan's watermark) unless --full is
    given, a full scan is due (MEMCOMPRESS_FULL_SCAN_INTERVAL_H), no earlier scan left a watermark, or
    --threshold differs from MEMCOMPRESS_THRESHOLD. A dry run is always full.

    JSON: {"mode": "full"|"incremental", "active_users": N|null, "threshold": N, "users_found": N,
    "users": [{"user_id": ..., "event_count": N}, ...], "invalid_user_ids": N, "invalid_examples":
    [...]}, most events first; without --dry-run it also has "enqueued", with it "estimate" (LLM
    requests and tokens to compress them all, and "cost_usd" when the prices are set; none with the
    extractive summariser, which asks no LLM). Invalid user ids (not a string, empty, over 256
    characters) are never queued, and shown only by type, length and hash.
    """

    async def work() -> int:
        settings = state.settings()
        used = threshold or settings.threshold
        async with open_services(settings, redis_retries=CLI_REDIS_RETRIES) as services:
            estimate = None
            if dry_run:
                found, enqueued = await find_candidates(services, threshold=used, limit=limit), None
                mode = "full"
                if settings.summarizer_name != "extractive":  # offline: no LLM request to estimate
                    estimate = await estimate_backlog(
                        services, found.users, prices=LLMPrices.from_settings(settings)
                    )
            else:
                result = await scan_and_enqueue(services, threshold=used, limit=limit, full=full)
                found = Candidates(
                    result.users, result.invalid_user_ids, result.invalid_examples, result.active_users
                )
                enqueued, mode = result.enqueued, result.mode
        _print_scan(used, found, enqueued, as_json, mode, estimate)
        return 0

    run(state, work())


def _print_scan(
    threshold: int,
    found: Candidates,
    enqueued: int | None,
    as_json: bool,
    mode: str = "full",
    estimate: BacklogEstimate | None = None,
) -> None:
    users = found.users
    if as_json:
        report: dict[str, object] = {
            "mode": mode,
            "active_users": found.active_users,
            "threshold": threshold,
            "users_found": len(users),
            "users": [{"user_id": u.user_id, "event_count": u.event_count} for u in users],
            "invalid_user_ids": found.invalid_user_ids,
            "invalid_examples": found.invalid_examples,
        }
        if enqueued is not None:
            report["enqueued"] = enqueued
        if estimate is not None:
            report["estimate"] = estimate.as_dict()
        echo_json(report)
        return
    looked_at = (
        "every user"
        if found.active_users is None
        else f"{plural(found.active_users, 'user')} with new events"
    )
    click.echo(f"{mode} scan of {looked_at}: {plural(len(users), 'user')} with more than {threshold} events")
    if users:
        width = max(len("user_id"), *(len(u.user_id) for u in users))
        click.echo(f"{'user_id':<{width}}  events")
        for user in users:
            click.echo(f"{user.user_id:<{width}}  {user.event_count:>6}")
    if found.invalid_user_ids:
        click.echo(
            f"{plural(found.invalid_user_ids, 'user_id value')} over the threshold: not valid user ids "
            f"(never queued): {'; '.join(found.invalid_examples)}"
        )
    if estimate is not None:
        cost = f", about ${estimate.cost_usd:.2f}" if estimate.cost_usd is not None else ""
        click.echo(
            f"estimate: {plural(estimate.llm_requests, 'LLM request')}, {estimate.prompt_tokens} prompt + "
            f"{estimate.completion_tokens} completion tokens{cost} ({estimate.users_planned} of "
            f"{plural(estimate.users, 'user')} planned, the rest scaled by their characters; tokens estimated per "
            "character, within about a fifth)"
        )
    if enqueued is None:
        click.echo("dry run: nothing changed, nothing queued")
    else:
        click.echo(f"queued {plural(enqueued, 'job')} ({len(users) - enqueued} already queued or running)")


@click.command("run-once")
@click.option("--limit", type=click.IntRange(min=1), help="At most this many users (most events first).")
@click.option("--dry-run", is_flag=True, help="Only list the users that would be compressed.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables.")
@click.pass_obj
def run_once(state: CliState, limit: int | None, dry_run: bool, as_json: bool) -> None:
    """Cron mode: scan and compress every user over the threshold inline (no queue), then exit.

    Up to MEMCOMPRESS_MAX_JOBS users at a time. Exit 0 when every user was compressed or skipped, 1 when
    any failed. Pushes the run metrics to MEMCOMPRESS_PUSHGATEWAY_URL when set.
    """

    async def work() -> int:
        settings = state.settings()
        run_metrics = RunMetrics()
        run_metrics.runs.inc()
        started = time.monotonic()
        async with open_services(settings, redis_retries=CLI_REDIS_RETRIES) as services:
            for risk in await services.maintenance.index_risks():  # as `status` and `migrate` say
                click.echo(f"memcompress: at risk: {risk}", err=True)
            found = await find_candidates(services, limit=limit)
            if dry_run:
                _print_scan(settings.threshold, found, None, as_json=as_json)
                return 0
            users = found.users
            records = await _compress_all(services, users, settings.max_jobs)
        failed = [r for r in records if r.failed]
        run_metrics.errors.inc(len(failed))
        run_metrics.users_processed.inc(len(records) - len(failed))
        run_metrics.duration.observe(time.monotonic() - started)
        if not failed:
            run_metrics.last_success.set_to_current_time()
        _print_run(records, time.monotonic() - started, as_json)
        if settings.pushgateway_url:
            await _push(settings.pushgateway_url, run_metrics, succeeded=not failed)
        return EXIT_FAILED if failed else 0

    run(state, work())


async def _compress_all(
    services: Services, users: list[UserBacklog], concurrency: int
) -> list[CompactionRecord]:
    gate = asyncio.Semaphore(concurrency)
    hidden = not (sys.stderr.isatty() and users)
    with click.progressbar(length=len(users), label="compressing", file=sys.stderr, hidden=hidden) as bar:

        async def one(user: UserBacklog) -> CompactionRecord:
            async with gate:
                record = await compress_now(services, user.user_id)
            bar.update(1)
            return record

        return list(await asyncio.gather(*(one(u) for u in users)))


def _print_run(records: list[CompactionRecord], elapsed: float, as_json: bool) -> None:
    outcomes = Counter(r.outcome.value for r in records)
    folded = sum(r.events_folded for r in records)
    if as_json:
        failed = [
            {"user_id": r.user_id, "outcome": r.outcome.value, "reason": r.reason}
            for r in records
            if r.failed
        ]
        report = {
            "users": len(records),
            "outcomes": dict(outcomes),
            "events_folded": folded,
            "failed": failed,
        }
        echo_json(report | {"duration_s": round(elapsed, 3)})
        return
    click.echo(f"{'outcome':<12} users")
    for outcome in Outcome:
        click.echo(f"{outcome.value:<12} {outcomes.get(outcome.value, 0):>5}")
    click.echo(f"{plural(len(records), 'user')} in {elapsed:.1f}s; {plural(folded, 'event')} folded")
    for record in records:
        if record.failed:
            click.echo(f"  {record.outcome.value}: {record.user_id}: {record.reason}")


async def _push(url: str, metrics: RunMetrics, succeeded: bool) -> None:
    """POST (push-add): a run with failures leaves out the last-success gauge, so the Pushgateway keeps
    the previous good run's timestamp instead of a 0."""
    exported_without_created()
    if not succeeded:
        metrics.registry.unregister(metrics.last_success)
    gateway, user, password = split_userinfo(url)  # credentials in the URL: sent as basic auth

    def handler(
        url: str, method: str, timeout: float | None, headers: Any, data: bytes
    ) -> Callable[[], None]:
        if user is None:
            return default_handler(url, method, timeout, headers, data)
        return basic_auth_handler(url, method, timeout, headers, data, user, password)

    try:
        await asyncio.to_thread(
            pushadd_to_gateway,
            gateway,
            job="memcompress_run_once",
            registry=metrics.registry,
            handler=handler,
        )
    except OSError as error:
        click.echo(
            f"memcompress: could not push metrics to the Pushgateway: {describe_error(error)}", err=True
        )


COMMANDS = [scan, run_once]
