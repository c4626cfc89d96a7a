"""The fault run's per-layout stores (:mod:`tests.faults.stores`) without a server: what each writes,
where it looks for a pending trim, and whether malformed documents go in."""

from __future__ import annotations

from datetime import UTC, datetime

from bson import ObjectId

from memcompress.layouts import LAYOUTS, StoreLayout
from memcompress.models import MemoryEvent, Role
from memcompress.repositories.conversations import STATE
from memcompress.repositories.documents import event_to_document
from tests.faults.stores import PerConversation, PerMessage, fault_store

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _event(unit: str, content: str) -> MemoryEvent:
    return MemoryEvent(user_id=unit, role=Role.USER, content=content, created_at=T0)


def test_only_user_memory_under_its_own_names_gets_malformed_documents() -> None:
    planted = {name: fault_store(StoreLayout.default(name)).plants_malformed for name in LAYOUTS}
    assert planted == {"user_memory": True, "messages": False, "conversations": False}
    assert not fault_store(StoreLayout.default("user_memory", collection="history")).plants_malformed


def test_per_message_layouts_write_one_document_per_event_as_the_app_does() -> None:
    events = [_event("user-000-x", "first"), _event("user-000-x", "second")]
    own = fault_store(StoreLayout())
    assert isinstance(own, PerMessage)
    docs = own.seeded("user-000-x", events)
    assert [doc.pop("_id") for doc in docs] != [None, None]
    assert docs == [event_to_document(event) for event in events]
    assert own.pending_trims == ("user_profiles", "user_id", "pending_trim")

    messages = fault_store(StoreLayout.default("messages"))
    [doc] = messages.seeded("lead-1", [_event("lead-1", "hello")])
    assert (doc["lead_id"], doc["content"], doc["timestamp"]) == ("lead-1", "hello", T0)
    assert isinstance(doc["_id"], ObjectId)
    assert messages.unit_ids(2, "tag") == ["user-000-tag", "user-001-tag"]


def test_a_conversation_is_seeded_as_one_document_with_its_messages() -> None:
    store = fault_store(StoreLayout.default("conversations"))
    assert isinstance(store, PerConversation)
    [unit] = store.unit_ids(1, "unused")
    [doc] = store.seeded(unit, [_event(unit, "hello")])
    assert doc["_id"] == ObjectId(unit)
    assert doc["messages"] == [{"role": "user", "content": "hello", "timestamp": T0}]
    assert store.pending_trims == ("conversations", "_id", f"{STATE}.pending_trim")
