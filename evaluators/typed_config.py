"""YAML mappings -> typed dataclasses, shared by every config in prefdisco (suites aside).

TRL-style configs: each knob is a typed dataclass field with a default. `build_dataclass` checks
types, converts ints to floats where a float is declared, builds nested dataclasses, and rejects
unknown keys by name — a typo must not silently fall back to a default. Each caller passes the
exception class its users should see (e.g. `discovery.errors.UserError` for the CLI).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any

import yaml


def build_dataclass(cls: type, data: Any, where: str = "", error: type[Exception] = ValueError) -> Any:
    """Instantiate dataclass ``cls`` from a mapping, checking keys and types recursively."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise error(f"{where or 'config'}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise error(f"{where or 'config'}: unknown key(s) {unknown}; known: {sorted(names)}")
    return cls(**{k: _coerce(hints[k], v, f"{where}.{k}" if where else k, error) for k, v in data.items()})


def _coerce(hint: Any, value: Any, path: str, error: type[Exception]) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return build_dataclass(hint, value, path, error)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        return _coerce([a for a in args if a is not type(None)][0], value, path, error)
    if origin is list:
        if not isinstance(value, list):
            raise error(f"{path}: expected a list")
        return [_coerce(args[0], v, f"{path}[{i}]", error) for i, v in enumerate(value)]
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
