"""The built-in ``durable_input_validator``: dataclasses and pydantic, errors naming the field."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal, Optional

import pydantic
import pytest

from durable_core.plugins.builtin_validation import durable_input_validator


@dataclasses.dataclass
class Size:
    width: int
    height: float = 1.0


@dataclasses.dataclass
class Upload:
    url: str
    size: int
    sizes: list[Size] = dataclasses.field(default_factory=list)
    thumbnail: Size | None = None
    tags: dict[str, int] = dataclasses.field(default_factory=dict)
    mode: Literal["fast", "safe"] = "safe"
    public: bool = False
    note: Optional[str] = None  # noqa: UP045 - the spelling users still write
    extra: Any = None


@dataclasses.dataclass
class Node:
    name: str
    children: list[Node] = dataclasses.field(default_factory=list)


def validate(schema: Any, value: Any) -> Any:
    validator = durable_input_validator(schema=schema, task_id="upload")
    assert validator is not None
    return validator(value)


def invalid(schema: Any, value: Any) -> str:
    with pytest.raises(ValueError) as caught:
        validate(schema, value)
    return str(caught.value)


def test_a_dict_becomes_the_dataclass_with_nested_fields_converted() -> None:
    result = validate(Upload, {
        "url": "s3://a", "size": 3, "sizes": [{"width": 1}], "thumbnail": {"width": 2, "height": 3},
        "tags": {"a": 1}, "mode": "fast", "extra": object,
    })
    assert result == Upload(
        url="s3://a", size=3, sizes=[Size(1)], thumbnail=Size(2, 3.0), tags={"a": 1}, mode="fast", extra=object
    )
    assert type(result.thumbnail.height) is float


def test_an_instance_passes_as_is() -> None:
    upload = Upload(url="u", size=1)
    assert validate(Upload, upload) is upload


def test_self_referencing_dataclasses_validate() -> None:
    assert validate(Node, {"name": "a", "children": [{"name": "b"}]}) == Node("a", [Node("b")])
    assert invalid(Node, {"name": "a", "children": [{"name": 1}]}) == "field 'children[0].name': expected str, got int"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"url": "u", "size": "3"}, "field 'size': expected int, got str"),
        ({"url": "u", "size": True}, "field 'size': expected int, got bool"),
        ({"url": "u"}, "field 'size' is required"),
        ({"url": "u", "size": 1, "colour": 1}, "unknown field 'colour'"),
        ({"url": "u", "size": 1, "tag": {}}, "unknown field 'tag' (did you mean 'tags'?)"),
        ({"url": "u", "size": 1, "sizes": [{"width": 1.5}]}, "field 'sizes[0].width': expected int, got float"),
        ({"url": "u", "size": 1, "sizes": [{"width": 1, "depth": 2}]}, "unknown field 'sizes[0].depth'"),
        ({"url": "u", "size": 1, "thumbnail": {"height": 2}}, "field 'thumbnail.width' is required"),
        ({"url": "u", "size": 1, "thumbnail": 5}, "field 'thumbnail': expected Size or a dict of its fields, got int"),
        ({"url": "u", "size": 1, "tags": {"a": "1"}}, "field \"tags['a']\": expected int, got str"),
        ({"url": "u", "size": 1, "tags": []}, "field 'tags': expected dict, got list"),
        ({"url": "u", "size": 1, "sizes": ()}, "field 'sizes': expected list, got tuple"),
        ({"url": "u", "size": 1, "mode": "slow"}, "field 'mode': expected one of 'fast', 'safe', got 'slow'"),
        ({"url": "u", "size": 1, "public": 1}, "field 'public': expected bool, got int"),
        ({"url": "u", "size": 1, "note": 2}, "field 'note': expected str, got int"),
        (["u", 1], "input: expected Upload or a dict of its fields, got list"),
    ],
)
def test_dataclass_errors_name_the_field(value: Any, message: str) -> None:
    assert invalid(Upload, value) == message


def test_optional_fields_accept_none() -> None:
    assert validate(Upload, {"url": "u", "size": 1, "thumbnail": None, "note": None}).thumbnail is None


def test_unions_of_several_types_name_them_all() -> None:
    @dataclasses.dataclass
    class Either:
        value: int | str

    assert validate(Either, {"value": "x"}) == Either("x")
    assert invalid(Either, {"value": 1.5}) == "field 'value': expected int | str, got float"


def test_unresolvable_annotations_fail_when_the_task_is_defined() -> None:
    @dataclasses.dataclass
    class Broken:
        value: NotDefinedAnywhere  # noqa: F821

    with pytest.raises(NameError, match="NotDefinedAnywhere"):
        durable_input_validator(schema=Broken, task_id="t")


class Thumbnail(pydantic.BaseModel):
    width: int


class Image(pydantic.BaseModel):
    size: int
    thumbnails: list[Thumbnail] = []


def test_pydantic_models_validate_into_instances() -> None:
    image = validate(Image, {"size": "3", "thumbnails": [{"width": 2}]})
    assert image == Image(size=3, thumbnails=[Thumbnail(width=2)])


def test_pydantic_errors_name_the_field_path() -> None:
    assert invalid(Image, {"size": "big", "thumbnails": [{"width": 1}, {}]}) == (
        "× Input should be a valid integer, unable to parse string as an integer\n  → at size\n"
        "× Field required\n  → at thumbnails[1].width"
    )


def test_pydantic_type_adapters_and_dataclasses_are_recognised() -> None:
    assert validate(pydantic.TypeAdapter(list[int]), ["1", 2]) == [1, 2]
    assert invalid(pydantic.TypeAdapter(list[int]), [1, "x"]).endswith("\n  → at [1]")

    @pydantic.dataclasses.dataclass
    class Point:
        x: int

    assert validate(Point, {"x": "4"}) == Point(x=4)
    assert invalid(Point, {"x": "no"}).endswith("→ at x")


def test_pydantic_errors_about_the_whole_input_have_no_location() -> None:
    assert invalid(Image, 5) == "× Input should be a valid dictionary or instance of Image"


def test_unknown_schemas_are_left_to_other_plugins() -> None:
    assert durable_input_validator(schema=int, task_id="t") is None
    assert durable_input_validator(schema=Size(1), task_id="t") is None  # an instance, not a schema
