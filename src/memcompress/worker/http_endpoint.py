"""The worker's HTTP endpoint on ``MEMCOMPRESS_METRICS_PORT``: ``/metrics``, ``/healthz`` and ``/readyz``.

What each answers, and what it guarantees:

1. ``/healthz`` (liveness): 200 while the worker's event loop runs a callback within
   ``PROBE_TIMEOUT_S``, else 503. It asks nothing of Redis or MongoDB, so a store outage (which the
   worker rides out, retrying) never gets a healthy process restarted; a loop blocked or stuck does.
2. ``/readyz`` (readiness): 200 while the loop answers *and* Redis answers a command from it within
   ``PROBE_TIMEOUT_S``, else 503 with one line saying which did not.
3. ``/metrics`` (and any other path): the worker's registry, as prometheus_client serves it.

How: one thread of its own serves HTTP (a probe is answered even while the loop is busy or blocked,
and says so); the checks run on the worker's loop through ``run_coroutine_threadsafe``, bounded by the
timeout. Bodies are one line of text: no setting, URL or id.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

from memcompress.redaction import describe_error
from memcompress.timing import PROBE_TIMEOUT_S

LIVENESS_PATH = "/healthz"
READINESS_PATH = "/readyz"

StartResponse = Callable[[str, list[tuple[str, str]]], Any]
Check = Callable[[], Awaitable[object]]


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # a probe every few seconds: no access log
        pass


def _answers(loop: asyncio.AbstractEventLoop, check: Check) -> str | None:
    """None when ``check`` completes on ``loop`` within the timeout, else what went wrong."""

    async def bounded() -> object:
        return await asyncio.wait_for(check(), PROBE_TIMEOUT_S)

    answer = asyncio.run_coroutine_threadsafe(bounded(), loop)
    try:
        answer.result(PROBE_TIMEOUT_S + 1)
    except TimeoutError:
        answer.cancel()  # a loop that runs again drops this check instead of running it late
        return f"no answer within {PROBE_TIMEOUT_S:g}s"
    except Exception as error:
        return describe_error(error)
    return None


def probes_app(
    registry: CollectorRegistry, loop: asyncio.AbstractEventLoop, redis_ping: Check
) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    """The WSGI app: the probes at their paths, the metrics everywhere else."""
    metrics = make_wsgi_app(registry)

    async def loop_turn() -> None:
        await asyncio.sleep(0)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path not in (LIVENESS_PATH, READINESS_PATH):
            return metrics(environ, start_response)  # type: ignore[no-any-return]
        problem = _answers(loop, loop_turn)
        if problem is not None:
            problem = f"the worker's event loop: {problem}"
        elif path == READINESS_PATH and (redis := _answers(loop, redis_ping)) is not None:
            problem = f"Redis: {redis}"
        status = "200 OK" if problem is None else "503 Service Unavailable"
        start_response(status, [("Content-Type", "text/plain; charset=utf-8")])
        return [f"{problem or 'ok'}\n".encode()]

    return app


def serve(
    port: int, registry: CollectorRegistry, loop: asyncio.AbstractEventLoop, redis_ping: Check
) -> tuple[WSGIServer, threading.Thread]:
    """Serve on all interfaces (as prometheus_client's ``start_http_server``) from a daemon thread."""
    server = make_server(
        "0.0.0.0", port, probes_app(registry, loop, redis_ping), _Server, handler_class=_QuietHandler
    )
    thread = threading.Thread(target=server.serve_forever, name="memcompress-http", daemon=True)
    thread.start()
    return server, thread
