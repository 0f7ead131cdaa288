"""In-memory storage for durable (plugin name ``memory``)."""

from .storage import MemoryStorage as MemoryStorage

__all__ = ["MemoryStorage"]
