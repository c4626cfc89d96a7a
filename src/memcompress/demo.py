"""``python -m memcompress.demo``: the compression on embedded servers, from nothing to a table.

Starts the embedded Mongo wire server and Valkey (unless MEMCOMPRESS_MONGODB_URI / MEMCOMPRESS_REDIS_URL
are set), seeds a synthetic corpus (about 200 users, a few languages, planted facts), scans for users
over the threshold, compresses each with the configured summariser (offline by default) and prints a
before/after table and the run's metrics.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

from memcompress.bootstrap import open_services
from memcompress.embedded import EmbeddedServer, mongo_server, valkey_server
from memcompress.jobs.compress import run_compression
from memcompress.models import MemoryEvent, Role
from memcompress.repositories import ensure_indexes
from memcompress.settings import ConfigError, load_settings

USERS = 200
T0 = datetime(2026, 9, 1, tzinfo=UTC)
NAMES = ["Anna", "Boris", "Chloe", "Dmitri", "Elena", "Farid", "Greta", "Hiro", "Ines", "Jonas"]
CITIES = ["Kazan", "Lisbon", "Berlin", "Osaka", "Tbilisi", "Lyon", "Porto", "Riga"]
PLANTED = {
    "en": "My daughter {name} turns {n} on {day} October, please remind me.",
    "ru": "Меня зовут {name}, я живу в городе {city} и не ем мясо.",
    "de": "Ich heiße {name} und mein Lieblingsgericht ist Spätzle, Allergie gegen Nüsse.",
}
CHATTER = {
    "en": [
        "Hi!",
        "Thanks a lot.",
        "What's the weather like in {city}?",
        "I prefer trains to planes.",
        "Book a table for {n} people on Friday.",
        "I like jazz, especially Coltrane.",
    ],
    "ru": [
        "Привет!",
        "Спасибо.",
        "Какая погода в городе {city}?",
        "Мне нравится чай с лимоном.",
        "Закажи столик на {n} человек в пятницу.",
        "Я люблю гулять по набережной.",
    ],
    "de": [
        "Hallo!",
        "Danke.",
        "Wie ist das Wetter in {city}?",
        "Ich mag Bahnfahren.",
        "Reserviere einen Tisch für {n} Personen am Freitag.",
        "Ich liebe Jazz.",
    ],
}
REPLIES = ["Of course.", "Done, sir.", "Noted.", "With pleasure.", "Certainly, I have taken care of it."]


def corpus(rng: random.Random) -> tuple[list[MemoryEvent], dict[str, str]]:
    events: list[MemoryEvent] = []
    planted: dict[str, str] = {}
    for u in range(USERS):
        user_id = f"demo-{u:03d}"
        language = ("en", "ru", "de")[u % 3]
        length = int(rng.lognormvariate(4.0, 0.8))  # most users short, a long tail of heavy ones
        fill = {
            "name": rng.choice(NAMES),
            "city": rng.choice(CITIES),
            "n": rng.randint(2, 12),
            "day": rng.randint(1, 28),
        }
        fact_at = rng.randrange(max(length, 1))
        for i in range(max(length, 1)):
            if i == fact_at:
                text = PLANTED[language].format(**fill)
                planted[user_id] = text
            elif i % 2:
                text = rng.choice(REPLIES)
            else:
                text = rng.choice(CHATTER[language]).format(**fill)
            role = Role.USER if i % 2 == 0 or i == fact_at else Role.ASSISTANT
            events.append(
                MemoryEvent(
                    user_id=user_id, role=role, content=text, created_at=T0 + timedelta(minutes=7 * i + u)
                )
            )
    return events, planted


async def run_demo() -> int:
    # Always a database of its own, dropped at the end: the demo never touches real data.
    settings = load_settings(mongodb_db=f"memcompress_demo_{uuid.uuid4().hex[:8]}")
    print(
        f"summariser: {settings.summarizer_name}; threshold {settings.threshold}, keep {settings.keep_last}"
    )
    events, planted = corpus(random.Random(7))
    async with open_services(settings) as (deps, database):
        await ensure_indexes(database, memory_ttl_days=settings.memory_ttl_days)
        for start in range(0, len(events), 5000):
            await deps.memory.append_events(events[start : start + 5000])
        before = Counter(e.user_id for e in events)
        print(f"seeded {len(events)} events for {len(before)} users")

        backlog = await deps.memory.users_over_threshold(settings.threshold)
        print(f"scan: {len(backlog)} users over the threshold; compressing each")
        started = time.monotonic()
        outcomes: Counter[str] = Counter()
        for done, user in enumerate(backlog, 1):
            record = await run_compression(deps, user.user_id)
            outcomes[record.outcome.value] += 1
            if sys.stderr.isatty():
                print(f"\r  {done}/{len(backlog)} users", end="", file=sys.stderr, flush=True)
        elapsed = time.monotonic() - started

        print(f"\n{'user':<10} {'before':>6} {'after':>5}  planted fact kept?  summary excerpt")
        kept = 0
        for user in backlog[:15]:
            profile = await deps.profiles.get(user.user_id)
            summary = profile.memory_summary or ""
            fact = planted[user.user_id]
            in_summary = fact in summary
            still_stored = any(
                e.content == fact for e in await deps.memory.get_recent_events(user.user_id, 100)
            )
            kept += in_summary or still_stored
            where = "in summary" if in_summary else ("still stored" if still_stored else "NO")
            excerpt = summary.splitlines()[0][:60] if summary else ""
            print(
                f"{user.user_id:<10} {before[user.user_id]:>6} {await deps.memory.count_events(user.user_id):>5}"
                f"  {where:<18}  {excerpt}"
            )
        registry = deps.metrics.registry
        folded = registry.get_sample_value("memcompress_events_folded_total") or 0
        print(
            f"\noutcomes: {dict(outcomes)}; events folded: {int(folded)}; "
            f"{len(backlog) / max(elapsed, 1e-9):.1f} users/s"
        )
        await database.db.client.drop_database(settings.mongodb_db)
        return 0 if outcomes.get("failed", 0) == 0 and kept == min(len(backlog), 15) else 1


def main() -> int:
    started: list[EmbeddedServer] = []
    try:
        if not os.environ.get("MEMCOMPRESS_MONGODB_URI"):
            started.append(server := mongo_server().start())
            os.environ["MEMCOMPRESS_MONGODB_URI"] = server.url
        if not os.environ.get("MEMCOMPRESS_REDIS_URL"):
            started.append(server := valkey_server().start())
            os.environ["MEMCOMPRESS_REDIS_URL"] = server.url
        return asyncio.run(run_demo())
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 2
    finally:
        for server in started:
            server.stop()


if __name__ == "__main__":
    sys.exit(main())
