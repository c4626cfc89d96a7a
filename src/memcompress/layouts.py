"""Where the chat history lives: the three layouts of the app's stores (``MEMCOMPRESS_LAYOUT``).

- ``user_memory`` (TL-02, the default): one document per event, ``{user_id, created_at, ...}``.
- ``messages`` (the persistence layer): one document per message, ``{lead_id, timestamp, ...}``; the
  unit of compression is a lead, its summary goes to ``user_profiles`` under ``user_id = lead_id``.
- ``conversations`` (conversation storage): one document per conversation with its ``messages``
  array; the unit of compression is a conversation (its ``_id``, as a string), and its summary lives on
  the conversation document itself, in fields the worker owns (see
  :mod:`memcompress.repositories.conversations`).
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
