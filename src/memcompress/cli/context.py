"""What every command shares: the state the group passes down, logging set-up, and the one place
errors become exit codes.

Exit codes: 0 done, 1 a compression (or another operation) failed, 2 bad configuration or a store
that cannot be reached. Errors are one line on stderr; ``--verbose`` adds the traceback.

Nothing written to stderr carries event content, summary text or a credential: errors are described
by :func:`memcompress.redaction.describe_error`, tracebacks rendered by
:func:`memcompress.redaction.format_exception`, every URL in a log line is redacted, and the loggers
of the drivers (which print request URLs, commands and their documents) stay at WARNING, also with
``--verbose``, unless ``--debug-drivers`` (``MEMCOMPRESS_LOG_DRIVERS=1``) asks for them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

import click
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from memcompress.models import MAX_USER_ID_CHARS, valid_user_id
from memcompress.redaction import describe_error, format_exception, redact_urls
from memcompress.repositories.errors import StoreUnavailable
from memcompress.settings import ConfigError, Settings, load_settings

EXIT_FAILED = 1
EXIT_CONFIG = 2
CLI_REDIS_RETRIES = 2  # a wrong Redis URL fails in seconds (workers retry for about a minute)
# Loggers of the libraries we drive: they print request URLs (httpx), commands with their documents
# (pymongo) and request bodies (openai) at INFO and DEBUG. Kept at WARNING unless asked for.
DRIVER_LOGGERS = ("pymongo", "httpx", "httpcore", "httpx2", "httpcore2", "openai", "urllib3", "hpack")


@dataclass
class CliState:
    verbose: bool
    log_format: str
    debug_drivers: bool = False

    def settings(self) -> Settings:
        """Read inside a command's coroutine, so a bad setting becomes exit code 2 via ``run``."""
        return load_settings()


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message``; tracebacks as ``format_exception`` renders them, URLs redacted."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatException(self, ei: Any) -> str:
        return format_exception(ei[1]) if ei[1] is not None else ""

    def format(self, record: logging.LogRecord) -> str:
        record.exc_text = None  # never a traceback another formatter rendered and cached
        return redact_urls(super().format(record))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": redact_urls(record.getMessage()),
        }
        if record.exc_info and record.exc_info[1] is not None:
            entry["exception"] = redact_urls(format_exception(record.exc_info[1]))
        return json.dumps(entry, ensure_ascii=False)


class QuietDrivers(logging.Filter):
    """Drops the drivers' records below WARNING, whatever level a library set on its own logger (the
    openai client sets its own from ``OPENAI_LOG``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or not _is_driver(record.name)


def _is_driver(name: str) -> bool:
    return any(name == driver or name.startswith(driver + ".") for driver in DRIVER_LOGGERS)


def setup_logging(log_format: str, level: int, *, debug_drivers: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    if not debug_drivers:
        handler.addFilter(QuietDrivers())
    for name in DRIVER_LOGGERS:  # also spares the drivers building messages nobody will see
        logging.getLogger(name).setLevel(logging.NOTSET if debug_drivers else max(level, logging.WARNING))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def valid_user_ids(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """A click callback for USER_ID arguments: a user id no job could take is a usage error (exit 2)."""
    for user_id in value if isinstance(value, tuple) else (value,):
        if not valid_user_id(user_id):
            raise click.BadParameter(f"a user id has 1 to {MAX_USER_ID_CHARS} characters")
    return value


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
