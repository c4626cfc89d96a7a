"""``migrate`` (indexes) and ``demo``."""

from __future__ import annotations

import os
import sys

import click

from memcompress.bootstrap import open_services
from memcompress.cli.context import CLI_REDIS_RETRIES, EXIT_FAILED, CliState, echo_report, run
from memcompress.layouts import LAYOUTS, LayoutName
from memcompress.settings import ENV_PREFIX


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_obj
def migrate(state: CliState, as_json: bool) -> None:
    """Create the indexes memcompress needs (safe to run again; changes nothing the second time).
    MEMCOMPRESS_MEMORY_TTL_DAYS adds the opt-in TTL index (see the README before using it).

    Exits 1 when user_memory has a TTL index that MEMCOMPRESS_MEMORY_TTL_DAYS did not ask for (the
    app's own migration creates one): it would delete events that were never summarised."""

    async def work() -> int:
        settings = state.settings()
        async with open_services(settings, redis_retries=CLI_REDIS_RETRIES) as services:
            indexes = await services.maintenance.ensure_indexes()
            risks = await services.maintenance.index_risks()
        if as_json:
            echo_report({"indexes": indexes, "risks": risks}, as_json)
        for name in [] if as_json else indexes:
            click.echo(f"index ok: {name}")
        for risk in risks:
            click.echo(f"memcompress: at risk: {risk}", err=True)
        return EXIT_FAILED if risks else 0

    run(state, work())


@click.command()
@click.option("--users", type=click.IntRange(min=1), default=200, show_default=True, help="Synthetic users.")
@click.option(
    "--workers", type=click.IntRange(min=1, max=8), default=2, show_default=True, help="Worker processes."
)
@click.option(
    "--layout",
    type=click.Choice(LAYOUTS),
    default="user_memory",
    show_default=True,
    help="Where the synthetic history is written (MEMCOMPRESS_LAYOUT).",
)
@click.pass_obj
def demo(state: CliState, users: int, workers: int, layout: LayoutName) -> None:
    """Seed a synthetic corpus and compress it through the real queue and worker processes, on
    embedded servers unless MEMCOMPRESS_MONGODB_URI / MEMCOMPRESS_REDIS_URL (or --mongodb-uri /
    --redis-url) are set. Uses a database of its own and drops it at the end."""
    from memcompress.demo import main

    # The demo's worker processes read the environment: the group's options go there (this process
    # ends with the demo).
    os.environ.update({ENV_PREFIX + name.upper(): value for name, value in state.overrides.items()})
    sys.exit(main(users=users, workers=workers, layout=layout))


COMMANDS = [migrate, demo]
