"""Where the chat history lives: the three layouts of the app's stores (``MEMCOMPRESS_LAYOUT``).

- ``user_memory`` (TL-02, the default): one document per event, ``{user_id, created_at, ...}``.
- ``messages`` (the persistence layer): one document per message, ``{lead_id, timestamp, ...}``; the
  unit of compression is a lead, its summary goes to ``user_profiles`` under ``user_id = lead_id``.
- ``conversations`` (conversation storage): one document per conversation with its ``messages``
  array; the unit of compression is a conversation (its ``_id``, as a string), and its summary lives on
  the conversation document itself, in fields the worker owns (see
  :mod:`memcompress.repositories.conversations`).

Here: each layout's names (:class:`StoreLayout`) and the settings it refuses (:func:`refused_settings`,
checked when the settings load). What each layout stores where, its repositories and its indexes:
:mod:`memcompress.repositories.storage_layouts`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

LayoutName = Literal["user_memory", "messages", "conversations"]
LAYOUTS: tuple[LayoutName, ...] = ("user_memory", "messages", "conversations")


@dataclass(frozen=True, slots=True)
class StoreLayout:
    """One layout with its names. ``owner``: the field naming the user (lead) of a document, or the user
    of a conversation; ``order``: the field that orders the history (a document's, or a message's
    inside a conversation's array)."""

    name: LayoutName = "user_memory"
    collection: str = "user_memory"
    owner: str = "user_id"
    order: str = "created_at"
    messages_field: str = "messages"  # conversations only: the array of messages

    @property
    def archive(self) -> str:
        """Where ``RETENTION=archive`` moves what was summarised."""
        return f"{self.collection}_archive"

    @property
    def per_conversation(self) -> bool:
        return self.name == "conversations"

    @classmethod
    def default(
        cls,
        name: LayoutName,
        *,
        collection: str | None = None,
        owner: str | None = None,
        order: str | None = None,
    ) -> StoreLayout:
        """The layout's names as the app's own code writes them, each overridable."""
        base = {
            "user_memory": cls(),
            "messages": cls("messages", "messages", "lead_id", "timestamp"),
            "conversations": cls("conversations", "conversations", "user_id", "timestamp"),
        }[name]
        return cls(
            name,
            collection or base.collection,
            owner or base.owner,
            order or base.order,
        )


@dataclass(frozen=True, slots=True)
class Refusal:
    """A setting a layout refuses: ``setting`` (a :class:`~memcompress.settings.Settings` field) set at
    all (not None, not empty) is a configuration error saying ``reason``."""

    setting: str
    reason: str


def _no_ttl(name: LayoutName) -> Refusal:
    return Refusal(
        "memory_ttl_days",
        "MEMCOMPRESS_MEMORY_TTL_DAYS makes a TTL index on user_memory; it is not available with "
        f"MEMCOMPRESS_LAYOUT={name}",
    )


REFUSED: dict[LayoutName, tuple[Refusal, ...]] = {
    "user_memory": (),
    "messages": (_no_ttl("messages"),),
    "conversations": (
        _no_ttl("conversations"),
        Refusal(
            "owner_field",
            "MEMCOMPRESS_OWNER_FIELD is not used with MEMCOMPRESS_LAYOUT=conversations "
            "(the unit of compression is a conversation, named by its _id)",
        ),
        Refusal(
            "pinned_roles",
            "MEMCOMPRESS_PINNED_ROLES is not available with MEMCOMPRESS_LAYOUT=conversations: the "
            "summarised messages are cut from the front of the array, so a pinned message there would "
            "stop every compression of its conversation",
        ),
    ),
}


def refused_settings(name: LayoutName) -> tuple[Refusal, ...]:
    """The settings layout ``name`` refuses, in the order they are checked."""
    return REFUSED[name]
