"""The JSON serializer round-trips every supported type exactly, and refuses the rest clearly."""

import dataclasses
import enum
import json
import sys
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest
from hypothesis import given
from hypothesis import strategies as st

from durable_conformance import SerializerConformance
from durable_conformance.serializers import Point, same, supported_values
from durable_core.serialization import (
    MAX_DEPTH,
    TAG,
    JsonSerializer,
    SerializationError,
    Serializer,
    rebuild_serializable,
    reduce_serializable,
    register_serializable,
)
from durable_core.status import TaskExecutionStatus

json_serializer = JsonSerializer()


@register_serializable(name="tests:Box")
@dataclasses.dataclass
class Box:
    content: Any
    points: list[Point] = dataclasses.field(default_factory=list)


@register_serializable
class Color(enum.Enum):
    RED = "red"
    BLUE = (0, 0, 255)


@register_serializable(name="tests:Cell")
@dataclasses.dataclass
class Cell:
    content: Any


def round_trip(value: Any) -> Any:
    return json_serializer.deserialize(json_serializer.serialize(value))


# Offsets with microseconds too: Python 3.11's fromisoformat alone would lose them.
values = supported_values(
    offsets=st.builds(
        timezone, st.timedeltas(min_value=timedelta(hours=-23, minutes=-59), max_value=timedelta(hours=23, minutes=59))
    )
)


class TestJsonConformance(SerializerConformance):
    """Every check a serializer must pass; the tests below are those particular to JSON."""

    @pytest.fixture
    def serializer(self) -> Serializer:
        return JsonSerializer()


@given(values)
def test_every_supported_value_round_trips_with_its_types(value: Any) -> None:
    assert same(round_trip(value), value)


@given(values)
def test_output_is_strict_json(value: Any) -> None:
    def refuse(constant: str) -> None:
        raise AssertionError(f"non-standard JSON constant {constant}")

    json.loads(json_serializer.serialize(value).decode("utf-8", "surrogatepass"), parse_constant=refuse)


def test_json_native_values_are_stored_as_plain_compact_json() -> None:
    value = {"url": "https://example.com/ü", "size": 3, "ratio": 0.5, "ok": True, "tags": ["a", None]}
    data = json_serializer.serialize(value)
    assert data == '{"url":"https://example.com/ü","size":3,"ratio":0.5,"ok":true,"tags":["a",null]}'.encode()
    assert json.loads(data) == value


def test_types_json_would_change_are_tagged() -> None:
    value = {"pair": (1, 2), "when": datetime(2024, 5, 1, 12, 30, tzinfo=timezone(timedelta(hours=2)))}
    assert json.loads(json_serializer.serialize(value)) == {
        "pair": {TAG: "tuple", "v": [1, 2]},
        "when": {TAG: "datetime", "v": "2024-05-01T12:30:00+02:00"},
    }
    assert same(round_trip(value), value)


@pytest.mark.parametrize(
    "value",
    [
        float("nan"), float("inf"), -float("inf"), -0.0,
        {1: "a", None: "b", (1, "x"): "c", 2.5: "d", False: "e"},
        datetime(2024, 1, 1, 0, 0, 0, 1), date(1, 1, 1), time(23, 59, 59, 999999),
        timedelta(days=-1, microseconds=1), b"\x00\xff", Decimal("1.10"), Decimal("-Infinity"),
        UUID(int=7), {1, "1"}, frozenset({(1, 2)}), (), [()], "\ud800 lone surrogate",
        10**100,
        datetime(2024, 1, 1, tzinfo=timezone(timedelta(microseconds=-1))),
        datetime(2024, 1, 1, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=23, microseconds=999999))),
        datetime(2024, 1, 1, tzinfo=timezone(timedelta(seconds=61))),
        time(12, tzinfo=timezone(timedelta(microseconds=1))),
        time(0, 0, 0, 1, tzinfo=timezone(timedelta(hours=-5, microseconds=-250))),
    ],
    ids=repr,
)
def test_edge_values_round_trip(value: Any) -> None:
    assert same(round_trip(value), value)


def test_offsets_in_whole_seconds_stay_iso_text_and_others_are_stored_apart() -> None:
    """Python 3.11's ``fromisoformat`` drops an offset's microseconds, so such an offset is
    stored apart, in microseconds, beside the local time."""
    seconds = timezone(timedelta(hours=-9, minutes=-30, seconds=-5))
    fraction = timezone(timedelta(hours=5, microseconds=250))
    value = [
        datetime(2024, 5, 1, 12, 30, tzinfo=seconds), time(12, 30, tzinfo=seconds),
        datetime(2024, 5, 1, 12, 30, 0, 7, tzinfo=fraction), time(12, 30, tzinfo=fraction),
        datetime(2024, 5, 1, tzinfo=timezone(timedelta(microseconds=-1))),
    ]
    assert json.loads(json_serializer.serialize(value)) == [
        {TAG: "datetime", "v": "2024-05-01T12:30:00-09:30:05"},
        {TAG: "time", "v": "12:30:00-09:30:05"},
        {TAG: "datetime", "v": ["2024-05-01T12:30:00.000007", 18_000_000_250]},
        {TAG: "time", "v": ["12:30:00", 18_000_000_250]},
        {TAG: "datetime", "v": ["2024-05-01T00:00:00", -1]},
    ]
    assert same(round_trip(value), value)


NESTINGS: dict[str, Any] = {
    "list": lambda inner: [inner],
    "tuple": lambda inner: (inner,),
    "frozenset": lambda inner: frozenset({inner}),
    "str-keyed dict": lambda inner: {"k": inner},
    "int-keyed dict": lambda inner: {1: inner},
    "dataclass": Cell,
}


def nested(kind: str, depth: int) -> Any:
    """``depth`` containers of ``kind`` around an ``int``."""
    value: Any = 0
    for _ in range(depth):
        value = NESTINGS[kind](value)
    return value


@pytest.mark.parametrize("kind", NESTINGS)
def test_values_nested_max_depth_deep_round_trip_and_deeper_ones_are_refused(kind: str) -> None:
    value = nested(kind, MAX_DEPTH)
    assert round_trip(value) == value
    with pytest.raises(SerializationError) as caught:
        json_serializer.serialize(nested(kind, MAX_DEPTH + 1))
    assert caught.value.message == (
        "value is nested too deeply or contains a reference cycle: the 'json' serializer stores at "
        f"most {MAX_DEPTH} levels of nested containers"
    )
    assert caught.value.is_retryable is False


def test_the_depth_limit_counts_containers_not_scalars_or_tagged_leaves() -> None:
    leaves = [
        1, 0.5, float("nan"), "s", b"b", datetime(2024, 1, 1, tzinfo=timezone(timedelta(microseconds=1))),
        Decimal("1.5"), Color.RED, TaskExecutionStatus.COMPLETED,
    ]
    for leaf in leaves:  # inside MAX_DEPTH lists
        value = within_lists(MAX_DEPTH, leaf)
        assert same(round_trip(value), value)
    for container in [(), {}, set(), Point(1, 2.0), Color.BLUE]:  # BLUE's value is a tuple
        with pytest.raises(SerializationError, match=f"at most {MAX_DEPTH} levels"):
            json_serializer.serialize(within_lists(MAX_DEPTH, container))
        assert same(round_trip(within_lists(MAX_DEPTH - 1, container)), within_lists(MAX_DEPTH - 1, container))


def within_lists(depth: int, value: Any) -> Any:
    for _ in range(depth):
        value = [value]
    return value


def at_stack_depth(frames: int, call: Any) -> Any:
    return call() if frames == 0 else at_stack_depth(frames - 1, call)


def stack_depth() -> int:
    frame: Any = sys._getframe()
    depth = 0
    while frame is not None:
        frame, depth = frame.f_back, depth + 1
    return depth


@pytest.mark.parametrize("kind", ["list", "int-keyed dict", "dataclass"])
def test_serialize_raises_no_raw_recursion_error_when_the_stack_is_already_deep(kind: str) -> None:
    """Wherever the stack runs out, in encoding or in the C encoder, ``serialize`` raises
    ``SerializationError``, unless too little stack is left even to raise that (a few frames)."""
    value = nested(kind, MAX_DEPTH)
    outcomes = []

    def attempt() -> None:
        headroom = sys.getrecursionlimit() - stack_depth()
        try:
            json_serializer.serialize(value)
            outcomes.append("written")
        except SerializationError as exc:
            assert "nested too deeply" in exc.message
            outcomes.append("refused")
        except RecursionError:
            assert headroom < 10, f"raw RecursionError with {headroom} frames of headroom"
            outcomes.append("no stack left")

    for frames in range(sys.getrecursionlimit()):
        try:
            at_stack_depth(frames, attempt)
        except RecursionError:  # raised before attempt() was reached
            break
    assert outcomes[0] == "written" and "refused" in outcomes


def test_user_dicts_that_use_the_reserved_key_are_escaped() -> None:
    lookalikes = [{TAG: "tuple", "v": [1, 2]}, {TAG: "nowhere:Gone", "v": {}}, {TAG: None}, {"v": TAG}]
    assert same(round_trip(lookalikes), lookalikes)


def test_enum_members_keep_their_class() -> None:
    assert round_trip([Color.BLUE, Color.RED]) == [Color.BLUE, Color.RED]


def test_unregistered_dataclass_asks_for_registration() -> None:
    @dataclasses.dataclass
    class Unregistered:
        x: int

    with pytest.raises(SerializationError) as caught:
        json_serializer.serialize({(1, 2): Unregistered(1)})
    assert caught.value.message == (
        "value of type 'test_unregistered_dataclass_asks_for_registration.<locals>.Unregistered' at "
        "[(1, 2)] is not serializable by 'json'; register its class with "
        "@durable_core.register_serializable"
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'{"a": ', r"invalid 'json' payload: Expecting value"),
        (b'{"__durable__": "nowhere:Gone", "v": {}}', r"type 'nowhere:Gone' is not registered in this process"),
        (b'{"__durable__": "tests:Box", "v": {"nope": 1}}', r"cannot rebuild 'tests:Box' from its stored state"),
        (b'{"__durable__": "datetime", "v": "yesterday"}', r"invalid 'json' payload: Invalid isoformat"),
        (b'{"__durable__": "time", "v": ["12:00:00", 86400000000]}', r"invalid 'json' payload: offset must be"),
        (b'{"__durable__": "datetime", "v": ["2024-01-01T00:00:00"]}', r"invalid 'json' payload: not enough values"),
        (b'{"__durable__": "bytes", "v": "!!!!"}', r"invalid 'json' payload: Only base64 data is allowed"),
        (b'{"__durable__": "bytes", "v": "YWJ"}', r"invalid 'json' payload: Incorrect padding"),
        (b'{"__durable__": "decimal", "v": "1.2.3"}', r"invalid 'json' payload: '1.2.3' is not a decimal number"),
        (b'{"__durable__": "uuid", "v": "x"}', r"invalid 'json' payload: badly formed hexadecimal UUID string"),
        (b'{"__durable__": "timedelta", "v": [1e300, 0, 0]}', r"invalid 'json' payload: .*too large"),
        (b'{"__durable__": "dict", "v": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
         r"invalid 'json' payload: nested too deeply to read"),
        (b"[" * 100_000 + b"]" * 100_000, r"invalid 'json' payload: nested too deeply to read"),
        (b"9" * 5000, r"invalid 'json' payload: Exceeds the limit \(4300 digits\)"),
    ],
)
def test_bad_payloads_raise_serialization_error(data: bytes, message: str) -> None:
    with pytest.raises(SerializationError, match=message):
        json_serializer.deserialize(data)


@pytest.mark.parametrize("value", [10**5000, {"a": [-(10**5000)]}], ids=["alone", "nested"])
def test_an_integer_too_long_to_write_as_text_is_a_serialization_error(value: Any) -> None:
    with pytest.raises(SerializationError, match=r"^value holds an integer the 'json' serializer cannot "
                                                 r"write: Exceeds the limit \(4300 digits\)"):
        json_serializer.serialize(value)


def test_register_serializable_rejects_what_it_cannot_rebuild() -> None:
    with pytest.raises(TypeError, match="takes a dataclass or an Enum class, got <class 'int'>"):
        register_serializable(int)
    with pytest.raises(TypeError, match="takes a dataclass or an Enum class"):
        register_serializable(Point(1, 2.0))  # an instance, not the class
    with pytest.raises(ValueError, match="must look like 'module:Name'"):
        register_serializable(Point, name="Point")


def test_registry_is_shared_through_reduce_and_rebuild() -> None:
    box = Box(content={"k": 1}, points=[Point(1, 2.0)])
    name, state = reduce_serializable(box)
    assert (name, state) == ("tests:Box", {"content": {"k": 1}, "points": [Point(1, 2.0)]})
    assert rebuild_serializable(name, state) == box
    assert reduce_serializable(Color.RED) == (f"{__name__}:Color", "red")
    assert reduce_serializable(object()) is None


def test_a_type_can_be_read_under_an_old_name_after_a_rename() -> None:
    @dataclasses.dataclass
    class Renamed:
        x: int

    register_serializable(Renamed, name="old.module:Renamed")
    old_payload = json_serializer.serialize(Renamed(1))
    register_serializable(Renamed)  # the new name, used from now on
    assert b"old.module:Renamed" not in json_serializer.serialize(Renamed(2))
    assert json_serializer.deserialize(old_payload) == Renamed(1)


def test_json_serializer_satisfies_the_protocol() -> None:
    assert isinstance(json_serializer, Serializer)
    assert json_serializer.name == "json"

