"""The ``cbor`` serializer for durable (distribution ``durable-serializer-cbor``)."""

from .serializer import CborSerializer as CborSerializer
