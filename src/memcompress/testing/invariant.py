"""The product's invariant, checked from the outside: every appended event is still stored (or
archived) or was inside an LLM request whose answer is part of the stored summary chain."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from memcompress.layouts import StoreLayout
from memcompress.models import MemoryEvent
from memcompress.repositories.conversations import conversation_key
from memcompress.repositories.database import USER_PROFILES, MongoDatabase
from memcompress.testing.llm_server import FakeLLM


@dataclass
class InvariantReport:
    checked: int = 0
    stored: int = 0
    summarised: int = 0
    lost: list[str] = field(default_factory=list)
    summarised_twice: list[str] = field(default_factory=list)


async def check_invariant(
    database: MongoDatabase,
    llm: FakeLLM,
    appended: Iterable[MemoryEvent],
    layout: StoreLayout | None = None,
) -> InvariantReport:
    """``appended``: every event written, under the default names (``user_id`` is the lead in the
    ``messages`` layout, the conversation id in ``conversations``). In the other layouts, whose
    messages have no ids of their own, an event is found by its content: give each a distinct one."""
    layout = layout or StoreLayout()
    report = InvariantReport()
    by_user: dict[str, list[MemoryEvent]] = {}
    for event in appended:
        by_user.setdefault(event.user_id, []).append(event)
    for user_id, events in by_user.items():
        stored, summary = await _stored_and_summary(database, layout, user_id)
        chain = llm.chain(summary)
        in_chain = Counter(text for exchange in chain for text in exchange.texts)
        for event in events:
            report.checked += 1
            if in_chain[event.content] > 1:
                report.summarised_twice.append(event.content)
            key = str(event.event_id) if layout == StoreLayout() else event.content
            if key in stored:
                report.stored += 1
            elif in_chain[event.content]:
                report.summarised += 1
            else:
                report.lost.append(event.content)
    return report


async def _stored_and_summary(
    database: MongoDatabase, layout: StoreLayout, user_id: str
) -> tuple[set[Any], str | None]:
    """What is still stored or archived of the user (event ids; contents in the other layouts), and the
    summary stored for it."""
    stored: set[Any] = set()
    if layout.per_conversation:
        doc = await database.collection(layout.collection).find_one({"_id": conversation_key(user_id)})
        stored.update(m.get("content") for m in (doc or {}).get(layout.messages_field) or [])
        async for copy in database.collection(layout.archive).find({"conversation_id": user_id}):
            stored.add((copy.get("message") or {}).get("content"))
        return stored, (doc or {}).get("memory_summary")
    field = "event_id" if layout == StoreLayout() else "content"
    for collection in (layout.collection, layout.archive):
        async for doc in database.collection(collection).find({layout.owner: user_id}, {field: 1}):
            stored.add(doc.get(field))
    profile = await database.collection(USER_PROFILES).find_one({"user_id": user_id})
    return stored, profile.get("memory_summary") if profile else None
