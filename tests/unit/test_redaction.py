"""What may leave the process: URLs without credentials, errors without the documents they carry."""

from __future__ import annotations

import logging

import pytest
from bson.errors import InvalidDocument
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure, ServerSelectionTimeoutError
from redis.exceptions import ConnectionError as RedisConnectionError

from memcompress.logs import JsonFormatter, QuietDrivers, TextFormatter, setup_logging
from memcompress.redaction import describe_error, format_exception, redact_url, redact_urls, split_userinfo
from memcompress.summarizers.base import RetryableSummarizerError

CONTENT = "my passport number is 12345"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("mongodb://h1,h2/?replicaSet=rs", "mongodb://h1,h2/?replicaSet=rs"),
        ("redis://:pw@h:1/0", "redis://:***@h:1/0"),
        ("mongodb://app:pw@h1:1,h2:2/db?authSource=admin", "mongodb://app:***@h1:1,h2:2/db?authSource=admin"),
        ("https://sk-token@llm/v1", "https://***@llm/v1"),  # a userinfo without a password is a token
        ("redis://cache:6379/0?password=pw&db=1", "redis://cache:6379/0?password=***&db=1"),
        ("https://llm/v1?api-key=k&x=1", "https://llm/v1?api-key=***&x=1"),
        (
            "mongodb://h/?authMechanism=MONGODB-AWS&authMechanismProperties=AWS_SESSION_TOKEN:t",
            "mongodb://h/?authMechanism=MONGODB-AWS&authMechanismProperties=***",
        ),
        (
            "https://s3/x?X-Amz-Signature=abc&X-Amz-Credential=c",
            "https://s3/x?X-Amz-Signature=***&X-Amz-Credential=***",
        ),
        ("unix:///run/redis.sock", "unix:///run/redis.sock"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_every_url_in_a_text_is_redacted() -> None:
    text = 'HTTP Request: POST http://u:pw@127.0.0.1:9/v1/chat "HTTP/1.1 200 OK" then redis://:pw2@r:1/0.'
    assert redact_urls(text) == (
        'HTTP Request: POST http://u:***@127.0.0.1:9/v1/chat "HTTP/1.1 200 OK" then redis://:***@r:1/0.'
    )


def test_split_userinfo() -> None:
    assert split_userinfo("https://ops:p%40ss@gw:9091/x") == ("https://gw:9091/x", "ops", "p@ss")
    assert split_userinfo("http://gw:9091") == ("http://gw:9091", None, None)


def _bulk_write_error() -> BulkWriteError:
    op = {"q": {"_id": 1}, "u": {"_id": 1, "user_id": "u", "content": CONTENT}, "upsert": True}
    return BulkWriteError(
        {
            "writeErrors": [{"index": 0, "code": 11000, "errmsg": f"E11000 dup key {CONTENT}", "op": op}],
            "writeConcernErrors": [],
        }
    )


@pytest.mark.parametrize(
    ("error", "described"),
    [
        (_bulk_write_error(), "BulkWriteError (code 65); write error codes 11000"),
        (
            DuplicateKeyError(f"E11000 dup key: {CONTENT}", 11000, {"keyValue": {"x": CONTENT}}),
            "DuplicateKeyError (code 11000)",
        ),
        (OperationFailure(f"Document failed validation {CONTENT}", 121), "OperationFailure (code 121)"),
        (InvalidDocument(f"cannot encode object: {CONTENT}"), "InvalidDocument"),
        (
            ServerSelectionTimeoutError("db:27017: timed out"),
            "ServerSelectionTimeoutError: db:27017: timed out",
        ),
        (
            RetryableSummarizerError("LLM answered HTTP 500"),
            "RetryableSummarizerError: LLM answered HTTP 500",
        ),
        (
            RedisConnectionError("Error 111 connecting to r:6379."),
            "ConnectionError: Error 111 connecting to r:6379.",
        ),
        (
            ConnectionRefusedError(111, "Connection refused"),
            "ConnectionRefusedError: [Errno 111] Connection refused",
        ),
        (ValueError(f"bad value {CONTENT}"), "ValueError"),  # not known to be safe: the class alone
        (KeyError(CONTENT), "KeyError"),
    ],
)
def test_describe_error_keeps_no_document_text(error: BaseException, described: str) -> None:
    assert describe_error(error) == described
    assert CONTENT not in describe_error(error)


def _raise_chain() -> None:
    try:
        raise _bulk_write_error()
    except BulkWriteError as error:
        raise RuntimeError(f"wrapped: {CONTENT}") from error


def test_tracebacks_show_frames_and_safe_messages_only() -> None:
    with pytest.raises(RuntimeError) as caught:
        _raise_chain()
    text = format_exception(caught.value)
    assert "Traceback (most recent call last):" in text and "_raise_chain" in text
    assert "BulkWriteError (code 65); write error codes 11000" in text
    assert "direct cause" in text and text.endswith("RuntimeError")
    assert CONTENT not in text


@pytest.mark.parametrize("formatter", [TextFormatter(), JsonFormatter()])
def test_log_formatters_redact_urls_and_exception_text(formatter: logging.Formatter) -> None:
    try:
        raise _bulk_write_error()
    except BulkWriteError:
        import sys

        record = logging.LogRecord(
            "memcompress", logging.ERROR, __file__, 1, "calling %s", ("http://u:pw9@h/v1",), sys.exc_info()
        )
    record.exc_text = f"a cached traceback with {CONTENT}"  # as another formatter would have left it
    line = formatter.format(record)
    assert "pw9" not in line and CONTENT not in line
    assert "http://u:***@h/v1" in line and "BulkWriteError (code 65)" in line


def test_driver_loggers_stay_at_warning_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logging.getLogger(), "handlers", list(logging.getLogger().handlers))
    setup_logging("text", logging.DEBUG)
    assert logging.getLogger("pymongo.command").getEffectiveLevel() == logging.WARNING
    assert not logging.getLogger("httpx2").isEnabledFor(logging.INFO)
    assert logging.getLogger("memcompress.jobs").isEnabledFor(logging.DEBUG)
    quiet = QuietDrivers()
    assert not quiet.filter(logging.LogRecord("openai._base_client", logging.DEBUG, "", 0, "x", (), None))
    assert quiet.filter(logging.LogRecord("openai._base_client", logging.WARNING, "", 0, "x", (), None))
    assert quiet.filter(logging.LogRecord("openaiish", logging.DEBUG, "", 0, "x", (), None))
    setup_logging("text", logging.DEBUG, debug_drivers=True)
    assert logging.getLogger("pymongo.command").isEnabledFor(logging.DEBUG)
    setup_logging("text", logging.WARNING)
