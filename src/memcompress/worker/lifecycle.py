"""The worker process's start-up and shut-down: services in ``ctx``, what the store's indexes put at
risk (logged as errors at start), the ``/metrics`` endpoint, a sampler that keeps the queue-depth and
dead-letter gauges current, and the drainer that turns the apps' compression requests into jobs
(:mod:`memcompress.jobs.drainer`). ``ctx[STORE_COMMAND_OBSERVER]``, when the worker put one there, is
told when every MongoDB command starts and ends (the adaptive job limit's samples,
:mod:`memcompress.worker.runner`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from memcompress.bootstrap import open_services
from memcompress.jobs import Services
from memcompress.jobs.drainer import drain_due_requests, run_request_drainer
from memcompress.metrics import add_process_collectors, exported_without_created
from memcompress.redaction import describe_error
from memcompress.settings import Settings
from memcompress.timing import GAUGES_EVERY_S, STORE_START_WAIT_S
from memcompress.worker.http_endpoint import serve

log = logging.getLogger(__name__)

STORE_COMMAND_OBSERVER = "store_command_observer"  # ctx key: a repositories.command_timing.CommandObserver
Hook = Callable[[dict[str, Any]], Awaitable[None]]


def lifecycle_hooks(settings: Settings) -> tuple[Hook, Hook]:
    """``(on_startup, on_shutdown)`` for arq, closed over the settings."""

    async def on_startup(ctx: dict[str, Any]) -> None:
        stack = contextlib.AsyncExitStack()
        ctx["exit_stack"] = stack
        services = await stack.enter_async_context(
            open_services(
                settings, on_store_command=ctx.get(STORE_COMMAND_OBSERVER), store_wait_s=STORE_START_WAIT_S
            )
        )
        ctx["services"] = services
        for risk in await services.maintenance.index_risks():  # the worker runs, but not safely
            log.error("AT RISK: %s", risk)
        if settings.metrics_port:
            exported_without_created()
            registry = services.metrics.registry
            add_process_collectors(registry)
            server, thread = serve(
                settings.metrics_port, registry, asyncio.get_running_loop(), services.queue_admin.depth
            )
            stack.callback(thread.join, 5)
            stack.callback(server.server_close)
            stack.callback(server.shutdown)
            log.info("serving /metrics, /healthz and /readyz on port %d", settings.metrics_port)
        sampler = asyncio.create_task(_sample_gauges(services))
        stack.push_async_callback(_cancel, sampler)
        # Once before arq's first poll, so that a --burst worker also runs what was due at its start.
        await drain_due_requests(services)
        drainer = asyncio.create_task(run_request_drainer(services))
        stack.push_async_callback(_cancel, drainer)
        log.info("worker ready", extra=settings.describe())  # each setting a field (URLs redacted)

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        stack: contextlib.AsyncExitStack | None = ctx.pop("exit_stack", None)
        if stack is not None:
            await stack.aclose()

    return on_startup, on_shutdown


async def _sample_gauges(services: Services) -> None:
    metrics = services.metrics
    while True:
        try:
            metrics.queue_depth.set(await services.queue_admin.depth())
            metrics.dead_letters_stored.set(await services.dead_letters.count())
        except Exception as error:  # a store briefly unreachable: the next sample will tell
            log.debug("could not sample the queue gauges: %s", describe_error(error))
        await asyncio.sleep(GAUGES_EVERY_S)


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
