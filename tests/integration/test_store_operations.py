"""What one compression costs the store, counted on the real server: every command the client sends
(a pymongo ``CommandListener``; one command is one round trip). The list and why each command is
needed: docs/benchmarks.md, "Store operations per compressed user"."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import AsyncIterator

import pytest
from pymongo import monitoring
from redis.asyncio import Redis

from memcompress.bootstrap import build_services
from memcompress.jobs import run_compression
from memcompress.metrics import Metrics
from memcompress.models import Outcome
from memcompress.repositories.database import USER_PROFILES, MongoDatabase
from memcompress.repositories.indexes import ensure_indexes
from memcompress.settings import load_settings
from memcompress.summarizers.extractive import ExtractiveSummarizer
from memcompress.testing.app_documents import app_profile, app_save
from memcompress.testing.factories import make_events
from tests.integration.conftest import append

pytestmark = pytest.mark.redis


class Commands(monitoring.CommandListener):
    """The commands a client sends, as ``(command name, collection)``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.sent: list[tuple[str, str]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        with self._lock:
            self.sent.append((event.command_name, str(event.command.get(event.command_name))))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None: ...

    def failed(self, event: monitoring.CommandFailedEvent) -> None: ...


@pytest.fixture
async def counted(mongo_uri: str, db_name: str) -> AsyncIterator[tuple[MongoDatabase, Commands]]:
    commands = Commands()
    database = MongoDatabase(mongo_uri, db_name, event_listeners=[commands])
    await database.connect()
    try:
        await ensure_indexes(database)
        yield database, commands
    finally:
        await database.db.client.drop_database(db_name)
        await database.close()


@pytest.mark.parametrize("profile", ["the app's", "none yet"])
async def test_the_store_commands_of_a_single_chunk_compression(
    counted: tuple[MongoDatabase, Commands], redis: Redis, profile: str
) -> None:
    """Retention ``delete`` (the default with an LLM). A user with a profile (the app's, or one from an
    earlier compression): 6 commands. A user without one: the summary write creates it, and the
    erase fence looks once more for a tombstone (7)."""
    database, commands = counted
    settings = load_settings(summarizer="openai", retention="delete", threshold=50, keep_last=20)
    services = build_services(settings, database, redis, Metrics(), ExtractiveSummarizer())
    user = f"cost-{database.db.name}"
    await append(database, make_events(user, 60))
    if profile == "the app's":
        await app_save(database, app_profile(user))
    commands.sent.clear()

    record = await run_compression(services, user)

    assert (record.outcome, record.chunks, record.events_folded) == (Outcome.COMPRESSED, 1, 40)
    sent = Counter(commands.sent)
    expected = {
        ("aggregate", USER_PROFILES): 1,  # the profile, the overrides, the runs of the last 24 hours
        ("find", "user_memory"): 1,  # the whole (short) history, with its sizes
        ("update", USER_PROFILES): 1,  # the fenced summary write
        ("delete", "user_memory"): 1,  # the trim
        ("insert", "compaction_log"): 1,  # the run's record
        ("find", "erased_users"): 1 if profile == "the app's" else 2,  # the erase fence's looks
    }
    assert sent == expected
    assert len(commands.sent) == (6 if profile == "the app's" else 7)
