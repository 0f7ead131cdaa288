"""The serializer conformance checks, run against the built-in ``json`` and against ``cbor``."""

from typing import ClassVar

import pytest

from durable_core.serialization import JsonSerializer, Serializer
from durable_serializer_cbor import CborSerializer

from .serializer_conformance import SerializerConformance

_ISOFORMAT = "Python 3.11's datetime.fromisoformat drops the microseconds of a UTC offset"
_TOO_DEEP = "the JSON decoder needs more recursion than the writer, so the deepest written values are unreadable"


class TestJsonConformance(SerializerConformance):
    known_failures: ClassVar[dict[str, str]] = {
        "test_edge_values_round_trip[datetime-microsecond-offset]": _ISOFORMAT,
        "test_edge_values_round_trip[time-microsecond-offset]": _ISOFORMAT,
        "test_the_deepest_value_it_writes_it_also_reads[int-keyed dict]": _TOO_DEEP,
        "test_the_deepest_value_it_writes_it_also_reads[dataclass]": _TOO_DEEP,
    }

    @pytest.fixture
    def serializer(self) -> Serializer:
        return JsonSerializer()


class TestCborConformance(SerializerConformance):
    @pytest.fixture
    def serializer(self) -> Serializer:
        return CborSerializer()
