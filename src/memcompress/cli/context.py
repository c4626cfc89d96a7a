"""What every command shares: the state the group passes down, and the one place
errors become exit codes.

Exit codes: 0 done, 1 a compression (or another operation) failed, 2 bad configuration or a store
that cannot be reached. Errors are one line on stderr; ``--verbose`` adds the traceback.

Nothing written to stderr carries event content, summary text or a credential: errors are described
by :func:`memcompress.redaction.describe_error`, tracebacks rendered by
:func:`memcompress.redaction.format_exception`, and log lines are written as
:mod:`memcompress.logs` says.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NoReturn

import click
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from memcompress.models import MAX_USER_ID_CHARS, iso_utc, shown_user_id, valid_user_id
from memcompress.redaction import describe_error, format_exception, redact_urls
from memcompress.repositories.errors import StoreUnavailable
from memcompress.settings import ConfigError, Settings, load_settings

EXIT_FAILED = 1
EXIT_CONFIG = 2
CLI_REDIS_RETRIES = 2  # a wrong Redis URL fails in seconds (workers retry for about a minute)


@dataclass
class CliState:
    verbose: bool
    log_format: str
    debug_drivers: bool = False
    # Settings given as group options (--redis-url, --mongodb-uri): they win over the environment.
    overrides: dict[str, str] = field(default_factory=dict)

    def settings(self) -> Settings:
        """Read inside a command's coroutine, so a bad setting becomes exit code 2 via ``run``."""
        return load_settings(**self.overrides)


def valid_user_ids(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """A click callback for USER_ID arguments: a user id no job could take is a usage error (exit 2)."""
    for user_id in value if isinstance(value, tuple) else (value,):
        if not valid_user_id(user_id):
            raise click.BadParameter(f"a user id has 1 to {MAX_USER_ID_CHARS} characters")
    return value


def shown(user_id: str) -> str:
    """A user id read from Redis (any client may have put it there): itself when a job could take it,
    else only its type, length and hash (:func:`memcompress.models.shown_user_id`)."""
    return user_id if valid_user_id(user_id) else shown_user_id(user_id)


def fail(message: str, code: int) -> NoReturn:
    click.echo(f"memcompress: {message}", err=True)
    sys.exit(code)


def run(state: CliState, work: Coroutine[Any, Any, int]) -> NoReturn:
    """Run a command's coroutine and exit with its code, turning errors into one line."""
    try:
        code = asyncio.run(work)
    except ConfigError as error:
        fail(str(error), EXIT_CONFIG)
    except StoreUnavailable as error:
        fail(str(error), EXIT_CONFIG)
    except (RedisConnectionError, RedisTimeoutError) as error:
        fail(f"cannot reach Redis: {redact_urls(str(error))}", EXIT_CONFIG)
    except BrokenPipeError:  # `memcompress status | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(EXIT_FAILED)
    except Exception as error:
        if state.verbose:
            print(format_exception(error), file=sys.stderr)
        fail(describe_error(error), EXIT_FAILED)
    sys.exit(code)


def plural(count: int, noun: str) -> str:
    """``1 user``, ``2 users`` (the nouns the CLI counts take an ``s``)."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _json_value(value: object) -> object:
    """What JSON output makes of a value it cannot encode: a time in ISO 8601 with ``Z``, as every
    time in the CLI's JSON is written (:func:`memcompress.models.iso_utc`); anything else as text."""
    return iso_utc(value) if isinstance(value, datetime) else str(value)


def echo_json(report: object) -> None:
    click.echo(json.dumps(report, ensure_ascii=False, default=_json_value))


def echo_report(report: Mapping[str, object], as_json: bool) -> None:
    """A command's data: one JSON object, or ``name: value`` lines (nested mappings indented; a value
    of None is not shown)."""
    if as_json:
        echo_json(report)
        return
    for name, value in report.items():
        if isinstance(value, Mapping):
            click.echo(f"{name}:")
            for key, item in value.items():
                click.echo(f"  {key}: {item}")
        elif value is not None:
            click.echo(f"{name}: {value}")


def refuse(message: str) -> int:
    """A command's coroutine ending in an error it found itself (an unknown id, no ``--yes``): one line
    on stderr, and exit code 1 from ``run``."""
    click.echo(f"memcompress: {message}", err=True)
    return EXIT_FAILED


def not_confirmed(verb: str) -> int:
    """The end of every destructive command run without ``--yes``: it has shown what would go, does
    nothing, says so on stderr, and exits 1 (the same for ``forget``, ``queue purge``, ``dead delete``)."""
    return refuse(f"nothing {verb}: run again with --yes to do it")
