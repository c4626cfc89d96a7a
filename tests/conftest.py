"""Shared fixtures: real servers over real TCP, started once per session on free ports.

Set MEMCOMPRESS_TEST_MONGODB_URI / MEMCOMPRESS_TEST_REDIS_URL to use servers you run yourself.
Each test gets its own Mongo database (dropped afterwards) and its own Redis key namespace.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from memcompress.embedded import Server, mongo_server, valkey_server
from memcompress.metrics import Metrics
from memcompress.repositories.database import MongoDatabase
from memcompress.testing.llm_server import FakeLLM


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).parts
        if "integration" in parts:
            item.add_marker(pytest.mark.integration)
        if "tooling" in parts:
            item.add_marker(pytest.mark.tooling)


@pytest.fixture(scope="session")
def mongo_uri() -> Iterator[str]:
    preset = os.environ.get("MEMCOMPRESS_TEST_MONGODB_URI")
    if preset:
        yield preset
        return
    server = mongo_server().start()
    try:
        yield server.url
    finally:
        server.close()


@pytest.fixture(scope="session")
def embedded_redis() -> Iterator[Server | None]:
    if os.environ.get("MEMCOMPRESS_TEST_REDIS_URL"):
        yield None
        return
    server = valkey_server().start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def redis_url(embedded_redis: Server | None) -> str:
    return os.environ.get("MEMCOMPRESS_TEST_REDIS_URL") or (embedded_redis.url if embedded_redis else "")


@pytest.fixture
def db_name() -> str:
    return f"mc_test_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
async def database(mongo_uri: str, db_name: str) -> AsyncIterator[MongoDatabase]:
    db = MongoDatabase(mongo_uri, db_name, server_selection_timeout_ms=5000)
    await db.connect()
    try:
        yield db
    finally:
        await db.db.client.drop_database(db_name)
        await db.close()


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def llm() -> Iterator[FakeLLM]:
    """The local OpenAI-compatible server (:mod:`memcompress.testing.llm_server`), one per test."""
    server = FakeLLM().start()
    try:
        yield server
    finally:
        server.stop()
