"""Mapping between domain models and the stored BSON documents (the public schema in the README).

Reading never trusts a document: other tools write these collections. A document that fails
validation is reported as :class:`MalformedDocument`, which names the failing fields but never
echoes their values (content is private).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from memcompress.metrics import Metrics
from memcompress.models import MemoryEvent, StoredEvent, UserProfile
from memcompress.repositories.errors import MalformedDocument

log = logging.getLogger(__name__)

Document = dict[str, Any]
M = TypeVar("M", bound=BaseModel)


def _failing_fields(error: ValidationError) -> list[str]:
    return sorted({".".join(str(p) for p in item["loc"]) + f" ({item['type']})" for item in error.errors()})


def event_to_document(event: MemoryEvent) -> Document:
    doc: Document = {
        "event_id": event.event_id,
        "user_id": event.user_id,
        "role": event.role,
        "content": event.content,
        "created_at": event.created_at,
        "tags": list(event.tags),
    }
    if event.tool_calls:
        doc["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in event.tool_calls
        ]
    if event.tool_call_id is not None:
        doc["tool_call_id"] = event.tool_call_id
    return doc


# What makes a stored event foldable, said twice in one place (``EventRules``): as a query (the scan's
# and the fold's counts, run by the server) and in Python (the documents the fold reads). They must
# agree, or the scan would count events the fold skips and queue the user again and again.
#   - a date `created_at` (comparison operators match only values of the same BSON type, so this range
#     selects exactly the dated documents, and every server serves it from the index);
#   - a non-empty role string;
#   - content: a non-empty string, or a non-empty list of content parts (OpenAI-style
#     `{"type": "text", "text": ...}` parts, strings, or other parts shown by their type) with no empty
#     string or empty list among them; or, instead of content, a non-empty `tool_calls` list (an
#     assistant message that only calls tools);
#   - not pinned: pinned events (the pinned tag, or a pinned role) stay verbatim and are not counted.
DATED = {"$gte": datetime(1, 1, 1, tzinfo=UTC)}
REQUIRED_FIELDS = ("user_id", "role", "created_at")


@dataclass(frozen=True, slots=True)
class EventRules:
    """Which stored events the fold may use, and which stay verbatim (``MEMCOMPRESS_PINNED_TAG``,
    ``MEMCOMPRESS_PINNED_ROLES``)."""

    pinned_tag: str = "pinned"
    pinned_roles: tuple[str, ...] = ()

    def foldable_query(self) -> Document:
        role: Document = {"$type": "string", "$ne": ""}
        if self.pinned_roles:
            role["$nin"] = list(self.pinned_roles)
        return {
            "role": role,
            "tags": {"$ne": self.pinned_tag},
            "$or": [
                {"content": {"$type": ["string", "array"], "$nin": ["", []]}},
                {"tool_calls": {"$type": "array", "$ne": []}},
            ],
        }

    def pinned_query(self) -> Document:
        return {"$or": [{"tags": self.pinned_tag}, {"role": {"$in": list(self.pinned_roles)}}]}

    def foldable(self, doc: Document) -> bool:
        """The Python side of ``foldable_query`` (dates are checked by the model)."""
        role, content, calls = doc.get("role"), doc.get("content"), doc.get("tool_calls")
        if not isinstance(role, str) or role == "" or self.pinned(doc):
            return False
        if isinstance(calls, list) and calls != []:
            return True
        if isinstance(content, str):
            return content != ""
        return isinstance(content, list) and content != [] and "" not in content and [] not in content

    def pinned(self, doc: Document) -> bool:
        tags = doc.get("tags")
        tagged = tags == self.pinned_tag or (isinstance(tags, list) and self.pinned_tag in tags)
        return tagged or doc.get("role") in self.pinned_roles


def content_text(content: object) -> str:
    """Content as text: a string as it is; a content-part list with text parts as they are and other
    parts as ``[type]``; nothing (an assistant message that only calls tools) as ""."""
    if isinstance(content, str):
        return content
    parts = []
    for part in content if isinstance(content, list) else []:
        if isinstance(part, str):
            parts.append(part)
        elif isinstance(part, dict) and isinstance(part.get("text"), str):
            parts.append(part["text"])
        else:
            kind = part.get("type") if isinstance(part, dict) else None
            parts.append(f"[{kind if isinstance(kind, str) and kind else 'content part'}]")
    return "\n".join(parts)


def _tool_calls(doc: Document) -> list[dict[str, str]]:
    """OpenAI-shaped ``tool_calls`` as ``{id, name, arguments}`` (what the transcript shows)."""
    calls = doc.get("tool_calls")
    shown = []
    for item in calls if isinstance(calls, list) else []:
        call: dict[str, Any] = item if isinstance(item, dict) else {}
        function: dict[str, Any] = call["function"] if isinstance(call.get("function"), dict) else {}
        shown.append(
            {
                "id": str(call.get("id") or ""),
                "name": str(function.get("name") or call.get("name") or ""),
                "arguments": str(function.get("arguments") or call.get("arguments") or ""),
            }
        )
    return shown


def document_to_event(collection: str, doc: Document, rules: EventRules = EventRules()) -> StoredEvent:
    missing = [f"{name} (missing)" for name in REQUIRED_FIELDS if name not in doc]
    if missing:
        raise MalformedDocument(collection, doc.get("_id"), missing)
    if not rules.foldable(doc):
        raise MalformedDocument(collection, doc.get("_id"), ["role, content or tags (not foldable)"])
    calls = _tool_calls(doc)
    text = content_text(doc.get("content")) or " ".join(f"[calls {c['name'] or 'a tool'}]" for c in calls)
    try:
        event = MemoryEvent.model_validate({**doc, "content": text, "tool_calls": calls})
    except ValidationError as error:
        raise MalformedDocument(collection, doc.get("_id"), _failing_fields(error)) from None
    return StoredEvent(ref=event_ref(doc), event=event)


def event_ref(doc: Document) -> Document:
    """What a trim needs to remove exactly this document and no other: its ``_id``, its ``user_id``
    and, when it has one, its ``event_id`` (as stored). An ``_id`` alone is not enough: an app that
    chooses its own ``_id``s may reuse one, for another event or another user, before a pending trim
    is finished (a pending trim's mark stays until the next summary write, see ``jobs.compress`` step 7);
    a document with no ``event_id`` is told apart by its ``created_at``. And on a cluster sharded by
    ``user_id`` the user makes the delete a targeted one."""
    ref = {"_id": doc.get("_id"), "user_id": doc.get("user_id")}
    if "event_id" in doc:
        ref["event_id"] = doc["event_id"]
    elif isinstance(doc.get("created_at"), datetime):  # no event id: the time tells a reuse apart
        ref["created_at"] = doc["created_at"]
    return ref


def document_to_profile(collection: str, doc: Document) -> UserProfile:
    try:
        return UserProfile.model_validate(doc)
    except ValidationError as error:
        raise MalformedDocument(collection, doc.get("_id"), _failing_fields(error)) from None


def valid_events(
    collection: str, docs: Iterable[Document], metrics: Metrics, rules: EventRules = EventRules()
) -> Iterable[StoredEvent]:
    """Parse ``docs``, skipping (logging by ``_id`` and counting) the malformed ones."""
    for doc in docs:
        try:
            yield document_to_event(collection, doc, rules)
        except MalformedDocument as bad:
            report_malformed(bad, metrics)


def valid_models(model: type[M], collection: str, docs: Iterable[Document], metrics: Metrics) -> list[M]:
    """The documents that validate as ``model``; the others are skipped, logged by ``_id`` and counted."""
    valid = []
    for doc in docs:
        try:
            valid.append(model.model_validate(doc))
        except ValidationError as error:
            report_malformed(MalformedDocument(collection, doc.get("_id"), _failing_fields(error)), metrics)
    return valid


def report_malformed(bad: MalformedDocument, metrics: Metrics) -> None:
    metrics.malformed_documents.labels(collection=bad.collection).inc()
    log.warning(
        "skipping malformed document collection=%s _id=%r failing=%s", bad.collection, bad.ref, bad.fields
    )
