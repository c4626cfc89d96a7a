"""Mapping between domain models and the stored BSON documents (the public schema in the README).

Reading never trusts a document: other tools write these collections. A document that fails
validation is reported as :class:`MalformedDocument`, which names the failing fields but never
echoes their values (content is private).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
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
    return {
        "event_id": event.event_id,
        "user_id": event.user_id,
        "role": event.role,
        "content": event.content,
        "created_at": event.created_at,
        "tags": list(event.tags),
    }


# What makes a stored event foldable, said twice in one place: as a query (the scan's and the fold's
# counts, run by the server) and in Python (the documents the fold reads). They must agree, or the scan
# would count events the fold skips and queue the user again and again.
#   - a date `created_at` (comparison operators match only values of the same BSON type, so this range
#     selects exactly the dated documents, and every server serves it from the index);
#   - a non-empty role string;
#   - content: a non-empty string, or a non-empty list of content parts (OpenAI-style
#     `{"type": "text", "text": ...}` parts, strings, or other parts shown by their type) with no empty
#     string or empty list among them.
DATED = {"$gte": datetime(1, 1, 1, tzinfo=UTC)}
FOLDABLE_CONTENT = {
    "role": {"$type": "string", "$ne": ""},
    "content": {"$type": ["string", "array"], "$nin": ["", []]},
}
REQUIRED_FIELDS = ("user_id", "role", "content", "created_at")


def foldable_content(role: object, content: object) -> bool:
    """The Python side of ``FOLDABLE_CONTENT`` (dates are checked by the model)."""
    if not isinstance(role, str) or role == "":
        return False
    if isinstance(content, str):
        return content != ""
    return isinstance(content, list) and content != [] and "" not in content and [] not in content


def content_text(content: str | list[Any]) -> str:
    """A content-part list as text: text parts as they are, other parts as ``[type]``."""
    if isinstance(content, str):
        return content
    parts = []
    for part in content:
        if isinstance(part, str):
            parts.append(part)
        elif isinstance(part, dict) and isinstance(part.get("text"), str):
            parts.append(part["text"])
        else:
            kind = part.get("type") if isinstance(part, dict) else None
            parts.append(f"[{kind if isinstance(kind, str) and kind else 'content part'}]")
    return "\n".join(parts)


def document_to_event(collection: str, doc: Document) -> StoredEvent:
    missing = [f"{name} (missing)" for name in REQUIRED_FIELDS if name not in doc]
    if missing:
        raise MalformedDocument(collection, doc.get("_id"), missing)
    if not foldable_content(doc["role"], doc["content"]):
        raise MalformedDocument(collection, doc.get("_id"), ["role or content (not foldable)"])
    try:
        event = MemoryEvent.model_validate({**doc, "content": content_text(doc["content"])})
    except ValidationError as error:
        raise MalformedDocument(collection, doc.get("_id"), _failing_fields(error)) from None
    return StoredEvent(ref=doc.get("_id"), event=event)


def document_to_profile(collection: str, doc: Document) -> UserProfile:
    try:
        return UserProfile.model_validate(doc)
    except ValidationError as error:
        raise MalformedDocument(collection, doc.get("_id"), _failing_fields(error)) from None


def valid_events(collection: str, docs: Iterable[Document], metrics: Metrics) -> Iterable[StoredEvent]:
    """Parse ``docs``, skipping (logging by ``_id`` and counting) the malformed ones."""
    for doc in docs:
        try:
            yield document_to_event(collection, doc)
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
