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
@click.version_option(package_name="memcompress")
@click.pass_context
def cli(ctx: click.Context, verbose: bool, log_format: str, debug_drivers: bool) -> None:
    """Compress per-user chat memory in MongoDB without forgetting what a user said.

    Every command reads the MEMCOMPRESS_* environment variables (and ./.env); see the README's
    configuration table. Exit codes: 0 done, 1 failed, 2 bad configuration or unreachable store.
    """
    setup_logging(log_format, logging.DEBUG if verbose else logging.WARNING, debug_drivers=debug_drivers)
    ctx.obj = CliState(verbose=verbose, log_format=log_format, debug_drivers=debug_drivers)


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
