"""``compress`` (one user, inline) and ``forget`` (GDPR erase of one user)."""

from __future__ import annotations

import click

from memcompress.bootstrap import open_services
from memcompress.cli.context import (
    CLI_REDIS_RETRIES,
    EXIT_FAILED,
    CliState,
    echo_report,
    not_confirmed,
    refuse,
    run,
    valid_user_ids,
)
from memcompress.jobs import LLMPrices, compress_now, forget_user, plan_compression
from memcompress.logs import bind_job

# What a dry run estimates of the LLM: not shown with the extractive summariser, which asks none.
LLM_ESTIMATES = ("estimated_prompt_tokens", "estimated_completion_tokens", "estimated_cost_usd")


@click.command()
@click.argument("user_id", callback=valid_user_ids)
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
                plan = await plan_compression(
                    services, user_id, preview=preview, prices=LLMPrices.from_settings(settings)
                )
                shown = plan.as_dict()
                if not preview:
                    shown.pop("preview_summary")
                if settings.summarizer_name == "extractive":  # offline: no LLM request, no token
                    for name in LLM_ESTIMATES:
                        shown.pop(name, None)
                echo_report(shown, as_json)
                return 0
            record = await compress_now(services, user_id)
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
        echo_report(shown, as_json)
        return EXIT_FAILED if record.failed else 0

    with bind_job(user_id=user_id):
        run(state, work())


@click.command()
@click.argument("user_id")
@click.option("--yes", is_flag=True, help="Really erase. Without it, only shows what would go.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_obj
def forget(state: CliState, user_id: str, yes: bool, as_json: bool) -> None:
    """Erase everything about USER_ID (GDPR): events, archive, profile and summary, compaction
    records, dead letter, lock, queued job and waiting request. Prints what was removed.

    Without --yes, shows what would go and exits 1. An id with nothing stored is an error (exit 1),
    with or without --yes: a mistyped id must not pass for an erased user."""

    async def work() -> int:
        settings = state.settings()
        async with open_services(settings, redis_retries=CLI_REDIS_RETRIES) as services:
            would_remove = await services.maintenance.count_user_data(user_id)
            if not any(would_remove.values()):
                return refuse("nothing stored for this id — check the id (nothing was erased)")
            if not yes:
                echo_report({"user_id": user_id, "would_remove": would_remove}, as_json)
                return not_confirmed("erased")
            removed = await forget_user(services, user_id, wait_s=settings.job_timeout_s)
        echo_report({"user_id": user_id, "removed": removed}, as_json)
        return 0

    with bind_job(user_id=user_id):
        run(state, work())


COMMANDS = [compress, forget]
