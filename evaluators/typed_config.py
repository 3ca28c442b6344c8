"""YAML mappings -> typed dataclasses: the one loader of every config in prefdisco.

TRL-style configs: each knob is a typed dataclass field with a default and a comment saying why.
`build_dataclass` checks types, converts ints to floats where a float is declared, builds nested
dataclasses (and tuples/lists of them), checks ``Literal`` choices, and rejects unknown keys by
name — a typo must not silently fall back to a default. Config classes derive from `Config`, whose
``__post_init__`` checks the ``Literal`` choices and then the class's own ``check()``, so a bad
value is refused however the object is built (YAML or Python). Each caller passes the exception
class its users should see (e.g. `discovery.errors.UserError` for the CLI).
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from pathlib import Path
from typing import Any

import yaml


@functools.lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _choices(hint: Any) -> tuple | None:
    """The allowed values of a ``Literal[...]`` (or ``Literal[...] | None``) hint, else None."""
    if typing.get_origin(hint) is typing.Literal:
        return typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        for arg in typing.get_args(hint):
            if typing.get_origin(arg) is typing.Literal:
                return typing.get_args(arg) + ((None,) if type(None) in typing.get_args(hint) else ())
    return None


class Config:
    """Base of the config dataclasses: ``Literal`` fields must hold one of their choices, then
    ``check()`` (override it) validates values that depend on each other."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            choices = _choices(_hints(type(self))[f.name])
            value = getattr(self, f.name)
            if choices is not None and value not in choices:
                raise ValueError(f"{f.name}: {value!r} is not one of {', '.join(repr(c) for c in choices)}")
        self.check()

    def check(self) -> None:
        """Cross-field checks; raise ValueError with a message that names the fix."""


def build_dataclass(cls: type, data: Any, where: str = "", error: type[Exception] = ValueError) -> Any:
    """Instantiate dataclass ``cls`` from a mapping, checking keys, types and choices recursively."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise error(f"{where or 'config'}: expected a mapping, got {type(data).__name__}")
    hints = _hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise error(f"{where or 'config'}: unknown key(s) {unknown}; known: {sorted(names)}")
    values = {k: _coerce(hints[k], v, f"{where}.{k}" if where else k, error) for k, v in data.items()}
    try:
        return cls(**values)
    except ValueError as exc:  # Config.__post_init__ checks
        raise error(f"{where + ': ' if where else ''}{exc}") from None


def _coerce(hint: Any, value: Any, path: str, error: type[Exception]) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return value if isinstance(value, hint) else build_dataclass(hint, value, path, error)
    if origin is typing.Literal:
        if value not in args:
            raise error(f"{path}: {value!r} is not one of {', '.join(repr(a) for a in args)}")
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        return _coerce([a for a in args if a is not type(None)][0], value, path, error)
    if origin is list:
        if not isinstance(value, list):
            raise error(f"{path}: expected a list")
        return [_coerce(args[0], v, f"{path}[{i}]", error) for i, v in enumerate(value)]
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise error(f"{path}: expected a list")
        item = args[0] if len(args) == 2 and args[1] is Ellipsis else None
        if item is None:
            return tuple(_coerce(a, v, f"{path}[{i}]", error) for i, (a, v) in enumerate(zip(args, value)))
        return tuple(_coerce(item, v, f"{path}[{i}]", error) for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise error(f"{path}: expected a mapping")
        return dict(value)
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint in (int, str, bool) and not isinstance(value, hint):
        raise error(f"{path}: expected {hint.__name__}, got {value!r}")
    return value


def read_yaml_file(path: str | Path, *, what: str, example: str, error: type[Exception] = ValueError) -> Any:
    """Parse a YAML file, with one-line errors that say what was expected and where an example is."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{what} {path} not found; pass a YAML file such as {example}")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise error(f"{path}: invalid YAML ({str(exc).splitlines()[0]})") from None
