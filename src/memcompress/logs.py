"""Log output: the text and JSON formats, the drivers kept quiet, and the job a line belongs to.

Every line a job logs names its ``user_id`` and ``job_id`` (text: appended as ``key=value``; JSON: fields
of their own): :func:`bind_job` sets them in a context variable, which the tasks a job starts inherit,
and :class:`JobFields` copies them onto each record. A user id no job can take is bound as
:func:`memcompress.keys.shown_user_id` shows it (type, length, hash), in both fields.

Nothing written carries event content, summary text or a credential: tracebacks are rendered by
:func:`memcompress.redaction.format_exception` (a store error's text embeds documents), every string
of a line has its URLs redacted, and the loggers of the drivers (which print request URLs, commands
with their documents and request bodies) stay at WARNING unless ``debug_drivers`` asks for them.
"""

from __future__ import annotations

import logging
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from pythonjsonlogger.json import JsonFormatter as LibraryJsonFormatter

from memcompress.keys import shown_user_id, valid_user_id
from memcompress.redaction import format_exception, redact_urls

# Loggers of the libraries we drive: they print request URLs (httpx), commands with their documents
# (pymongo) and request bodies (openai) at INFO and DEBUG. Kept at WARNING unless asked for.
DRIVER_LOGGERS = ("pymongo", "httpx", "httpcore", "httpx2", "httpcore2", "openai", "urllib3", "hpack")
JOB_FIELDS = ("user_id", "job_id")
# The attributes every LogRecord has: anything else on a record is a field a call passed in ``extra``.
RECORD_ATTRIBUTES = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}

_job: ContextVar[tuple[tuple[str, str], ...]] = ContextVar("memcompress_job", default=())


def _with(**fields: str | None) -> tuple[tuple[str, str], ...]:
    given = {name: value for name, value in fields.items() if name in JOB_FIELDS and value}
    user_id = given.get("user_id")
    if user_id is not None and not valid_user_id(user_id):
        # An id no job can take may be anything (a message in the wrong field): its hash, in every field.
        given = {name: value.replace(user_id, shown_user_id(user_id)) for name, value in given.items()}
    return tuple((dict(_job.get()) | given).items())


@contextmanager
def bind_job(**fields: str | None) -> Iterator[None]:
    """Within the block (and in the tasks it starts), log lines carry these of :data:`JOB_FIELDS`."""
    token = _job.set(_with(**fields))
    try:
        yield
    finally:
        _job.reset(token)


def set_job(**fields: str | None) -> None:
    """:func:`bind_job` for the rest of the current task: for a hook that cannot wrap the job (arq's
    ``on_job_start`` runs in the task that then runs and logs the job)."""
    _job.set(_with(**fields))


class JobFields(logging.Filter):
    """Copies the bound job's fields onto each record (a field the call passed in ``extra`` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in _job.get():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message [field=value ...] [user_id=.. job_id=..]``: the fields the call passed
    in ``extra`` (the same ones JSON lines carry), then the job's, last on every line of a job;
    tracebacks as ``format_exception`` renders them, URLs redacted."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatException(self, ei: Any) -> str:
        return format_exception(ei[1]) if ei[1] is not None else ""

    def format(self, record: logging.LogRecord) -> str:
        record.exc_text = None  # never a traceback another formatter rendered and cached
        line = super().format(record)
        fields = [
            (name, value)
            for name, value in record.__dict__.items()
            if name not in RECORD_ATTRIBUTES and name not in JOB_FIELDS and value is not None
        ]
        fields += [(name, getattr(record, name)) for name in JOB_FIELDS if hasattr(record, name)]
        shown = " ".join(f"{name}={value}" for name, value in fields)
        return redact_urls(f"{line} {shown}" if shown else line)


class JsonFormatter(LibraryJsonFormatter):
    """One JSON object per line (python-json-logger): ``time`` (ISO 8601, UTC), ``level``, ``logger``,
    ``message``, ``pid`` and ``host`` (which worker process wrote it), the fields a call passed in
    ``extra`` and the job's; ``exc_info`` rendered by ``format_exception``; URLs redacted in every
    string."""

    def __init__(self) -> None:
        super().__init__(
            "{levelname}{name}{message}{process}",
            style="{",
            rename_fields={"levelname": "level", "name": "logger", "exc_info": "exception", "process": "pid"},
            static_fields={"host": socket.gethostname()},
            timestamp="time",
            json_ensure_ascii=False,
        )

    def formatException(self, ei: Any) -> str:
        return format_exception(ei[1]) if ei[1] is not None else ""

    def format(self, record: logging.LogRecord) -> str:
        record.exc_text = None  # never a traceback another formatter rendered and cached
        return super().format(record)

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        return {
            key: redact_urls(value) if isinstance(value, str) else value for key, value in log_data.items()
        }


class QuietDrivers(logging.Filter):
    """Drops the drivers' records below WARNING, whatever level a library set on its own logger (the
    openai client sets its own from ``OPENAI_LOG``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or not _is_driver(record.name)


def _is_driver(name: str) -> bool:
    return any(name == driver or name.startswith(driver + ".") for driver in DRIVER_LOGGERS)


def setup_logging(log_format: str, level: int, *, debug_drivers: bool = False) -> None:
    """One handler on stderr for the whole process, in ``log_format`` ("text" or "json")."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(JobFields())
    if not debug_drivers:
        handler.addFilter(QuietDrivers())
    for name in DRIVER_LOGGERS:  # also spares the drivers building messages nobody will see
        logging.getLogger(name).setLevel(logging.NOTSET if debug_drivers else max(level, logging.WARNING))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
