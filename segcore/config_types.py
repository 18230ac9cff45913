"""Type checks of config dataclass fields against their annotations.

Configs arrive as flat dicts from command lines, JSON and search spaces, so a
value of the wrong type (``epochs="abc"``) must fail with the field's name
instead of a traceback from deep inside the code that uses it.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(arg) for arg in typing.get_args(hint))
    if origin is tuple:
        args = typing.get_args(hint)
        inner = args[0] if args else Any
        return f"a list of {_describe(inner).removeprefix('an ').removeprefix('a ')}s"
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false", type(None): "null"}
    if hint in names:
        return names[hint]
    if origin is not None and issubclass(origin, Mapping):
        return "a mapping"
    return f"a {getattr(hint, '__name__', hint)}"


def matches(value: Any, hint: Any) -> bool:
    """Return whether ``value`` fits the type annotation ``hint`` (lists count as tuples)."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(matches(value, arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, (tuple, list)):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(matches(item, args[0]) for item in value)
        return len(value) == len(args) and all(matches(item, arg) for item, arg in zip(value, args, strict=True))
    if origin is not None and isinstance(origin, type) and issubclass(origin, Mapping):
        return isinstance(value, Mapping)
    return isinstance(value, origin or hint)


def check_field_types(instance: Any, error: type[Exception]) -> None:
    """Raise ``error`` naming the first field of a dataclass whose value does not fit its annotation."""
    hints = typing.get_type_hints(type(instance))
    for field in dataclasses.fields(instance):
        value = getattr(instance, field.name)
        if not matches(value, hints[field.name]):
            raise error(f"{field.name} must be {_describe(hints[field.name])}, got {value!r}")
