"""The serializer conformance checks, run against the built-in ``json`` and against ``cbor``."""

import pytest

from durable_core.serialization import JsonSerializer, Serializer
from durable_serializer_cbor import CborSerializer

from durable_conformance import SerializerConformance


class TestJsonConformance(SerializerConformance):
    @pytest.fixture
    def serializer(self) -> Serializer:
        return JsonSerializer()


class TestCborConformance(SerializerConformance):
    @pytest.fixture
    def serializer(self) -> Serializer:
        return CborSerializer()
