"""What every durable serializer must do, checked against any implementation.

A serializer's name is stored with every payload it writes, so it must give back exactly what it
was given, refuse what it cannot store with the engine's error shape, and read whatever it wrote.
Use it by subclassing with a ``serializer`` fixture (the class name must start with ``Test``)::

    class TestMySerializer(SerializerConformance):
        @pytest.fixture
        def serializer(self) -> Serializer:
            return MySerializer()
"""

from __future__ import annotations

import collections
import dataclasses
import enum
from collections.abc import Callable
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any, ClassVar
from uuid import UUID

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from durable_core.errors import ErrorInfo
from durable_core.models import (
    ExecutionRef,
    FinalizeInput,
    FinishedChildTaskExecution,
    ParentRef,
    RetryOptions,
)
from durable_core.serialization import SerializationError, Serializer, register_serializable
from durable_core.status import TaskExecutionStatus


@register_serializable(name="durable_conformance:Point")
@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    y: float


@register_serializable(name="durable_conformance:Box")
@dataclasses.dataclass
class Box:
    content: Any
    points: list[Point] = dataclasses.field(default_factory=list)


@register_serializable(name="durable_conformance:Color")
class Color(enum.Enum):
    RED = "red"
    BLUE = (0, 0, 255)


class Level(enum.IntEnum):
    """Not registered: an int subclass, which must be refused rather than stored as an int."""

    LOW = 1


def same(a: Any, b: Any) -> bool:
    """Equal and of the same types all the way down (nan equals nan, -0.0 differs from 0.0)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float | Decimal):
        return repr(a) == repr(b)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(map(same, a, b))
    if isinstance(a, dict):
        return len(a) == len(b) and all(
            same(ka, kb) and same(va, vb) for (ka, va), (kb, vb) in zip(a.items(), b.items(), strict=True)
        )
    if isinstance(a, set | frozenset):
        return len(a) == len(b) and all(any(same(x, y) for y in b) for x in a)
    if dataclasses.is_dataclass(a):
        return all(same(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))
    if isinstance(a, datetime | time):
        return a == b and same(a.utcoffset(), b.utcoffset())
    return bool(a == b)


WHOLE_SECOND_OFFSETS = st.integers(-86399, 86399).map(lambda seconds: timezone(timedelta(seconds=seconds)))
"""UTC offsets in whole seconds: microsecond offsets are checked once, in test_edge_values_round_trip."""


def supported_values(offsets: st.SearchStrategy[timezone] = WHOLE_SECOND_OFFSETS) -> st.SearchStrategy[Any]:
    """Every kind of value a serializer must round-trip, nested; aware datetimes and times carry
    UTC offsets drawn from ``offsets``."""
    hashables = st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False)
        | st.text()
        | st.binary()
        | st.datetimes(timezones=st.none() | offsets)
        | st.dates()
        | st.times(timezones=st.none() | offsets)
        | st.timedeltas()
        | st.uuids()
        | st.decimals(allow_nan=False)
        | st.sampled_from(Color)
        | st.sampled_from(TaskExecutionStatus)
        | st.builds(Point, st.integers(), st.floats()),
        lambda inner: st.tuples(inner, inner) | st.frozensets(inner, max_size=3),
        max_leaves=6,
    )
    return st.recursive(
        hashables | st.floats(),
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.tuples(inner)
            | st.dictionaries(st.text() | st.sampled_from(["__durable__", "v"]), inner, max_size=4)
            | st.dictionaries(hashables, inner, max_size=3)
            | st.sets(hashables, max_size=3)
            | st.builds(Box, inner, st.lists(st.builds(Point, st.integers(), st.floats()), max_size=2))
            | st.builds(ErrorInfo, st.sampled_from(["generic", "cancelled"]), st.text(), st.booleans())
            | st.builds(
                FinishedChildTaskExecution, st.text(), st.text(), st.sampled_from(TaskExecutionStatus), inner
            )
        ),
        max_leaves=20,
    )


values = supported_values()

# The serializer fixture is created once per test, not per example: serializers hold no state.
# Each subclass runs the same test function on its own serializer (a "differing executor").
property_test = settings(
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.differing_executors], deadline=None
)

NESTINGS: dict[str, tuple[Callable[[Any], Any], type, Callable[[Any], Any]]] = {
    # kind: wrap a value one level deeper, the wrapper's type, unwrap it
    "list": (lambda inner: [inner], list, lambda outer: outer[0]),
    "tuple": (lambda inner: (inner,), tuple, lambda outer: outer[0]),
    "str-keyed dict": (lambda inner: {"k": inner}, dict, lambda outer: outer["k"]),
    "int-keyed dict": (lambda inner: {1: inner}, dict, lambda outer: outer[1]),
    "dataclass": (lambda inner: Box(inner), Box, lambda outer: outer.content),
}


def nested(kind: str, depth: int) -> Any:
    wrap = NESTINGS[kind][0]
    value: Any = 0
    for _ in range(depth):
        value = wrap(value)
    return value


def assert_nested(value: Any, kind: str, depth: int) -> None:
    """Like ``same(value, nested(kind, depth))``, without recursion: the depth may be near the limit."""
    _, wrapper, unwrap = NESTINGS[kind]
    for _ in range(depth):
        assert type(value) is wrapper
        value = unwrap(value)
    assert type(value) is int and value == 0


MICROSECOND_OFFSET = timezone(timedelta(microseconds=-1))


class SerializerConformance:
    """The checks; a subclass provides the ``serializer`` fixture."""

    known_failures: ClassVar[dict[str, str]] = {}
    """Test names (``request.node.name``) the serializer is known to fail, with the reason. They
    run as strict xfails: they stay visible, and a fix is noticed."""

    @pytest.fixture
    def serializer(self) -> Serializer:
        raise NotImplementedError("provide a `serializer` fixture returning the serializer under test")

    @pytest.fixture(autouse=True)
    def _known_failure(self, request: pytest.FixtureRequest) -> None:
        reason = self.known_failures.get(request.node.name)
        if reason is not None:
            request.applymarker(pytest.mark.xfail(reason=reason, strict=True))

    @staticmethod
    def round_trip(serializer: Serializer, value: Any) -> Any:
        return serializer.deserialize(serializer.serialize(value))

    # ----------------------------------------------------------------------------- identity

    def test_has_a_name_and_satisfies_the_protocol(self, serializer: Serializer) -> None:
        assert isinstance(serializer, Serializer)
        assert type(serializer.name) is str and serializer.name

    @property_test
    @given(value=values)
    def test_serialize_returns_bytes(self, serializer: Serializer, value: Any) -> None:
        assert type(serializer.serialize(value)) is bytes

    # ----------------------------------------------------------------------------- round trips

    @property_test
    @given(value=values)
    def test_every_supported_value_round_trips_with_its_types(self, serializer: Serializer, value: Any) -> None:
        assert same(self.round_trip(serializer, value), value)

    @pytest.mark.parametrize(
        "value",
        [
            float("nan"), float("inf"), -float("inf"), -0.0, 10**100, -(2**64),
            {1: "a", None: "b", (1, "x"): "c", 2.5: "d", False: "e", frozenset({1}): "f", Point(1, 2.0): "g"},
            {"__durable__": "tuple", "v": [1, 2]},
            datetime(2024, 1, 1, 0, 0, 0, 1),
            datetime(2024, 5, 1, 12, 30, tzinfo=timezone(timedelta(hours=-9, minutes=-30))),
            datetime(1, 1, 1, tzinfo=timezone(timedelta(seconds=61))),
            datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone.utc),
            date(1, 1, 1), time(23, 59, 59, 999999), time(1, 2, tzinfo=timezone.utc),
            timedelta(days=-1, microseconds=1), b"", b"\x00\xff", Decimal("1.10"), Decimal("-0"), Decimal("-Infinity"),
            Decimal("NaN"), Decimal("1E+999999"), UUID(int=7),
            {1, "1"}, frozenset({(1, 2)}), (), [()], set(), frozenset(),
            "\ud800 lone surrogate", {"\udfff": ["\ud800"]}, Color.BLUE, TaskExecutionStatus.COMPLETED,
            pytest.param(datetime(2024, 1, 1, tzinfo=MICROSECOND_OFFSET), id="datetime-microsecond-offset"),
            pytest.param(time(12, tzinfo=MICROSECOND_OFFSET), id="time-microsecond-offset"),
        ],
        ids=repr,
    )
    def test_edge_values_round_trip(self, serializer: Serializer, value: Any) -> None:
        assert same(self.round_trip(serializer, value), value)

    def test_engine_result_types_round_trip(self, serializer: Serializer) -> None:
        error = ErrorInfo("timed_out", "Task execution timed out", is_retryable=True)
        value = [
            FinalizeInput(
                input={"n": 1},
                output=(1, 2),
                children=[
                    FinishedChildTaskExecution("child", "te_1", TaskExecutionStatus.COMPLETED, output={"ok": True}),
                    FinishedChildTaskExecution("child", "te_2", TaskExecutionStatus.FAILED, error=error),
                ],
            ),
            ExecutionRef("t", "te_3"),
            ParentRef("p", "te_4", 2, is_finalize_of_parent=True),
            RetryOptions(max_attempts=3, base_delay=1.0, delay_multiplier=2.0, max_delay=30.0),
            TaskExecutionStatus.WAITING_FOR_CHILDREN,
        ]
        result = self.round_trip(serializer, value)
        assert same(result, value)
        assert type(result[0].children[1].status) is TaskExecutionStatus

    def test_aware_datetimes_keep_their_offset_and_naive_ones_stay_naive(self, serializer: Serializer) -> None:
        from zoneinfo import ZoneInfo

        aware = datetime(2024, 7, 1, 12, 30, tzinfo=ZoneInfo("Europe/Paris"))
        result = self.round_trip(serializer, [aware, aware.replace(tzinfo=None)])
        assert result[0] == aware and result[0].utcoffset() == timedelta(hours=2)
        assert result[1].tzinfo is None

    # ----------------------------------------------------------------------------- size limits

    @pytest.mark.parametrize(
        "value",
        [bytes(range(256)) * 4096, "é" * 2**20, list(range(100_000)), {str(i): i for i in range(10_000)}],
        ids=["1 MiB of bytes", "1 Mi characters", "100k-item list", "10k-key dict"],
    )
    def test_large_values_round_trip(self, serializer: Serializer, value: Any) -> None:
        assert same(self.round_trip(serializer, value), value)

    @pytest.mark.parametrize("kind", NESTINGS)
    def test_values_nested_100_deep_round_trip(self, serializer: Serializer, kind: str) -> None:
        assert_nested(self.round_trip(serializer, nested(kind, 100)), kind, 100)

    @pytest.mark.parametrize("kind", NESTINGS)
    def test_the_deepest_value_it_writes_it_also_reads(self, serializer: Serializer, kind: str) -> None:
        """Too deep to write is a ``SerializationError``; anything written must be readable."""
        low, high = 1, 20_000  # ``low`` is writable, ``high`` is not
        with pytest.raises(SerializationError, match="nested too deeply"):
            serializer.serialize(nested(kind, high))
        while high - low > 1:
            middle = (low + high) // 2
            try:
                serializer.serialize(nested(kind, middle))
                low = middle
            except SerializationError:
                high = middle
        data = serializer.serialize(nested(kind, low))  # at the search's stack depth, where it fit
        assert_nested(serializer.deserialize(data), kind, low)

    @pytest.mark.parametrize("make", [lambda c: c.append(c), lambda c: c.append({"self": c})], ids=["list", "dict"])
    def test_a_reference_cycle_is_a_serialization_error(
        self, serializer: Serializer, make: Callable[[Any], None]
    ) -> None:
        cycle: list[Any] = []
        make(cycle)
        with pytest.raises(SerializationError, match="value is nested too deeply or contains a reference cycle"):
            serializer.serialize(cycle)

    # ----------------------------------------------------------------------------- errors

    def test_unsupported_value_names_its_type_and_place(self, serializer: Serializer) -> None:
        with pytest.raises(SerializationError) as caught:
            serializer.serialize({"a": [1, 2, object()]})
        assert caught.value.message == (
            f"value of type 'object' at ['a'][2] is not serializable by {serializer.name!r}; convert it to "
            "a supported type, or make it a dataclass registered with durable_core.register_serializable"
        )
        assert caught.value.is_retryable is False

    def test_unsupported_value_inside_a_registered_dataclass_shows_the_field(self, serializer: Serializer) -> None:
        with pytest.raises(SerializationError, match=r"^value of type 'complex' at \[0\]\.content\[1\] is not "):
            serializer.serialize([Box(content=(1, 2j))])

    def test_unsupported_value_under_a_non_str_key_shows_the_key(self, serializer: Serializer) -> None:
        with pytest.raises(SerializationError, match=r"^value of type 'object' at \[0\]\[\(1, 2\)\] is not "):
            serializer.serialize([{(1, 2): object()}])

    def test_unregistered_dataclass_asks_for_registration(self, serializer: Serializer) -> None:
        @dataclasses.dataclass
        class Unregistered:
            x: int

        with pytest.raises(SerializationError) as caught:
            serializer.serialize({"k": Unregistered(1)})
        assert caught.value.message == (
            "value of type 'SerializerConformance.test_unregistered_dataclass_asks_for_registration.<locals>."
            f"Unregistered' at ['k'] is not serializable by {serializer.name!r}; register its class with "
            "@durable_core.register_serializable"
        )

    @pytest.mark.parametrize(
        "value",
        [
            bytearray(b"x"), memoryview(b"x"), Level.LOW, collections.defaultdict(int), collections.OrderedDict(),
            type("Text", (str,), {})("x"), 1j, Color, str, {1: object()}, [range(3)],
        ],
        ids=repr,
    )
    def test_subclasses_and_other_unsupported_values_are_refused(self, serializer: Serializer, value: Any) -> None:
        """A subclass of a supported type is refused, never silently stored as its base type."""
        with pytest.raises(SerializationError, match=f"is not serializable by {serializer.name!r}"):
            serializer.serialize(value)

    def test_truncated_payload_is_a_serialization_error(self, serializer: Serializer) -> None:
        data = serializer.serialize({"a": [1, 2, 3], "b": "text"})
        with pytest.raises(SerializationError):
            serializer.deserialize(data[:-1])

    def test_payload_of_a_type_whose_fields_changed_is_a_serialization_error(self, serializer: Serializer) -> None:
        @dataclasses.dataclass
        class Before:
            x: int

        @dataclasses.dataclass
        class After:
            y: int

        name = f"durable_conformance:Changed{serializer.name}"
        register_serializable(Before, name=name)
        data = serializer.serialize(Before(1))
        register_serializable(After, name=name)
        with pytest.raises(SerializationError, match=f"cannot rebuild '{name}' from its stored state"):
            serializer.deserialize(data)
