from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from memcompress.models import MemoryEvent, ProfileDefaults, Role, UserProfile


def test_event_times_are_normalised_to_utc() -> None:
    moscow = timezone(timedelta(hours=3))
    event = MemoryEvent(
        user_id="u", role=Role.USER, content="hi", created_at=datetime(2026, 1, 1, 12, tzinfo=moscow)
    )
    assert event.created_at == datetime(2026, 1, 1, 9, tzinfo=UTC)
    assert event.created_at.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "change",
    [
        {"user_id": ""},
        {"user_id": "u" * 257},
        {"role": ""},
        {"role": None},
        {"content": ""},
        {"content": None},
        {"created_at": datetime(2026, 1, 1)},  # naive
    ],
)
def test_event_validation(change: dict[str, object]) -> None:
    fields: dict[str, object] = {"user_id": "u", "role": "user", "content": "hello"} | change
    with pytest.raises(ValidationError):
        MemoryEvent.model_validate(fields)


@pytest.mark.parametrize(
    "change",
    [
        {"role": "tool"},
        {"role": "developer"},
        {"content": "x" * 50_000},
        {"event_id": "app-chosen-17"},
        {"event_id": None},
        {"tags": None},
        {"tags": "not-a-list"},
    ],
)
def test_events_the_app_writes_are_accepted(change: dict[str, object]) -> None:
    fields: dict[str, object] = {"user_id": "u", "role": "user", "content": "hello"} | change
    event = MemoryEvent.model_validate(fields)
    assert event.role == fields["role"] and event.content == fields["content"]
    assert isinstance(event.tags, list)


def test_a_profile_the_app_wrote_validates_only_what_the_worker_uses() -> None:
    """The app's profile repository writes none of our fields, and may write nulls in its own."""
    doc = {
        "user_id": "u",
        "language": "ru",
        "persona": "Alfred-style дворецкий",
        "tone": None,
        "preferred_topics": None,
        "memory_summary": "earlier facts",
        "created_at": datetime(2026, 1, 1, tzinfo=UTC),
        "updated_at": "yesterday",
    }
    profile = UserProfile.model_validate(doc)
    assert (profile.tone, profile.preferred_topics, profile.updated_at) == (None, [], None)
    assert (profile.summary_version, profile.events_summarized, profile.summary_copy) == (0, 0, None)
    with pytest.raises(ValidationError):  # a field the worker relies on must be right
        UserProfile.model_validate(doc | {"summary_version": "three"})


def test_profile_defaults_are_configurable() -> None:
    default = UserProfile.new("u")
    assert (default.language, default.persona, default.tone) == ("ru", "Alfred-style дворецкий", "witty")
    custom = UserProfile.new("u", ProfileDefaults(language="en", persona="concierge", tone="plain"))
    assert (custom.language, custom.persona, custom.tone) == ("en", "concierge", "plain")
    assert custom.summary_version == 0 and custom.pending_trim is None


def test_domain_models_import_no_infrastructure() -> None:
    import ast
    import inspect

    import memcompress.models as models

    tree = ast.parse(inspect.getsource(models))
    imported = {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not {m.split(".")[0] for m in imported} & {"pymongo", "bson", "redis", "arq", "openai"}
