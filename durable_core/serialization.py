"""Payload serializers: the ``Serializer`` protocol, the registry of user types, and JSON.

Every stored payload carries the name of the serializer that wrote it (SPEC §4), so a
serializer's encoding is a storage format: rows written today must stay readable. The registry of
dataclasses and enums is process-global and shared by every serializer (JSON here, CBOR in its
plugin), so a type registered once round-trips with all of them.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import json
from collections.abc import Callable
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any, Protocol, TypeVar, overload, runtime_checkable
from uuid import UUID

from .errors import DurableExecutionError, ErrorInfo
from .models import ExecutionRef, FinalizeInput, FinishedChildTaskExecution, ParentRef, RetryOptions
from .status import TaskExecutionStatus


@runtime_checkable
class Serializer(Protocol):
    """Turns payloads into bytes and back; ``name`` is stored beside every payload it writes."""

    name: str

    def serialize(self, value: Any) -> bytes: ...

    def deserialize(self, data: bytes) -> Any: ...


class SerializationError(DurableExecutionError):
    """A value a serializer cannot encode, or bytes it cannot decode; retrying never helps."""

    def __init__(self, message: str):
        super().__init__(message, is_retryable=False)


class UnsupportedValue(Exception):
    """Raised by a serializer's encoder at a value it cannot store. Each container it passes on
    the way up adds its segment of the path (``['key']``, ``[2]``, ``.field``), so the error names
    the place; shared with serializer plugins, so that every serializer says it the same way."""

    def __init__(self, value: Any):
        super().__init__()
        self.value = value
        self.path: list[str] = []

    def message(self, serializer: str) -> str:
        """What ``serialize`` of the serializer named ``serializer`` raises, with the way out."""
        where = f" at {''.join(reversed(self.path))}" if self.path else ""
        what = f"value of type {type(self.value).__qualname__!r}{where} is not serializable by {serializer!r}"
        if dataclasses.is_dataclass(self.value) or isinstance(self.value, enum.Enum):
            return f"{what}; register its class with @durable_core.register_serializable"
        return (
            f"{what}; convert it to a supported type, or make it a dataclass registered with "
            "durable_core.register_serializable"
        )


# ----------------------------------------------------------------------------- registry


@dataclasses.dataclass(frozen=True, slots=True)
class _Registration:
    name: str
    cls: type
    fields: tuple[str, ...] | None
    """The dataclass's ``init`` fields; None for an enum."""

    def state(self, value: Any) -> Any:
        if self.fields is None:
            return value.value
        return {name: getattr(value, name) for name in self.fields}


_by_name: dict[str, _Registration] = {}
_by_type: dict[type, _Registration] = {}

C = TypeVar("C", bound=type)


@overload
def register_serializable(cls: C, /, *, name: str | None = None) -> C: ...


@overload
def register_serializable(*, name: str | None = None) -> Callable[[C], C]: ...


def register_serializable(cls: type | None = None, /, *, name: str | None = None) -> Any:
    """Let every serializer round-trip instances of a dataclass or an enum (use as a decorator).

    The type is stored under ``name``, by default ``"module:QualName"``; a process reading the
    payload must have registered it too. Dataclasses are stored as their ``init`` fields and
    rebuilt by calling the class. To move or rename a class, give it its old name explicitly.
    """
    if cls is None:
        return lambda cls: register_serializable(cls, name=name)
    if isinstance(cls, type) and dataclasses.is_dataclass(cls):
        fields: tuple[str, ...] | None = tuple(f.name for f in dataclasses.fields(cls) if f.init)
    elif isinstance(cls, type) and issubclass(cls, enum.Enum):
        fields = None
    else:
        raise TypeError(f"register_serializable() takes a dataclass or an Enum class, got {cls!r}")
    name = name or f"{cls.__module__}:{cls.__qualname__}"
    if ":" not in name:
        raise ValueError(f"serializable type name {name!r} must look like 'module:Name'")
    _by_name[name] = _by_type[cls] = _Registration(name, cls, fields)
    return cls


def reduce_serializable(value: Any) -> tuple[str, Any] | None:
    """The registered name and state of ``value``, or None if its type is not registered.

    The state is a dict of the dataclass's ``init`` fields, or the enum member's value; a
    serializer encodes it like any other value.
    """
    registration = _by_type.get(type(value))
    return None if registration is None else (registration.name, registration.state(value))


def rebuild_serializable(name: str, state: Any) -> Any:
    """The value ``reduce_serializable`` took apart, rebuilt from its decoded state."""
    registration = _by_name.get(name)
    if registration is None:
        raise SerializationError(
            f"type {name!r} is not registered in this process; import the module that registers "
            "it with durable_core.register_serializable"
        )
    try:
        return registration.cls(state) if registration.fields is None else registration.cls(**state)
    except (TypeError, ValueError) as exc:
        raise SerializationError(f"cannot rebuild {name!r} from its stored state: {exc}") from exc


for _cls in (
    ErrorInfo, ExecutionRef, ParentRef, FinishedChildTaskExecution, FinalizeInput, RetryOptions,
    TaskExecutionStatus,
):
    register_serializable(_cls, name=f"durable_core:{_cls.__name__}")


# ----------------------------------------------------------------------------- JSON

TAG = "__durable__"
"""The reserved key of a tagged value ``{"__durable__": tag, "v": encoded}``. A user dict that
has this key, or a key that is not a str, is itself tagged (``"dict"``, as a list of pairs)."""

MAX_DEPTH = 200
"""How deeply the JSON serializer lets containers (lists, tuples, sets, dicts, registered
dataclasses) nest. A level takes at most three levels of JSON (the pairs form of a dict), and
writing or reading a JSON level takes one level of Python's recursion limit (1000 by default), so
this leaves callers plenty of stack: whatever ``serialize`` accepts, ``deserialize`` reads back."""

_TAG_BYTES = json.dumps(TAG).encode()
_SCALARS = frozenset({str, int, bool, type(None)})
_STR = frozenset({str})
_MICROSECOND = timedelta(microseconds=1)


class _TooDeep(Exception):
    """Raised at a container nested deeper than ``MAX_DEPTH`` (or in a reference cycle)."""


def _encode(value: Any, depth: int) -> Any:
    """``value`` as JSON-native data, type-preserving: everything else becomes a tagged dict.

    ``depth`` counts the containers ``value`` sits in, itself included if it is one.
    """
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is float:  # finite floats are native; nan and ±inf (x - x is nan) are tagged
        return value if value - value == 0 else {TAG: "float", "v": repr(value)}
    encode = _ENCODERS.get(kind)
    if encode is not None:
        return encode(value, depth)
    registration = _by_type.get(kind)
    if registration is None:
        raise UnsupportedValue(value)
    state = registration.state(value)  # an enum's value is not a level of its own
    encoded = _encode(state, depth) if registration.fields is None else _encode_dict(state, depth, ".{}")
    return {TAG: registration.name, "v": encoded}


def _encode_dict(value: dict[Any, Any], depth: int, segment: str = "[{!r}]") -> dict[str, Any]:
    if depth > MAX_DEPTH:
        raise _TooDeep
    if TAG in value or not _STR.issuperset(map(type, value)):
        return _encode_pairs(value, depth + 1, segment)
    if _SCALARS.issuperset(map(type, value.values())):
        return value
    depth += 1
    out = {}
    try:
        for key, item in value.items():
            out[key] = item if type(item) in _SCALARS else _encode(item, depth)
    except UnsupportedValue as exc:
        exc.path.append(segment.format(key))
        raise
    return out


def _encode_pairs(value: dict[Any, Any], depth: int, segment: str) -> dict[str, Any]:
    """``value``'s items as ``[key, item]`` pairs, encoded at ``depth`` (the level below the dict)."""
    pairs = []
    try:
        for key, item in value.items():
            pairs.append([_encode(key, depth), _encode(item, depth)])
    except UnsupportedValue as exc:
        exc.path.append(segment.format(key))
        raise
    return {TAG: "dict", "v": pairs}


def _encode_list(value: Any, depth: int) -> list[Any]:
    if depth > MAX_DEPTH:
        raise _TooDeep
    if _SCALARS.issuperset(map(type, value)):
        return list(value)
    depth += 1
    out: list[Any] = []
    try:
        for item in value:
            out.append(item if type(item) in _SCALARS else _encode(item, depth))
    except UnsupportedValue as exc:
        exc.path.append(f"[{len(out)}]")
        raise
    return out


def _encode_local(value: datetime | time) -> Any:
    """ISO 8601 text; if the UTC offset is not whole seconds, ``[local ISO text, offset in
    microseconds]``, as Python 3.11's ``fromisoformat`` drops an offset's microseconds."""
    offset = value.utcoffset()
    if offset is None or not offset.microseconds:
        return value.isoformat()
    return [value.replace(tzinfo=None).isoformat(), offset // _MICROSECOND]


def _decode_local(cls: type[datetime | time]) -> Callable[[Any], Any]:
    def decode(value: Any) -> Any:
        if type(value) is str:
            return cls.fromisoformat(value)
        text, offset = value
        return cls.fromisoformat(text).replace(tzinfo=timezone(offset * _MICROSECOND))

    return decode


def _decode_decimal(text: str) -> Decimal:
    try:
        return Decimal(text)
    except ArithmeticError:  # decimal.InvalidOperation, whose message is a list of signals
        raise ValueError(f"{text!r:.40} is not a decimal number") from None


# type, tag, encode (to JSON-native data), decode (from decoded data); the containers' encode
# (``_encode_list``) also takes the depth
_TAGGED: tuple[tuple[type, str, Callable[..., Any], Callable[[Any], Any]], ...] = (
    (tuple, "tuple", _encode_list, tuple),
    (set, "set", _encode_list, set),
    (frozenset, "frozenset", _encode_list, frozenset),
    (datetime, "datetime", _encode_local, _decode_local(datetime)),
    (date, "date", date.isoformat, date.fromisoformat),
    (time, "time", _encode_local, _decode_local(time)),
    (timedelta, "timedelta", lambda v: [v.days, v.seconds, v.microseconds], lambda v: timedelta(*v)),
    (bytes, "bytes", lambda v: base64.b64encode(v).decode("ascii"), lambda v: base64.b64decode(v, validate=True)),
    (Decimal, "decimal", str, _decode_decimal),
    (UUID, "uuid", str, UUID),
)


def _tagger(tag: str, encode: Callable[..., Any], container: bool) -> Callable[[Any, int], dict[str, Any]]:
    if container:
        return lambda value, depth: {TAG: tag, "v": encode(value, depth)}
    return lambda value, depth: {TAG: tag, "v": encode(value)}


_ENCODERS: dict[type, Callable[[Any, int], Any]] = {
    dict: _encode_dict,
    list: _encode_list,
    **{kind: _tagger(tag, encode, encode is _encode_list) for kind, tag, encode, _ in _TAGGED},
}
_DECODERS: dict[str, Callable[[Any], Any]] = {
    "float": float,
    "dict": dict,  # a list of [key, value] pairs
    **{tag: decode for _, tag, _, decode in _TAGGED},
}


def _decode_tagged(obj: dict[str, Any]) -> Any:
    """``json.loads`` object hook; inner values are already decoded when it sees a dict."""
    if TAG not in obj:
        return obj
    tag, value = obj[TAG], obj["v"]
    decode = _DECODERS.get(tag)
    return decode(value) if decode is not None else rebuild_serializable(tag, value)


_dumps = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), check_circular=False, allow_nan=False
).encode
_dumps_ascii = json.JSONEncoder(separators=(",", ":"), check_circular=False, allow_nan=False).encode
_loads = json.JSONDecoder().decode  # json.loads on bytes first guesses their encoding: ours is UTF-8
_loads_tagged = json.JSONDecoder(object_hook=_decode_tagged).decode


class JsonSerializer:
    """Compact UTF-8 JSON that round-trips Python types exactly (see docs/serialization.md).

    JSON-native values are stored as themselves; tuples, sets, datetimes, bytes, nan, registered
    dataclasses and the like as tagged dicts, so the payload stays readable by any JSON tool.
    """

    name = "json"

    def serialize(self, value: Any) -> bytes:
        try:
            data = _encode(value, 1)
        except UnsupportedValue as exc:
            raise SerializationError(exc.message(self.name)) from None
        except _TooDeep:
            raise SerializationError(
                "value is nested too deeply or contains a reference cycle: the 'json' serializer "
                f"stores at most {MAX_DEPTH} levels of nested containers"
            ) from None
        except RecursionError:  # the caller's stack was already deep
            raise SerializationError("value is nested too deeply or contains a reference cycle") from None
        try:
            try:
                return _dumps(data).encode()
            except UnicodeEncodeError:  # a lone surrogate: ASCII escapes keep it exactly
                return _dumps_ascii(data).encode()
        except RecursionError:
            raise SerializationError("value is nested too deeply or contains a reference cycle") from None
        except ValueError as exc:  # an int longer than sys.get_int_max_str_digits() allows as text
            raise SerializationError(f"value holds an integer the {self.name!r} serializer cannot write: {exc}") from None

    def deserialize(self, data: bytes) -> Any:
        try:
            return (_loads_tagged if _TAG_BYTES in data else _loads)(data.decode())
        except RecursionError:
            raise SerializationError(f"invalid {self.name!r} payload: nested too deeply to read") from None
        except (ValueError, TypeError, KeyError, ArithmeticError) as exc:  # ArithmeticError: Decimal, timedelta
            raise SerializationError(f"invalid {self.name!r} payload: {exc}") from exc
