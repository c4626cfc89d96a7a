"""Every MongoDB command's duration, as the client measured it, handed to a callback.

:class:`CommandTimer` is a pymongo ``CommandListener`` (give it to the client as ``event_listeners``):
for each command that ends, successfully or not, it calls ``observe(command_name, seconds)`` in the
thread that ran the command (the event loop's, for the async client). The callback must not block.
Only the command's name and duration are passed on: nothing of its documents.
"""

from __future__ import annotations

from collections.abc import Callable

from pymongo import monitoring


class CommandTimer(monitoring.CommandListener):
    def __init__(self, observe: Callable[[str, float], None]) -> None:
        self._observe = observe

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        return None

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        self._observe(event.command_name, event.duration_micros / 1e6)

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        self._observe(event.command_name, event.duration_micros / 1e6)
