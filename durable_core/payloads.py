"""Turning inputs and outputs into stored payloads and back, within the size limits."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from .errors import DurableExecutionError, describe_exception
from .serialization import SerializationError, Serializer
from .storage.contract import Payload


class PayloadCodec:
    """Encodes with one serializer; decodes with whichever serializer wrote the payload.

    Every payload carries its serializer's name (SPEC §4), so rows written before the default
    serializer changed stay readable: ``find_serializer`` looks up the others by name, once each.
    """

    def __init__(self, serializer: Serializer, find_serializer: Callable[[str], Serializer], *,
                 max_input_size: int, max_output_size: int):
        self.serializer = serializer
        self._find_serializer = find_serializer
        self._serializers = {serializer.name: serializer}
        self._limits = {"input": max_input_size, "output": max_output_size}

    def encode(self, value: Any, task_id: str, what: Literal["input", "output"]) -> Payload:
        """``value`` serialized; a value that cannot be is a ``SerializationError``, one over the
        limit a non-retryable error, each naming the task and what it was."""
        try:
            data = self.serializer.serialize(value)
        except DurableExecutionError as exc:
            raise SerializationError(f"Cannot serialize {what} of task {task_id}: {exc.message}") from exc
        except Exception as exc:
            raise SerializationError(
                f"Cannot serialize {what} of task {task_id}: {describe_exception(exc)}"
            ) from exc
        limit = self._limits[what]
        if len(data) > limit:
            raise DurableExecutionError(
                f"Serialized {what} of task {task_id} is {len(data)} bytes, more than the limit of "
                f"{limit} bytes (executor option max_serialized_{what}_size)",
                is_retryable=False,
            )
        return Payload(self.serializer.name, data)

    def decode(self, payload: Payload) -> Any:
        """The value of ``payload``, by the serializer named in it."""
        serializer = self._serializers.get(payload.serializer)
        if serializer is None:
            serializer = self._serializers[payload.serializer] = self._find_serializer(payload.serializer)
        return serializer.deserialize(payload.data)
