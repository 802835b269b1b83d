"""The machinery under ponder's configuration: frozen dataclasses validated from nested dicts (TOML
recipes, `--section.key=value` overrides), with errors that name the key, the bad value and the allowed
values (and the closest known key for a typo). `ponder/config.py` declares the dataclasses; stages declare
their own with the same tools (`build_dataclass`, `check_choice`, `check_positive`).
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any

import tomllib


class ConfigError(ValueError):
    """A recipe or override that does not fit the schema; the message names the key."""


def check_choice(key: str, value: Any, allowed: tuple) -> None:
    """Raise ConfigError naming `key` unless `value` is one of `allowed`."""
    if value not in allowed:
        raise ConfigError(f"{key} = {value!r} is not allowed; choose one of {', '.join(map(repr, allowed))}")


def check_positive(key: str, value: float, allow_zero: bool = False) -> None:
    """Raise ConfigError naming `key` unless `value` > 0 (or >= 0 with `allow_zero`)."""
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{key} = {value!r} is not allowed; it must be {bound}")


def _closest(name: str, options: list[str]) -> str:
    near = difflib.get_close_matches(name, options, n=1, cutoff=0.5)
    return f" (did you mean '{near[0]}'?)" if near else ""


def _coerce(key: str, value: Any, typ: Any) -> Any:
    """Check (and gently convert) one value against a field's annotated type."""
    if dataclasses.is_dataclass(typ):  # a table inside a list or dict, e.g. task.mix[0], reward.models.x
        if isinstance(value, typ):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{key} = {value!r} is not allowed; it must be a table like {{name = ...}}")
        return build_dataclass(typ, value, f"{key}.")
    origin = typing.get_origin(typ)
    if origin in (typing.Union, types.UnionType):
        return value
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key} = {value!r} is not allowed; it must be a table like {{name = 1.0}}")
        _, vtyp = typing.get_args(typ)
        return {k: _coerce(f"{key}.{k}", v, vtyp) for k, v in value.items()}
    if typ is Any:
        return value
    if origin is list:
        (item_type,) = typing.get_args(typ)
        if not isinstance(value, list):
            raise ConfigError(f'{key} = {value!r} is not allowed; it must be a list like ["a", "b"]')
        return [_coerce(f"{key}[{i}]", v, item_type) for i, v in enumerate(value)]
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{key} = {value!r} is not allowed; it must be true or false")
    if typ is int:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ConfigError(f"{key} = {value!r} is not allowed; it must be an integer")
        try:
            return int(value)
        except ValueError:
            raise ConfigError(f"{key} = {value!r} is not allowed; it must be an integer") from None
    if typ is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key} = {value!r} is not allowed; it must be a number")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key} = {value!r} is not allowed; it must be a number") from None
    if typ is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} = {value!r} is not allowed; it must be a string")
        return value
    return value


def build_dataclass(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    """Validate a nested dict into the config dataclass `cls`; errors name the key as `prefix` + key."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        full = f"{prefix}{key}"
        if key not in names:
            raise ConfigError(f"unknown key '{full}'{_closest(key, names)}; known keys: {', '.join(names)}")
        typ = hints[key]
        if dataclasses.is_dataclass(typ):
            if not isinstance(value, dict):
                raise ConfigError(f"'{full}' must be a table ([{full}]), got {value!r}")
            kwargs[key] = build_dataclass(typ, value, f"{full}.")
        else:
            kwargs[key] = _coerce(full, value, typ)
    return cls(**kwargs)


def _parse_value(text: str) -> Any:
    """Parse an override value as TOML (numbers, booleans, strings, arrays, inline tables), else a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override '--{dotted}': '{part}' is a value, not a table")
    node[parts[-1]] = value


def parse_overrides(args: list[str]) -> dict[str, Any]:
    """Turn `--section.key=value` arguments into a nested dict (values parsed as TOML)."""
    data: dict[str, Any] = {}
    for arg in args:
        if not arg.startswith("--") or "=" not in arg:
            raise ConfigError(f"override {arg!r} must look like --section.key=value")
        dotted, text = arg[2:].split("=", 1)
        _set_path(data, dotted, _parse_value(text))
    return data


def merge_tables(base: dict[str, Any], extra: dict[str, Any], depth: int) -> dict[str, Any]:
    """`extra` merged into `base`; tables deeper than `depth` levels are replaced whole."""
    out = dict(base)
    for key, value in extra.items():
        if depth > 0 and isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_tables(out[key], value, depth - 1)
        else:
            out[key] = value
    return out


def read_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML file; a syntax error names the file and line."""
    path = Path(path)
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: {err}") from None
    except FileNotFoundError:
        raise ConfigError(f"recipe file not found: {path}") from None


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise ConfigError(f"cannot write {value!r} to TOML")
