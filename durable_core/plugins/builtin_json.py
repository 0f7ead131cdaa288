"""Built-in plugin ``json``: the default serializer."""

from collections.abc import Callable

from ..serialization import JsonSerializer, Serializer
from . import hookimpl


@hookimpl
def durable_register_serializers(register: Callable[[str, Callable[[], Serializer]], None]) -> None:
    register(JsonSerializer.name, JsonSerializer)
