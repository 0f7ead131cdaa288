"""The ``cbor`` serializer: compact binary payloads (RFC 8949) that round-trip Python types exactly.

What CBOR has a standard tag for is stored under that tag (datetime 0, date 1004, Decimal 4,
UUID 37, set 258); everything else Python-specific is a generic object, tag 27
``[name, argument]``, named like the JSON serializer's tags (``"tuple"``, ``"module:QualName"``).
The encoding is a storage format: what this version writes must stay readable by every later one.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID

import cbor2
from cbor2 import CBOREncoder, CBORTag

from durable_core.serialization import (
    SerializationError,
    UnsupportedValue,
    rebuild_serializable,
    reduce_serializable,
)

OBJECT_TAG = 27
"""IANA: serialised language-independent object with type name and constructor arguments."""
SET_TAG = 258
"""IANA: mathematical finite set."""

_NATIVE = frozenset({type(None), bool, int, float, str, bytes, date, UUID})
"""Exact types cbor2 writes and reads back as themselves (date as tag 1004, UUID as tag 37)."""
_STR = frozenset({str})
_MINUTE = timedelta(minutes=1)
_MAX_DEPTH = 100_000
"""cbor2's nesting limit for reading: far beyond anything ``serialize`` can write (the recursion
limit stops it first), so every payload written is readable."""


def _object(name: str, argument: Any) -> CBORTag:
    return CBORTag(OBJECT_TAG, [name, argument])


def _encode(value: Any) -> Any:
    """``value`` as data cbor2 encodes exactly: native types, and tags for everything else."""
    kind = type(value)
    if kind in _NATIVE:
        return value
    encode = _ENCODERS.get(kind)
    if encode is not None:
        return encode(value)
    reduced = reduce_serializable(value)
    if reduced is None:
        raise UnsupportedValue(value)
    name, state = reduced
    return _object(name, _encode(state) if isinstance(value, enum.Enum) else _encode_dict(state, ".{}"))


def _encode_dict(value: dict[Any, Any], segment: str = "[{!r}]") -> Any:
    """A CBOR map if every key is a str; other keys as a list of pairs, so that cbor2 never
    decodes a key in its immutable mode (which would turn lists inside keys into tuples)."""
    if not _STR.issuperset(map(type, value)):
        return _object("dict", _encode_pairs(value, segment))
    if _NATIVE.issuperset(map(type, value.values())):
        return value
    out = {}
    try:
        for key, item in value.items():
            out[key] = item if type(item) in _NATIVE else _encode(item)
    except UnsupportedValue as exc:
        exc.path.append(segment.format(key))
        raise
    return out


def _encode_pairs(value: dict[Any, Any], segment: str) -> list[list[Any]]:
    pairs = []
    try:
        for key, item in value.items():
            pairs.append([_encode(key), _encode(item)])
    except UnsupportedValue as exc:
        exc.path.append(segment.format(key))
        raise
    return pairs


def _encode_items(value: Any) -> list[Any]:
    if _NATIVE.issuperset(map(type, value)):
        return value if type(value) is list else list(value)
    out: list[Any] = []
    try:
        for item in value:
            out.append(item if type(item) in _NATIVE else _encode(item))
    except UnsupportedValue as exc:
        exc.path.append(f"[{len(out)}]")
        raise
    return out


def _encode_datetime(value: datetime) -> Any:
    """Tag 0 (RFC 3339 text, offset kept) when the UTC offset is whole minutes, which is all
    RFC 3339 can write; other datetimes as a tag 27 (see ``_encode_local``)."""
    offset = value.utcoffset()
    if offset is not None and not offset % _MINUTE:
        return value
    return _encode_local("datetime", value, offset)


def _encode_local(name: str, value: datetime | time, offset: timedelta | None) -> CBORTag:
    """The ISO 8601 text of the local (naive) value, with the offset apart when there is one:
    Python 3.11's ``fromisoformat`` drops an offset's microseconds."""
    text = value.replace(tzinfo=None).isoformat()
    return _object(name, text if offset is None else [text, _encode_timedelta(offset)])


def _decode_local(cls: type[datetime | time]) -> Callable[[Any], Any]:
    def decode(argument: Any) -> Any:
        if type(argument) is str:
            return cls.fromisoformat(argument)
        text, offset = argument
        return cls.fromisoformat(text).replace(tzinfo=timezone(offset))

    return decode


def _encode_timedelta(value: timedelta) -> CBORTag:
    return _object("timedelta", [value.days, value.seconds, value.microseconds])


def _encode_decimal(value: Decimal) -> Any:
    """Tag 4 (a decimal fraction) keeps the exponent but not nan, infinities or the sign of zero."""
    if value.is_finite() and not (value.is_zero() and value.is_signed()):
        return value
    return _object("decimal", str(value))


def _encode_str(encoder: CBOREncoder, value: str) -> None:
    """A str with lone surrogates is not UTF-8, so not CBOR text: store its surrogatepass bytes."""
    try:
        encoder.encode_string(value)
    except UnicodeEncodeError:
        encoder.encode(_object("str", value.encode("utf-8", "surrogatepass")))


_ENCODERS: dict[type, Callable[[Any], Any]] = {
    dict: _encode_dict,
    list: _encode_items,
    tuple: lambda value: _object("tuple", _encode_items(value)),
    set: lambda value: CBORTag(SET_TAG, _encode_items(value)),
    frozenset: lambda value: _object("frozenset", _encode_items(value)),
    datetime: _encode_datetime,
    time: lambda value: _encode_local("time", value, value.utcoffset()),
    timedelta: _encode_timedelta,
    Decimal: _encode_decimal,
}
_DECODERS: dict[str, Callable[[Any], Any]] = {
    "tuple": tuple,
    "frozenset": frozenset,
    "dict": dict,  # a list of [key, value] pairs
    "datetime": _decode_local(datetime),
    "time": _decode_local(time),
    "timedelta": lambda value: timedelta(*value),
    "decimal": Decimal,
    "str": lambda value: value.decode("utf-8", "surrogatepass"),
}


def _decode_object(value: Any, immutable: bool) -> Any:
    name, argument = value
    decode = _DECODERS.get(name)
    return decode(argument) if decode is not None else rebuild_serializable(name, argument)


ALLOWED_TAGS = frozenset({0, 2, 3, 4, 37, 1004, OBJECT_TAG, SET_TAG})
"""The tags ``serialize`` writes: datetime, positive and negative bignum, decimal fraction,
UUID, date, generic object, set. Reading refuses every other tag."""

CBOR2_DECODED_TAGS = frozenset({0, 1, 2, 3, 4, 5, 25, 28, 29, 30, 35, 36, 37, 52, 54, 100, 256, 258, 260, 261,
                                1004, 43000, 55799})
"""The tags cbor2 (6.x) decodes by itself, into regular expressions, e-mail messages, fractions,
IP addresses and the like; those not in ``ALLOWED_TAGS`` are refused by a decoder of ours. cbor2
hands every other tag to ``_refuse_tag``."""


def _refused(tag: int) -> SerializationError:
    allowed = ", ".join(map(str, sorted(ALLOWED_TAGS)))
    return SerializationError(f"invalid 'cbor' payload: CBOR tag {tag} is not one the 'cbor' serializer "
                              f"writes (it reads tags {allowed})")


def _refuse_tag(tag: CBORTag, immutable: bool) -> Any:
    raise _refused(tag.tag)


def _refuser(tag: int) -> Callable[[Any, bool], Any]:
    def refuse(value: Any, immutable: bool) -> Any:
        raise _refused(tag)

    return refuse


_SEMANTIC_DECODERS: dict[int, Callable[[Any, bool], Any]] = {
    **{tag: _refuser(tag) for tag in CBOR2_DECODED_TAGS - ALLOWED_TAGS},
    OBJECT_TAG: _decode_object,
    SET_TAG: lambda value, immutable: set(value),
}


class CborSerializer:
    """Compact binary CBOR that round-trips the same Python values as ``json``, exactly.

    Smaller than JSON for bytes, numbers and tagged values, and bytes are stored raw (no base64);
    any CBOR tool can read the payloads (see docs/serialization.md for the tags used).
    """

    name = "cbor"

    def serialize(self, value: Any) -> bytes:
        try:
            data = _encode(value)
        except UnsupportedValue as exc:
            raise SerializationError(exc.message(self.name)) from None
        except RecursionError:
            raise SerializationError("value is nested too deeply or contains a reference cycle") from None
        try:
            try:
                return cbor2.dumps(data)
            except UnicodeEncodeError:  # a lone surrogate somewhere: the slower, per-str path
                return cbor2.dumps(data, encoders={str: _encode_str})
        except cbor2.CBOREncodeValueError as exc:  # cbor2 6.3+ caps nesting at a fixed depth
            if "depth" not in str(exc):
                raise
            raise SerializationError("value is nested too deeply or contains a reference cycle") from None

    def deserialize(self, data: bytes) -> Any:
        try:
            return cbor2.loads(data, semantic_decoders=_SEMANTIC_DECODERS, tag_hook=_refuse_tag, max_depth=_MAX_DEPTH)
        except cbor2.CBORDecodeError as exc:
            cause = exc.__cause__
            if isinstance(cause, SerializationError):  # e.g. a type not registered in this process
                raise cause from None
            detail = f"{exc}: {cause}" if cause is not None else str(exc)
            raise SerializationError(f"invalid {self.name!r} payload: {detail}") from exc
