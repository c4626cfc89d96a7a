"""The ``memcompress`` command group and its shared options; the commands live in the modules it
registers (each imports only :mod:`memcompress.cli.context`, never this module)."""

from __future__ import annotations

import logging

import click

from memcompress.cli import (
    admin_commands,
    config_commands,
    inspect_commands,
    ops_commands,
    queue_commands,
    replay_commands,
    scan_commands,
    user_commands,
    web_commands,
)
from memcompress.cli.context import CliState
from memcompress.logs import setup_logging
from memcompress.settings import unknown_variables


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("-v", "--verbose", is_flag=True, help="Debug logging, and tracebacks with errors.")
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    envvar="MEMCOMPRESS_LOG_FORMAT",
    help="Format of log lines on stderr (or MEMCOMPRESS_LOG_FORMAT).",
)
@click.option(
    "--debug-drivers",
    is_flag=True,
    envvar="MEMCOMPRESS_LOG_DRIVERS",
    help="Also the drivers' own INFO/DEBUG lines (MongoDB commands, HTTP requests). They can hold event "
    "content: for debugging on test data only. Env: MEMCOMPRESS_LOG_DRIVERS=1.",
)
@click.option("--redis-url", metavar="URL", help="Instead of MEMCOMPRESS_REDIS_URL.")
@click.option("--mongodb-uri", metavar="URI", help="Instead of MEMCOMPRESS_MONGODB_URI.")
@click.version_option(package_name="memcompress")
@click.pass_context
def cli(
    ctx: click.Context,
    verbose: bool,
    log_format: str,
    debug_drivers: bool,
    redis_url: str | None,
    mongodb_uri: str | None,
) -> None:
    """Compress per-user chat memory in MongoDB without forgetting what a user said.

    Every command reads the MEMCOMPRESS_* environment variables (and ./.env); see the README's
    configuration table. A MEMCOMPRESS_* variable that is no setting gets a warning naming the closest
    one. Exit codes: 0 done, 1 failed (also: an unknown id, or a destructive command run without
    --yes, which only shows what would go), 2 bad configuration or unreachable store.
    """
    setup_logging(log_format, logging.DEBUG if verbose else logging.WARNING, debug_drivers=debug_drivers)
    for line in unknown_variables(also_known=[p.envvar for p in cli.params if isinstance(p.envvar, str)]):
        click.echo(f"memcompress: warning: {line}", err=True)
    given = {"redis_url": redis_url, "mongodb_uri": mongodb_uri}
    ctx.obj = CliState(
        verbose=verbose,
        log_format=log_format,
        debug_drivers=debug_drivers,
        overrides={name: value for name, value in given.items() if value is not None},
    )


for module in (
    scan_commands,
    user_commands,
    replay_commands,
    queue_commands,
    inspect_commands,
    ops_commands,
    config_commands,
    admin_commands,
    web_commands,
):
    for command in module.COMMANDS:
        cli.add_command(command)
