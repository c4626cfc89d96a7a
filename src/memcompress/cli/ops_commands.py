"""What operators of Celery, RQ or Sidekiq expect: ``pause``/``resume``, ``queue list|purge`` and the
dead letters (``dead list|retry|delete``)."""

from __future__ import annotations

from typing import Any

import click

from memcompress.bootstrap import open_queue, open_services
from memcompress.cli.context import (
    CLI_REDIS_RETRIES,
    CliState,
    echo_json,
    not_confirmed,
    plural,
    refuse,
    run,
    shown,
)
from memcompress.jobs import Services
from memcompress.jobs.inspect import queued_jobs
from memcompress.repositories.errors import StoreUnavailable

LIST_AT_MOST = 1000


def _print(report: object, as_json: bool, lines: list[str]) -> None:
    if as_json:
        echo_json(report)
    else:
        for line in lines:
            click.echo(line)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_obj
def pause(state: CliState, as_json: bool) -> None:
    """Workers stop taking compression jobs (running ones finish; scans may still queue users)."""

    async def work() -> int:
        async with open_queue(state.settings(), CLI_REDIS_RETRIES) as ports:
            queue = ports.admin
            await queue.pause()
            _print({"queue": queue.name, "paused": True}, as_json, [f"queue {queue.name}: paused"])
        return 0

    run(state, work())


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_obj
def resume(state: CliState, as_json: bool) -> None:
    """Workers take compression jobs again."""

    async def work() -> int:
        async with open_queue(state.settings(), CLI_REDIS_RETRIES) as ports:
            queue = ports.admin
            was = await queue.resume()
            line = f"queue {queue.name}: resumed" if was else f"queue {queue.name}: was not paused"
            _print({"queue": queue.name, "paused": False, "was_paused": was}, as_json, [line])
        return 0

    run(state, work())


@click.group("queue")
def queue_group() -> None:
    """The compression queue: list or purge its jobs."""


@queue_group.command("list")
@click.option(
    "--limit", type=click.IntRange(min=1), default=100, show_default=True, help="At most this many."
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_obj
def queue_list(state: CliState, limit: int, as_json: bool) -> None:
    """Queued jobs, soonest first: due (waiting or running) and deferred; then the apps' requests
    that no worker has taken yet."""

    async def work() -> int:
        settings = state.settings()
        try:  # the last errors are in MongoDB; without it the queue is still listed
            async with open_services(settings, redis_retries=CLI_REDIS_RETRIES) as services:
                jobs = await queued_jobs(services.queue_admin, services.compaction_log, limit)
            store_error = None
        except StoreUnavailable as error:
            store_error = str(error)
        async with open_queue(settings, CLI_REDIS_RETRIES) as ports:
            queue = ports.admin
            if store_error is not None:
                jobs = await queued_jobs(queue, None, limit)
            depth, paused = await queue.depth(), await queue.paused()
            requests = await queue.waiting_requests(limit)
        for row in (*jobs, *requests):
            row["user_id"] = shown(row["user_id"])
        report = {
            "queue": queue.name,
            "paused": paused,
            "queue_depth": depth,
            "jobs": jobs,
            "requests": requests,
        } | ({"store_error": store_error} if store_error else {})
        lines = [f"queue {queue.name}: {plural(depth, 'job')}{' (paused)' if paused else ''}"]
        lines += [_job_line(j) for j in jobs]
        lines += [f"store: {store_error} (last errors not shown)"] if store_error else []
        lines += [f"requests waiting: {len(requests)}"]
        lines += [f"  {r['user_id']}  {'due' if r['due'] else 'due at'} {r['due_at']}" for r in requests]
        _print(report, as_json, lines)
        return 0

    run(state, work())


def _job_line(job: dict[str, Any]) -> str:
    when = "running" if job["running"] else ("due" if job["due"] else "deferred to") + f" {job['due_at']}"
    age = f", queued {job['age_s']}s ago" if job["age_s"] is not None else ""
    error = job.get("last_error")
    last = f", last error {error['error_class']}: {error['reason']}" if error else ""
    return f"  {job['user_id']}  {when}, tries {job['tries']}{age}{last}"


@queue_group.command("purge")
@click.option("--yes", is_flag=True, help="Really purge. Without it, only says how many jobs would go.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_obj
def queue_purge(state: CliState, yes: bool, as_json: bool) -> None:
    """Drop every queued job (users stay over the threshold: the next scan queues them again)."""

    async def work() -> int:
        async with open_queue(state.settings(), CLI_REDIS_RETRIES) as ports:
            queue = ports.admin
            if not yes:
                depth = await queue.depth()
                _print({"would_purge": depth}, as_json, [f"would purge {plural(depth, 'job')}"])
                return not_confirmed("purged")
            purged = await queue.purge()
        _print({"purged": purged}, as_json, [f"purged {plural(purged, 'job')}"])
        return 0

    run(state, work())


@click.group("dead")
def dead_group() -> None:
    """Dead letters: users whose compression gave up."""


@dead_group.command("list")
@click.option("--error-class", help="Only dead letters of this error class (e.g. CarryLoss).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_obj
def dead_list(state: CliState, error_class: str | None, as_json: bool) -> None:
    """Dead letters, newest first: user, reason, tries, error class."""

    async def work() -> int:
        async with open_services(state.settings(), redis_retries=CLI_REDIS_RETRIES) as services:
            letters = [
                letter.model_dump(mode="json")
                for letter in await services.dead_letters.list(LIST_AT_MOST)
                if error_class in (None, letter.error_class)
            ]
        lines = [plural(len(letters), "dead letter")]
        lines += [
            f"  {d['user_id']}: {d['reason']} ({d['error_class']}, tries {d['tries']}, {d['failed_at']})"
            for d in letters
        ]
        _print({"dead_letters": letters}, as_json, lines)
        return 0

    run(state, work())


def _chosen(user_ids: tuple[str, ...], all_: bool) -> None:
    if bool(user_ids) == all_:
        raise click.UsageError("give USER_IDs or --all (not both)")


async def _dead_lettered(services: Services, user_ids: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """``(users, unknown)``: the dead-lettered users named (every one with no ``user_ids``: ``--all``),
    and the ids named that have no dead letter."""
    if not user_ids:
        return [d.user_id for d in await services.dead_letters.list(LIST_AT_MOST)], []
    found = {user for user in set(user_ids) if await services.dead_letters.find(user) is not None}
    return [u for u in user_ids if u in found], [u for u in dict.fromkeys(user_ids) if u not in found]


def _no_such(unknown: list[str]) -> int:
    return refuse(f"no such dead letter: {', '.join(map(shown, unknown))} (nothing was done)")


@dead_group.command("retry")
@click.argument("user_ids", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Every dead-lettered user.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_obj
def dead_retry(state: CliState, user_ids: tuple[str, ...], all_: bool, as_json: bool) -> None:
    """Queue the dead-lettered users again now (their dead letter goes once they compress). A USER_ID
    with no dead letter is an error (exit 1; nothing is queued)."""
    _chosen(user_ids, all_)

    async def work() -> int:
        async with open_services(state.settings(), redis_retries=CLI_REDIS_RETRIES) as services:
            users, unknown = await _dead_lettered(services, user_ids)
            if unknown:
                return _no_such(unknown)
            queued = {user: await services.queue.request(user) for user in users}
        lines = [
            f"{user}: {'queued' if ok else 'already queued or running; will re-check'}"
            for user, ok in queued.items()
        ]
        _print({"queued": queued}, as_json, lines or ["no dead letters"])
        return 0

    run(state, work())


@dead_group.command("delete")
@click.argument("user_ids", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Every dead letter.")
@click.option("--yes", is_flag=True, help="Really delete.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_obj
def dead_delete(state: CliState, user_ids: tuple[str, ...], all_: bool, yes: bool, as_json: bool) -> None:
    """Delete dead letters (the users' data is untouched; the scan may queue them again). Without --yes,
    shows which would go and exits 1; a USER_ID with no dead letter is an error (exit 1)."""
    _chosen(user_ids, all_)

    async def work() -> int:
        async with open_services(state.settings(), redis_retries=CLI_REDIS_RETRIES) as services:
            users, unknown = await _dead_lettered(services, user_ids)
            if unknown:
                return _no_such(unknown)
            if not yes:
                _print(
                    {"would_delete": users}, as_json, [f"would delete {plural(len(users), 'dead letter')}"]
                )
                return not_confirmed("deleted")
            deleted = [user for user in users if await services.dead_letters.remove(user)]
        _print({"deleted": deleted}, as_json, [f"deleted {plural(len(deleted), 'dead letter')}"])
        return 0

    run(state, work())


COMMANDS = [pause, resume, queue_group, dead_group]
