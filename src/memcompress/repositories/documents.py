"""Mapping between domain models and the stored BSON documents (the public schema in the README).

Reading never trusts a document: other tools write these collections. A document that fails
validation is reported as :class:`MalformedDocument`, which names the failing fields but never
echoes their values (content is private).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
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
        "event_id": str(event.event_id),
        "user_id": event.user_id,
        "role": event.role.value,
        "content": event.content,
        "created_at": event.created_at,
        "tags": list(event.tags),
    }


EVENT_FIELDS = ("event_id", "user_id", "role", "content", "created_at", "tags")


def document_to_event(collection: str, doc: Document) -> StoredEvent:
    missing = [f"{name} (missing)" for name in EVENT_FIELDS if name not in doc]
    if missing:
        raise MalformedDocument(collection, doc.get("_id"), missing)
    try:
        return StoredEvent(ref=doc.get("_id"), event=MemoryEvent.model_validate(doc))
    except ValidationError as error:
        raise MalformedDocument(collection, doc.get("_id"), _failing_fields(error)) from None


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
