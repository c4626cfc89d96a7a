"""``compress`` (one user, inline) and ``forget`` (GDPR erase of one user)."""

from __future__ import annotations

import json

import click

from memcompress.bootstrap import open_services
from memcompress.cli.context import CLI_REDIS_RETRIES, EXIT_FAILED, CliState, run
from memcompress.jobs import forget_user, plan_compression, run_compression


@click.command()
@click.argument("user_id")
@click.option("--dry-run", is_flag=True, help="Show what would be folded; store and trim nothing.")
@click.option(
    "--preview",
    is_flag=True,
    help="A dry run that also asks the summariser (implies --dry-run; nothing is stored).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_obj
def compress(state: CliState, user_id: str, dry_run: bool, preview: bool, as_json: bool) -> None:
    """Compress USER_ID now, inline (no queue).

    Exit 0 when compressed or there was nothing to do (at or under the threshold, or another worker
    holds the user), 1 when it failed (LLM error after retries, unresolved conflict), 2 on bad
    configuration or an unreachable store.
    """

    dry_run = dry_run or preview  # a preview never writes

    async def work() -> int:
        settings = state.settings()
        async with open_services(settings, redis_retries=CLI_REDIS_RETRIES) as services:
            if dry_run:
                plan = await plan_compression(services, user_id, preview=preview)
                shown = plan.as_dict()
                if not preview:
                    shown.pop("preview_summary")
                _echo(shown, as_json)
                return 0
            record = await run_compression(services, user_id)
        shown = record.model_dump(
            mode="json",
            include={
                "user_id",
                "outcome",
                "reason",
                "events_before",
                "events_after",
                "events_folded",
                "chunks",
                "unfoldable",
                "summary_repaired",
            },
        )
        _echo(shown, as_json)
        return EXIT_FAILED if record.failed else 0

    run(state, work())


@click.command()
@click.argument("user_id")
@click.option("--yes", is_flag=True, help="Really erase. Without it, only shows what would go.")
@click.pass_obj
def forget(state: CliState, user_id: str, yes: bool) -> None:
    """Erase everything about USER_ID (GDPR): events, archive, profile and summary, compaction
    records, dead letter, lock, queued job and re-check flag. Prints what was removed."""

    async def work() -> int:
        settings = state.settings()
        async with open_services(settings, redis_retries=CLI_REDIS_RETRIES) as services:
            if not yes:
                would_remove = await services.maintenance.count_user_data(user_id)
                _echo({"user_id": user_id, "would_remove": would_remove}, False)
                click.echo("nothing erased: run again with --yes to erase", err=True)
                return EXIT_FAILED
            removed = await forget_user(services, user_id, wait_s=settings.job_timeout_s)
        _echo({"user_id": user_id, "removed": removed}, False)
        return 0

    run(state, work())


def _echo(report: dict[str, object], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(report, ensure_ascii=False, default=str))
        return
    for name, value in report.items():
        if isinstance(value, dict):
            click.echo(f"{name}:")
            for key, item in value.items():
                click.echo(f"  {key}: {item}")
        else:
            click.echo(f"{name}: {value}")


COMMANDS = [compress, forget]
