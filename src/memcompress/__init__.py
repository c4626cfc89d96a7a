"""memcompress: compress per-user chat memory in MongoDB without ever forgetting what a user said."""

from memcompress.models import MemoryEvent, Role, UserProfile
from memcompress.settings import ConfigError, Settings, load_settings

__all__ = ["ConfigError", "MemoryEvent", "Role", "Settings", "UserProfile", "load_settings"]
__version__ = "0.1.0"
