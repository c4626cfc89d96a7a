"""What every command shares: the state the group passes down, logging set-up, and the one place
errors become exit codes.

Exit codes: 0 done, 1 a compression (or another operation) failed, 2 bad configuration or a store
that cannot be reached. Errors are one line on stderr; ``--verbose`` adds the traceback.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import traceback
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

import click
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from memcompress.repositories.errors import StoreUnavailable
from memcompress.settings import ConfigError, Settings, load_settings, redact_uri

EXIT_FAILED = 1
EXIT_CONFIG = 2
CLI_REDIS_RETRIES = 2  # a wrong Redis URL fails in seconds (workers retry for about a minute)


@dataclass
class CliState:
    verbose: bool
    log_format: str

    def settings(self) -> Settings:
        """Read inside a command's coroutine, so a bad setting becomes exit code 2 via ``run``."""
        return load_settings()


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(log_format: str, level: int) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter()
        if log_format == "json"
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


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
        fail(f"cannot reach Redis: {redact_uri(str(error))}", EXIT_CONFIG)
    except BrokenPipeError:  # `memcompress status | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(EXIT_FAILED)
    except Exception as error:
        if state.verbose:
            traceback.print_exc()
        fail(f"{type(error).__name__}: {error}", EXIT_FAILED)
    sys.exit(code)


def echo_report(report: Mapping[str, object], as_json: bool) -> None:
    """A command's data: one JSON object, or ``name: value`` lines (nested mappings indented)."""
    if as_json:
        click.echo(json.dumps(report, ensure_ascii=False, default=str))
        return
    for name, value in report.items():
        if isinstance(value, Mapping):
            click.echo(f"{name}:")
            for key, item in value.items():
                click.echo(f"  {key}: {item}")
        else:
            click.echo(f"{name}: {value}")
