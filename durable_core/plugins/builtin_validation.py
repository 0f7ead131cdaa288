"""Built-in plugin ``validation``: ``input_schema`` as a dataclass, a pydantic model or TypeAdapter.

Validators raise ``ValueError`` naming the offending field; the engine turns that into a
non-retryable "Invalid input to task <id>: ..." failure. pydantic is optional and never imported
here: a schema that is a pydantic type means pydantic is already in ``sys.modules``.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import sys
import types
import typing
from collections.abc import Callable
from typing import Any

from . import hookimpl

Converter = Callable[[Any, str], Any]
"""Checks (and converts) a value found at a field path, raising ``ValueError`` naming it."""


@hookimpl
def durable_input_validator(schema: Any, task_id: str) -> Callable[[Any], Any] | None:
    adapter = _pydantic_adapter(schema)
    if adapter is not None:
        return functools.partial(_validate_pydantic, adapter)
    if isinstance(schema, type) and dataclasses.is_dataclass(schema):
        validate = _DataclassInput(schema)
        _ = validate.fields  # resolve the annotations now: a bad one fails the task definition
        return validate
    return None


# ----------------------------------------------------------------------------- dataclasses


def _where(path: str) -> str:
    return f"field {path!r}" if path else "input"


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _type_name(tp: Any) -> str:
    if isinstance(tp, type) and typing.get_origin(tp) is None:
        return tp.__qualname__
    return str(tp).replace("typing.", "")


def _mismatch(path: str, expected: str, value: Any) -> ValueError:
    return ValueError(f"{_where(path)}: expected {expected}, got {type(value).__qualname__}")


class _DataclassInput:
    """A dict of fields → an instance of ``cls``; an instance passes as is."""

    def __init__(self, cls: type):
        self.cls = cls

    @functools.cached_property
    def fields(self) -> dict[str, tuple[Converter, bool]]:
        """Each ``init`` field's converter and whether it is required (built lazily, so that a
        dataclass may refer to itself)."""
        hints = typing.get_type_hints(self.cls, include_extras=True)
        return {
            field.name: (
                _converter(hints.get(field.name, Any)),
                field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING,
            )
            for field in dataclasses.fields(self.cls)
            if field.init
        }

    def __call__(self, value: Any, path: str = "") -> Any:
        if isinstance(value, self.cls):
            return value
        if not isinstance(value, dict):
            raise _mismatch(path, f"{self.cls.__qualname__} or a dict of its fields", value)
        for name in value:
            if name not in self.fields:
                close = difflib.get_close_matches(str(name), self.fields, n=1, cutoff=0.75)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ValueError(f"unknown field {_join(path, str(name))!r}{hint}")
        kwargs = {}
        for name, (convert, required) in self.fields.items():
            if name in value:
                kwargs[name] = convert(value[name], _join(path, name))
            elif required:
                raise ValueError(f"field {_join(path, name)!r} is required")
        return self.cls(**kwargs)


def _converter(tp: Any) -> Converter:
    """The converter for one annotation: simple types are checked, anything else accepted."""
    if tp is Any:
        return _accept
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Annotated:
        return _converter(args[0])
    if origin in (typing.Union, types.UnionType):
        return _union(tp, args)
    if origin is typing.Literal:
        return _literal(args)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _DataclassInput(tp)
    if tp is float:
        return _float
    if tp is int:
        return _int
    if origin is list and args:
        return _list(_converter(args[0]))
    if origin is dict and args:
        return _dict(_converter(args[0]), _converter(args[1]))
    if isinstance(origin or tp, type):
        return _instance_of(origin or tp, _type_name(tp))
    return _accept


def _accept(value: Any, path: str) -> Any:
    return value


def _int(value: Any, path: str) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise _mismatch(path, "int", value)


def _float(value: Any, path: str) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise _mismatch(path, "float", value)


def _instance_of(cls: type, expected: str) -> Converter:
    def convert(value: Any, path: str) -> Any:
        if isinstance(value, cls):
            return value
        raise _mismatch(path, expected, value)

    return convert


def _list(item: Converter) -> Converter:
    def convert(value: Any, path: str) -> Any:
        if not isinstance(value, list):
            raise _mismatch(path, "list", value)
        return [item(element, f"{path}[{index}]") for index, element in enumerate(value)]

    return convert


def _dict(key: Converter, item: Converter) -> Converter:
    def convert(value: Any, path: str) -> Any:
        if not isinstance(value, dict):
            raise _mismatch(path, "dict", value)
        return {key(k, f"{path}[{k!r}]"): item(v, f"{path}[{k!r}]") for k, v in value.items()}

    return convert


def _union(tp: Any, args: tuple[Any, ...]) -> Converter:
    optional = type(None) in args
    alternatives = [_converter(arg) for arg in args if arg is not type(None)]

    def convert(value: Any, path: str) -> Any:
        if value is None and optional:
            return None
        errors = []
        for alternative in alternatives:
            try:
                return alternative(value, path)
            except ValueError as exc:
                errors.append(exc)
        if len(errors) == 1:  # Optional[X]: X's own error says more
            raise errors[0]
        raise _mismatch(path, _type_name(tp), value)

    return convert


def _literal(allowed: tuple[Any, ...]) -> Converter:
    def convert(value: Any, path: str) -> Any:
        if any(value == option and type(value) is type(option) for option in allowed):
            return value
        raise ValueError(f"{_where(path)}: expected one of {', '.join(map(repr, allowed))}, got {value!r}")

    return convert


# ----------------------------------------------------------------------------- pydantic


def _pydantic_adapter(schema: Any) -> Any:
    """A ``pydantic.TypeAdapter`` for a pydantic model, dataclass or adapter; else None."""
    pydantic = sys.modules.get("pydantic")
    if pydantic is None:
        return None
    if isinstance(schema, pydantic.TypeAdapter):
        return schema
    if isinstance(schema, type) and (
        issubclass(schema, pydantic.BaseModel) or pydantic.dataclasses.is_pydantic_dataclass(schema)
    ):
        return pydantic.TypeAdapter(schema)
    return None


def _validate_pydantic(adapter: Any, value: Any) -> Any:
    import pydantic

    try:
        return adapter.validate_python(value)
    except pydantic.ValidationError as exc:
        raise ValueError("\n".join(map(_format_pydantic_error, exc.errors()))) from exc


def _format_pydantic_error(error: Any) -> str:
    """``× message`` and, below it, ``→ at items[0].size`` when the error is inside the input."""
    path = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in error["loc"])
    return f"× {error['msg']}" + (f"\n  → at {path.removeprefix('.')}" if path else "")
