"""memcompress: compress per-user chat memory in MongoDB without ever forgetting what a user said.

The app-side API is ``request_compression`` (one Redis command, any redis-py client; see
:mod:`memcompress.queue`). The rest is imported on first use, so an app that only asks for
compressions never loads arq or the worker's dependencies.
"""

from typing import TYPE_CHECKING, Any

from memcompress.queue import enqueue_compression, request_compression

if TYPE_CHECKING:
    from memcompress.models import MemoryEvent, Role, UserProfile
    from memcompress.settings import ConfigError, Settings, load_settings

__all__ = [
    "ConfigError",
    "MemoryEvent",
    "Role",
    "Settings",
    "UserProfile",
    "enqueue_compression",
    "load_settings",
    "request_compression",
]
__version__ = "0.1.0"

_LAZY = {
    "MemoryEvent": "memcompress.models",
    "Role": "memcompress.models",
    "UserProfile": "memcompress.models",
    "ConfigError": "memcompress.settings",
    "Settings": "memcompress.settings",
    "load_settings": "memcompress.settings",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'memcompress' has no attribute {name!r}")
