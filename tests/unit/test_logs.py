"""Log lines: ISO timestamps, the caller's extra fields, and the job every line of a job names."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
from datetime import datetime

import pytest

from memcompress.keys import shown_user_id
from memcompress.logs import JobFields, JsonFormatter, TextFormatter, bind_job, set_job


def _record(message: str = "folded %d events", *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("memcompress.jobs", logging.INFO, __file__, 1, message, args or (3,), None)
    record.__dict__.update(extra)
    JobFields().filter(record)
    return record


def test_json_lines_have_an_iso_utc_time_level_logger_message_and_extra_fields() -> None:
    entry = json.loads(JsonFormatter().format(_record(chunks=2, store="http://u:pw@h/")))
    assert datetime.fromisoformat(entry["time"]).utcoffset() is not None
    assert entry["level"] == "INFO" and entry["logger"] == "memcompress.jobs"
    assert entry["message"] == "folded 3 events" and entry["chunks"] == 2
    assert entry["store"] == "http://u:***@h/"  # extra strings are redacted too
    assert "user_id" not in entry and "job_id" not in entry  # outside a job


@pytest.mark.parametrize("formatter", [TextFormatter(), JsonFormatter()])
def test_a_bound_job_names_its_user_and_job_id_on_every_line(formatter: logging.Formatter) -> None:
    with bind_job(user_id="u-1", job_id="compress:u-1"):
        line = formatter.format(_record())
    assert "u-1" in line and "compress:u-1" in line
    if isinstance(formatter, JsonFormatter):
        entry = json.loads(line)
        assert (entry["user_id"], entry["job_id"]) == ("u-1", "compress:u-1")
    else:
        assert line.endswith("folded 3 events user_id=u-1 job_id=compress:u-1")
    assert "u-1" not in formatter.format(_record())  # unbound again after the block


def test_extra_fields_are_fields_in_both_formats_and_json_names_the_process() -> None:
    with bind_job(user_id="u-1", job_id="compress:u-1"):
        record = _record("compression job ended: %s", "compressed", outcome="compressed", duration_s=1.5)
    text = TextFormatter().format(record)
    assert text.endswith(  # the job's fields stay last, as on every line of a job
        "compression job ended: compressed outcome=compressed duration_s=1.5 user_id=u-1 job_id=compress:u-1"
    )
    entry = json.loads(JsonFormatter().format(record))
    assert (entry["outcome"], entry["duration_s"]) == ("compressed", 1.5)
    assert entry["pid"] == os.getpid() and entry["host"] == socket.gethostname()


def test_an_invalid_user_id_is_shown_by_its_hash_in_every_field() -> None:
    long_id = "my card number is 4111 " * 14  # 308 characters: no job can take it
    with bind_job(user_id=long_id, job_id=f"compress:{long_id}"):
        entry = json.loads(JsonFormatter().format(_record()))
    shown = shown_user_id(long_id)
    assert (entry["user_id"], entry["job_id"]) == (shown, f"compress:{shown}")
    assert "4111" not in json.dumps(entry)


def test_a_job_set_in_a_task_reaches_the_tasks_it_starts_and_no_other() -> None:
    async def logged() -> logging.LogRecord:
        return _record()

    async def job(user_id: str) -> list[str]:
        set_job(user_id=user_id, job_id=f"compress:{user_id}")  # as arq's on_job_start does
        inner = await asyncio.create_task(logged())  # as arq runs the job's function
        return [getattr(inner, "user_id", ""), getattr(_record(), "job_id", "")]

    async def both() -> list[list[str]]:
        return list(await asyncio.gather(job("a"), job("b")))

    assert asyncio.run(both()) == [["a", "compress:a"], ["b", "compress:b"]]
    assert not hasattr(_record(), "user_id")
