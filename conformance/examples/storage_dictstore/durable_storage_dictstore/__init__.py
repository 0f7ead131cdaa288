"""An example third-party storage for durable (plugin name ``dictstore``)."""

from ._storage import DictStore as DictStore
from ._storage import open_dictstore as open_dictstore

__all__ = ["DictStore", "open_dictstore"]
