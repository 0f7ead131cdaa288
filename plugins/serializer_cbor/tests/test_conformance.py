"""The serializer conformance checks, run against ``cbor`` (the core's tests run them against
``json``)."""

import pytest

from durable_core.serialization import Serializer
from durable_serializer_cbor import CborSerializer

from durable_conformance import SerializerConformance


class TestCborConformance(SerializerConformance):
    @pytest.fixture
    def serializer(self) -> Serializer:
        return CborSerializer()
