"""The ``cbor`` encoding itself: standard tags, plain CBOR for plain values, clear errors, the plugin."""

import dataclasses
import functools
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID

import cbor2
import pytest
from cbor2 import CBORTag

from durable_core.plugins.manager import PluginRegistry
from durable_core.serialization import SerializationError, register_serializable
from durable_serializer_cbor import CborSerializer
from durable_serializer_cbor.serializer import ALLOWED_TAGS

cbor = CborSerializer()


@register_serializable(name="tests.cbor:Size")
@dataclasses.dataclass(frozen=True)
class Size:
    width: int
    height: int


def tagged(data: bytes) -> Any:
    """``data`` decoded with every tag the serializer writes left as a ``CBORTag``."""
    keep = {tag: functools.partial(keep_tag, tag) for tag in ALLOWED_TAGS - {2, 3}}
    return cbor2.loads(data, semantic_decoders=keep)


def keep_tag(tag: int, value: Any, immutable: bool) -> CBORTag:
    return CBORTag(tag, value)


def test_standard_tags_are_used_where_cbor_has_them() -> None:
    value = {
        "when": datetime(2024, 5, 1, 12, 30, tzinfo=timezone(timedelta(hours=2))),
        "day": date(2024, 5, 1),
        "amount": Decimal("1.10"),
        "id": UUID(int=7),
        "tags": {"a"},
        "raw": b"\x00\xff",
        "big": 2**70,
        "nan": float("nan"),
    }
    stored = tagged(cbor.serialize(value))
    assert stored == {
        "when": CBORTag(0, "2024-05-01T12:30:00+02:00"),
        "day": CBORTag(1004, "2024-05-01"),
        "amount": CBORTag(4, [-2, 110]),
        "id": CBORTag(37, UUID(int=7).bytes),
        "tags": CBORTag(258, ["a"]),
        "raw": b"\x00\xff",
        "big": 2**70,
        "nan": stored["nan"],
    }
    assert stored["nan"] != stored["nan"]


def test_python_specific_values_are_generic_objects_named_like_json_tags() -> None:
    utc_plus_61s = timezone(timedelta(seconds=61))
    value = [
        (1, 2), frozenset({"a"}), {1: "one"}, datetime(2024, 5, 1, 12, 30),
        datetime(2024, 5, 1, 12, 30, tzinfo=utc_plus_61s), time(8, 15, tzinfo=timezone.utc),
        timedelta(days=1, microseconds=5), Decimal("-0"), "\ud800", Size(3, 4),
    ]
    assert tagged(cbor.serialize(value)) == [
        CBORTag(27, ["tuple", [1, 2]]),
        CBORTag(27, ["frozenset", ["a"]]),
        CBORTag(27, ["dict", [[1, "one"]]]),
        CBORTag(27, ["datetime", "2024-05-01T12:30:00"]),
        CBORTag(27, ["datetime", ["2024-05-01T12:30:00", CBORTag(27, ["timedelta", [0, 61, 0]])]]),
        CBORTag(27, ["time", ["08:15:00", CBORTag(27, ["timedelta", [0, 0, 0]])]]),
        CBORTag(27, ["timedelta", [1, 0, 5]]),
        CBORTag(27, ["decimal", "-0"]),
        CBORTag(27, ["str", b"\xed\xa0\x80"]),
        CBORTag(27, ["tests.cbor:Size", {"width": 3, "height": 4}]),
    ]


def test_plain_values_are_plain_cbor() -> None:
    value = {"url": "https://example.com/ü", "size": 3, "ratio": 0.5, "ok": True, "tags": ["a", None]}
    assert cbor.serialize(value) == cbor2.dumps(value)


def test_bytes_are_stored_raw() -> None:
    assert len(cbor.serialize(bytes(1000))) == 1003  # a 3-byte header, no base64


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (cbor2.dumps({"a": [1, 2]})[:-1], r"^invalid 'cbor' payload: premature end of stream"),
        (cbor2.dumps(CBORTag(27, ["nowhere:Gone", {}])), r"^type 'nowhere:Gone' is not registered in this process"),
        (cbor2.dumps(CBORTag(27, ["tests.cbor:Size", {"depth": 1}])), r"^cannot rebuild 'tests.cbor:Size' from its"),
        (cbor2.dumps(CBORTag(27, ["datetime", "yesterday"])), r"^invalid 'cbor' payload: .*Invalid isoformat string"),
        (cbor2.dumps(CBORTag(27, "tuple")), r"^invalid 'cbor' payload: error decoding semantic tag 27"),
        (cbor2.dumps([CBORTag(258, [CBORTag(27, ["nowhere:Gone", {}])])]), r"^type 'nowhere:Gone' is not registered"),
    ],
    ids=["truncated", "unregistered type", "changed type", "bad datetime", "malformed object", "nested"],
)
def test_bad_payloads_raise_serialization_error(data: bytes, message: str) -> None:
    with pytest.raises(SerializationError, match=message):
        cbor.deserialize(data)


@pytest.mark.parametrize(("tag", "value"), [(35, "a+"), (36, "Content-Type: text/plain\n\nhi"), (30, [1, 3]),
                                            (260, b"\x7f\x00\x00\x01"), (1, 0), (28, [1]), (55799, 1), (999, 1)])
def test_only_the_tags_the_serializer_writes_are_read(tag: int, value: Any) -> None:
    data = cbor2.dumps({"a": [CBORTag(tag, value)]})
    with pytest.raises(SerializationError, match=rf"^invalid 'cbor' payload: CBOR tag {tag} is not one the 'cbor' "
                                                 r"serializer writes \(it reads tags 0, 2, 3, 4, 27, 37, 258, 1004\)$"):
        cbor.deserialize(data)


def test_no_tag_below_70000_but_those_it_writes_is_read() -> None:
    """A cbor2 release that decodes one more tag by itself would let it through: this finds it."""
    read = []
    for tag in sorted(set(range(70_000)) - ALLOWED_TAGS):
        try:
            cbor.deserialize(cbor2.dumps(CBORTag(tag, 0)))
        except SerializationError as exc:
            if f"CBOR tag {tag} is not one" in exc.message:
                continue
        read.append(tag)
    assert read == []


def test_big_integers_use_the_bignum_tags_and_round_trip() -> None:
    for value in (2**64, -(2**64) - 1, 10**300):
        assert cbor.deserialize(cbor.serialize(value)) == value


def test_the_plugin_provides_the_cbor_serializer() -> None:
    registry = PluginRegistry.load()
    (info,) = [info for info in registry.plugins if info.name == "cbor"]
    assert (info.distribution, info.status, info.provides) == ("durable-serializer-cbor", "ok", ["serializer:cbor"])
    assert type(registry.serializer("cbor")) is CborSerializer
