"""Registers the ``cbor`` serializer with durable (entry-point group ``durable``)."""

from __future__ import annotations

from collections.abc import Callable

from durable_core import hookimpl
from durable_core.serialization import Serializer

from .serializer import CborSerializer


@hookimpl
def durable_register_serializers(register: Callable[[str, Callable[[], Serializer]], None]) -> None:
    """``cbor``: ``DurableExecutor(..., serializer="cbor")``."""
    register(CborSerializer.name, CborSerializer)
