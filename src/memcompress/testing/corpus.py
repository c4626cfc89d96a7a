"""The demo's synthetic corpus (``memcompress demo``): about 200 users in a few languages, most with short
histories and a long tail of heavy ones, each with one planted fact to look for in its summary."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from memcompress.models import MemoryEvent, Role

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


def corpus(rng: random.Random, users: int = USERS) -> tuple[list[MemoryEvent], dict[str, str]]:
    """The users' events, and each user's planted fact."""
    events: list[MemoryEvent] = []
    planted: dict[str, str] = {}
    for u in range(users):
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
