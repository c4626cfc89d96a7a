"""What may leave the process in a log line, a stored record or ``status`` output: never event content,
summary text, an API key or a credential.

What it guarantees, and how:

1. URLs and connection strings (:func:`redact_url`): a password in the userinfo becomes ``***`` (a
   userinfo without a password is taken for a token and goes whole), and so does the value of every
   query parameter whose name says it carries a secret (``password``, ``secret``, ``token``, ``key``,
   ``signature``, ``credential``, ``authMechanismProperties``, ...). :func:`redact_urls` does it to
   every URL inside a text: the log formatters' last line of defence.
2. Errors (:func:`describe_error`) are what records, dead letters, ``status`` and log lines say about
   an exception. A store error (PyMongo, BSON) is its class and codes only: its text embeds the failed
   command and its documents, which hold what users wrote. A message is kept only from exceptions whose
   text is known to carry no data: memcompress's own (written so), the operating system's (network
   errors), the Redis client's and the store's connection errors (hosts and timeouts); URLs in it are
   redacted. Any other exception is named by its class alone.
3. Tracebacks (:func:`format_exception`): the frames as Python prints them (file, line, code; never
   values) and each exception of the chain as :func:`describe_error` describes it.

Standard library only: every layer may use it, and it names no driver (driver errors are recognised by
the module they come from).
"""

from __future__ import annotations

import re
import traceback
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

MASK = "***"
# Query parameters whose value is a secret, by a part of their name (case-insensitive).
SECRET_PARAMETER = re.compile(
    r"pass|pwd|secret|token|key|signature|^sig$|credential|session|cookie|^auth$|authorization"
    r"|authmechanismproperties",
    re.IGNORECASE,
)
URL_IN_TEXT = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")
# Exceptions from these top-level packages: class and codes only (their text embeds documents).
STORE_PACKAGES = frozenset({"pymongo", "bson", "gridfs"})
# Store errors whose text is about the connection (hosts, timeouts), never about documents.
STORE_CONNECTION_ERRORS = frozenset({"ConnectionFailure", "ConfigurationError"})
# Exceptions from these packages keep their message (URLs redacted).
MESSAGE_PACKAGES = frozenset({"memcompress", "redis"})


def redact_url(url: str) -> str:
    """``url`` safe to show: userinfo password (or a bare token) and secret query values as ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    netloc = parts.netloc
    userinfo, at, hostinfo = netloc.rpartition("@")
    if at:
        user, colon, _ = userinfo.partition(":")
        netloc = f"{user}:{MASK}@{hostinfo}" if colon else f"{MASK}@{hostinfo}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(SECRET_PARAMETER.search(name) for name, _ in pairs):
            query = urlencode(
                [(name, MASK if SECRET_PARAMETER.search(name) else value) for name, value in pairs],
                safe="*:,/",
            )
    if netloc == parts.netloc and query == parts.query:
        return url
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def redact_urls(text: str) -> str:
    """``text`` with every URL in it redacted (see :func:`redact_url`)."""
    return URL_IN_TEXT.sub(lambda found: redact_url(found.group(0)), text)


def split_userinfo(url: str) -> tuple[str, str | None, str | None]:
    """``(url without its userinfo, user, password)``: for clients that take credentials apart from the
    URL (the Pushgateway's basic auth)."""
    parts = urlsplit(url)
    userinfo, at, hostinfo = parts.netloc.rpartition("@")
    if not at:
        return url, None, None
    user, colon, password = userinfo.partition(":")
    bare = urlunsplit(parts._replace(netloc=hostinfo))
    return bare, unquote(user), unquote(password) if colon else None


def describe_error(error: BaseException) -> str:
    """One line about ``error`` that is safe to store and log (see the module docs)."""
    cls = type(error)
    name = cls.__name__
    package = (cls.__module__ or "").split(".")[0]
    if package in STORE_PACKAGES:
        if not any(base.__name__ in STORE_CONNECTION_ERRORS for base in cls.__mro__):
            return _store_error(error, name)
    elif not (package in MESSAGE_PACKAGES or isinstance(error, OSError)):
        return name
    message = " ".join(str(error).split())
    return f"{name}: {redact_urls(message)}" if message else name


def _store_error(error: BaseException, name: str) -> str:
    """Class and codes: the error's own code, and those of each failed write of a bulk write."""
    code = getattr(error, "code", None)
    shown = f"{name} (code {code})" if isinstance(code, int) else name
    details = getattr(error, "details", None)
    if isinstance(details, dict):
        write_codes = sorted(
            {
                item["code"]
                for key in ("writeErrors", "writeConcernErrors")
                for item in details.get(key) or []
                if isinstance(item, dict) and isinstance(item.get("code"), int)
            }
        )
        if write_codes:
            shown += f"; write error codes {', '.join(map(str, write_codes))}"
    return shown


def format_exception(error: BaseException) -> str:
    """A traceback of ``error`` and its chain, like Python's, with each message as
    :func:`describe_error` gives it."""
    chain: list[tuple[BaseException, str | None]] = []
    seen: set[int] = set()
    current: BaseException | None = error
    link: str | None = None
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        chain.append((current, link))
        if current.__cause__ is not None:
            current, link = current.__cause__, "The above exception was the direct cause of the following"
        elif current.__context__ is not None and not current.__suppress_context__:
            current, link = current.__context__, "During handling of the above exception, another occurred"
        else:
            current = None
    lines: list[str] = []
    for index, (exc, _) in enumerate(reversed(chain)):
        if index:
            lines.append(f"\n{chain[len(chain) - index][1]}:\n\n")
        if exc.__traceback__ is not None:
            lines.append("Traceback (most recent call last):\n")
            lines.extend(traceback.format_tb(exc.__traceback__))
        lines.append(describe_error(exc) + "\n")
    return "".join(lines).rstrip("\n")
