"""The product's invariant, checked from the outside: every appended event is still stored (or
archived) or was inside an LLM request whose answer is part of the stored summary chain."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from memcompress.models import MemoryEvent
from memcompress.repositories import MongoDatabase
from memcompress.repositories.database import USER_MEMORY, USER_MEMORY_ARCHIVE, USER_PROFILES
from memcompress.testing.llm_server import FakeLLM


@dataclass
class InvariantReport:
    checked: int = 0
    stored: int = 0
    summarised: int = 0
    lost: list[str] = field(default_factory=list)
    summarised_twice: list[str] = field(default_factory=list)


async def check_invariant(
    database: MongoDatabase, llm: FakeLLM, appended: Iterable[MemoryEvent]
) -> InvariantReport:
    report = InvariantReport()
    by_user: dict[str, list[MemoryEvent]] = {}
    for event in appended:
        by_user.setdefault(event.user_id, []).append(event)
    for user_id, events in by_user.items():
        stored_ids = set()
        for collection in (USER_MEMORY, USER_MEMORY_ARCHIVE):
            async for doc in database.collection(collection).find({"user_id": user_id}, {"event_id": 1}):
                stored_ids.add(doc.get("event_id"))
        profile = await database.collection(USER_PROFILES).find_one({"user_id": user_id})
        chain = llm.chain(profile.get("memory_summary") if profile else None)
        in_chain = Counter(text for exchange in chain for text in exchange.texts)
        for event in events:
            report.checked += 1
            if in_chain[event.content] > 1:
                report.summarised_twice.append(event.content)
            if str(event.event_id) in stored_ids:
                report.stored += 1
            elif in_chain[event.content]:
                report.summarised += 1
            else:
                report.lost.append(event.content)
    return report
