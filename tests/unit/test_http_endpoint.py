"""The worker's HTTP endpoint: liveness is the event loop answering (a Redis outage is not a reason to
restart), readiness also needs Redis; the metrics are served as exported (no ``_created`` series)."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from collections.abc import AsyncIterator

import pytest
from prometheus_client import CollectorRegistry
from redis.exceptions import ConnectionError as RedisConnectionError

from memcompress.embedded import free_port
from memcompress.metrics import Metrics, exported_without_created
from memcompress.worker import http_endpoint


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


class Redis:
    up = True

    async def ping(self) -> int:
        if not self.up:
            raise RedisConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
        return 0


@pytest.fixture
async def endpoint() -> AsyncIterator[tuple[str, Redis, Metrics]]:
    metrics, redis, port = Metrics(CollectorRegistry()), Redis(), free_port()
    server, thread = http_endpoint.serve(port, metrics.registry, asyncio.get_running_loop(), redis.ping)
    try:
        yield f"http://127.0.0.1:{port}", redis, metrics
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


async def test_liveness_survives_a_redis_outage_and_readiness_does_not(
    endpoint: tuple[str, Redis, Metrics],
) -> None:
    base, redis, _ = endpoint
    assert await asyncio.to_thread(_get, base + "/healthz") == (200, "ok\n")
    assert await asyncio.to_thread(_get, base + "/readyz") == (200, "ok\n")
    redis.up = False
    assert await asyncio.to_thread(_get, base + "/healthz") == (200, "ok\n")
    status, body = await asyncio.to_thread(_get, base + "/readyz")
    assert status == 503 and body.startswith("Redis: ConnectionError: Error 111")


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


async def test_metrics_are_served_without_created_series(endpoint: tuple[str, Redis, Metrics]) -> None:
    base, _, metrics = endpoint
    metrics.events_folded.inc(3)
    exported_without_created()
    status, body = await asyncio.to_thread(_get, base + "/metrics")
    assert status == 200 and "memcompress_events_folded_total 3.0" in body
    assert 'memcompress_build_info{version="' in body
    assert "_created" not in body and "user_memory_events_total" not in body
