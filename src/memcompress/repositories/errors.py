"""What the storage ports raise. Part of the ports' contract: callers above the adapters catch these,
never a driver's own exception types."""

from __future__ import annotations

from typing import Any


class StoreUnavailable(Exception):
    """MongoDB could not be reached; ``str()`` is one line with the URI's password redacted."""


class MalformedDocument(Exception):
    """A stored document failed validation. Names the failing fields, never echoes their values
    (content is private)."""

    def __init__(self, collection: str, ref: Any, fields: list[str]) -> None:
        super().__init__(f"malformed document in {collection}: _id={ref!r} fields={fields}")
        self.collection = collection
        self.ref = ref
        self.fields = fields


class HistoryChanged(MalformedDocument):
    """The events a trim would remove are not the ones summarised: another program removed or reordered
    them (a conversation's messages). Nothing was removed."""


class LockBusy(Exception):
    """Another holder has the user's lock (a running job, a crashed worker's lock not yet expired)."""


class LockLost(Exception):
    """The lock expired or was taken over while held; the holder must not write."""


class UserErased(Exception):
    """The user was erased (``memcompress forget``) before or while this wrote: the write is undone and
    the run must write nothing more of that user."""
