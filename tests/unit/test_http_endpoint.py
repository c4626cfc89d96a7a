"""The worker's HTTP endpoint: liveness is the event loop answering (a Redis outage is not a reason to
restart), readiness also needs Redis; the metrics are served as exported (no ``_created`` series)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from prometheus_client import CollectorRegistry
from redis.exceptions import ConnectionError as RedisConnectionError

from memcompress.embedded import free_port
from memcompress.metrics import Metrics, exported_without_created
from memcompress.probe import main, probe
from memcompress.worker import http_endpoint


class Redis:
    up = True

    async def ping(self) -> int:
        if not self.up:
            raise RedisConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
        return 0


@pytest.fixture
async def endpoint() -> AsyncIterator[tuple[int, Redis, Metrics]]:
    metrics, redis, port = Metrics(CollectorRegistry()), Redis(), free_port()
    server, thread = http_endpoint.serve(port, metrics.registry, asyncio.get_running_loop(), redis.ping)
    try:
        yield port, redis, metrics
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


async def test_liveness_survives_a_redis_outage_and_readiness_does_not(
    endpoint: tuple[int, Redis, Metrics], monkeypatch: pytest.MonkeyPatch
) -> None:
    port, redis, _ = endpoint  # asked as the image's health check asks (python -m memcompress.probe)
    assert await asyncio.to_thread(probe, "/healthz", port) == (True, "ok")
    assert await asyncio.to_thread(probe, "/readyz", port) == (True, "ok")
    redis.up = False
    assert await asyncio.to_thread(probe, "/healthz", port) == (True, "ok")
    ready, answer = await asyncio.to_thread(probe, "/readyz", port)
    assert not ready and answer.startswith("Redis: ConnectionError: Error 111")
    monkeypatch.setenv("MEMCOMPRESS_METRICS_PORT", str(port))
    assert await asyncio.to_thread(main, ["/readyz"]) == 1  # the exit code of a failed health check
    assert await asyncio.to_thread(main, []) == 0  # /healthz
    nowhere = free_port()
    assert probe("/healthz", nowhere) == (False, f"no answer on port {nowhere}: ConnectionRefusedError")


def test_an_event_loop_that_runs_nothing_fails_liveness(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http_endpoint, "PROBE_TIMEOUT_S", 0.2)
    stuck = asyncio.new_event_loop()  # never run: as a loop blocked by a call that never returns
    app = http_endpoint.probes_app(CollectorRegistry(), stuck, Redis().ping)
    answered: list[str] = []
    try:
        body = b"".join(app({"PATH_INFO": "/healthz"}, lambda status, headers: answered.append(status)))
    finally:
        stuck.run_until_complete(asyncio.sleep(0.05))  # it runs again: the late check is cancelled
        stuck.close()
    assert answered == ["503 Service Unavailable"]
    assert body.decode() == "the worker's event loop: no answer within 0.2s\n"


async def test_metrics_are_served_without_created_series(endpoint: tuple[int, Redis, Metrics]) -> None:
    port, _, metrics = endpoint
    metrics.events_folded.inc(3)
    exported_without_created()
    ok, body = await asyncio.to_thread(probe, "/metrics", port)
    assert ok and "memcompress_events_folded_total 3.0" in body
    assert 'memcompress_build_info{version="' in body
    assert "_created" not in body and "user_memory_events_total" not in body
