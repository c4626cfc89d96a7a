"""When each MongoDB command starts and ends, as the client sees it, told to an observer.

:class:`CommandTimer` is a pymongo ``CommandListener`` (give it to the client as ``event_listeners``):
it calls ``store_command_started()`` when a command is sent and ``store_command_finished()`` when it
ends, successfully or not, in the thread that ran the command (the event loop's, for the async
client). The observer must not block. Nothing of a command (its name, its documents) is passed on.
"""

from __future__ import annotations

from typing import Protocol

from pymongo import monitoring


class CommandObserver(Protocol):
    def store_command_started(self) -> None: ...

    def store_command_finished(self) -> None: ...


class CommandTimer(monitoring.CommandListener):
    def __init__(self, observer: CommandObserver) -> None:
        self._observer = observer

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self._observer.store_command_started()

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        self._observer.store_command_finished()

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        self._observer.store_command_finished()
