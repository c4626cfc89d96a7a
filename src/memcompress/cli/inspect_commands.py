"""``user``: what happened to one user, without reading logs (the same report as the web's user page,
from :mod:`memcompress.jobs.inspect`). No message content; the summary text only with
``--show-summary``."""

from __future__ import annotations

from typing import Any

import click

from memcompress.bootstrap import open_services
from memcompress.cli.context import CLI_REDIS_RETRIES, EXIT_FAILED, CliState, echo_report, run, valid_user_ids
from memcompress.jobs.inspect import RUNS_SHOWN, UNKNOWN_USER, inspect_user


@click.command("user")
@click.argument("user_id", callback=valid_user_ids)
@click.option(
    "--runs", type=click.IntRange(min=1), default=RUNS_SHOWN, show_default=True, help="Compactions shown."
)
@click.option("--show-summary", is_flag=True, help="Also print the summary text (user content).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_obj
def user(state: CliState, user_id: str, runs: int, show_summary: bool, as_json: bool) -> None:
    """What the worker knows of USER_ID: profile, events, lock, job, dead letter, last compactions.

    Exit 1 when nothing is stored for the id."""

    async def work() -> int:
        settings = state.settings()
        async with open_services(settings, redis_retries=CLI_REDIS_RETRIES) as services:
            report = await inspect_user(
                services,
                user_id,
                archive=settings.store_layout().archive,
                runs=runs,
                show_summary=show_summary,
            )
        if report is None:
            click.echo(f"memcompress: {user_id}: {UNKNOWN_USER}", err=True)
            return EXIT_FAILED
        if as_json:
            echo_report(report, as_json)
        else:
            _print(report)
        return 0

    run(state, work())


def _print(report: dict[str, Any]) -> None:
    profile = report["profile"]
    click.echo(
        f"user {report['user_id']}" + ("  (ERASED: erase tombstone present)" if report["erased"] else "")
    )
    click.echo(
        "profile: none"
        if profile is None
        else f"profile: summary v{profile['summary_version']}, {profile['summary_chars']} chars, "
        f"language {profile['language']}, {profile['events_summarized']} events summarised"
    )
    if report["overrides"]:
        click.echo("overrides: " + ", ".join(f"{k}={v}" for k, v in report["overrides"].items()))
    events = report["events"]
    click.echo(
        f"events: {events['stored']} stored, {events['archived']} archived, {events['foldable']} foldable"
        f" ({events['pinned']} pinned, {events['unfoldable']} unfoldable)"
    )
    click.echo(
        f"next run would fold {events['would_fold_now']}"
        + (f": {events['why_not']}" if events["why_not"] else "")
    )
    if report["parked"]:
        click.echo(f"PARKED: {report['parked']}")
    lock = report["lock"]
    click.echo(
        "lock: free"
        if lock is None
        else f"lock: held, renewed {lock['renewed_s_ago']}s ago, expires in {lock['expires_in_s']}s"
        + (" (STALE: its holder stopped renewing it)" if lock["stale"] else "")
    )
    job = report["job"]
    if job is None:
        click.echo("job: none queued or running")
    else:
        state = "running" if job["running"] else f"queued, due {job['due_at']}"
        click.echo(f"job: {state}, {job['tries']} tries started, queued {job['age_s']}s ago")
    if report["request_due_at"]:
        click.echo(f"request waiting: due {report['request_due_at']}")
    error = report["last_error"]
    if error:
        click.echo(f"last error: {error['error_class']}: {error['reason']} ({error['at']})")
    letter = report["dead_letter"]
    click.echo(
        "dead letter: none"
        if letter is None
        else f"DEAD LETTER: {letter['reason']} ({letter['error_class']}, {letter['tries']} tries, "
        f"{letter['failed_at']}); `memcompress dead retry {report['user_id']}` queues it again"
    )
    click.echo(f"last {len(report['compactions'])} compactions:")
    for run_ in report["compactions"]:
        tokens = (run_["prompt_tokens"] or 0) + (run_["completion_tokens"] or 0)
        rejected = sum(run_["answers_rejected"].values())
        click.echo(
            f"  {run_['finished_at']} {run_['outcome']} folded={run_['events_folded']} "
            f"llm_calls={run_['llm_calls']} tokens={tokens} {run_['duration_s']:.1f}s"
            + (f" patched={run_['values_patched']}" if run_["values_patched"] else "")
            + (f" rejected={rejected}" if rejected else "")
            + (f" {run_['error_class']}:" if run_["error_class"] else "")
            + (f" {run_['reason']}" if run_["reason"] else "")
        )
    if "summary" in report:
        click.echo("summary:")
        click.echo(report["summary"] or "(none)")


COMMANDS = [user]
