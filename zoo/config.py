"""Dataclass configs: to/from JSON-able dicts and ``--set key=value`` overrides.

Configs are plain stdlib dataclasses. Nothing is ever exec'd or unpickled: values are parsed
according to the field's declared type.
"""
from __future__ import annotations

import dataclasses
import json
import typing
from typing import Any

from .errors import ZooError


def check_choice(what: str, value: str, choices: tuple[str, ...]) -> None:
    """One-line ZooError unless ``value`` is one of ``choices`` (``what`` names the setting)."""
    if value not in choices:
        raise ZooError(f"unknown {what} {value!r} (choose {', '.join(choices)})")


def to_dict(cfg: Any) -> dict:
    """A JSON-able dict of a dataclass (tuples become lists)."""
    return dataclasses.asdict(cfg)


def _coerce(name: str, tp: Any, value: Any) -> Any:
    """Convert a JSON value or a command-line string to the field's type, or raise ZooError."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
        return _coerce_union(name, args, value)
    if origin is typing.Literal:
        return _coerce_literal(name, args, value)
    if origin in (tuple, list):
        return _coerce_sequence(name, origin, args, value)
    if origin is dict:
        return _coerce_dict(name, value)
    return _coerce_scalar(name, tp, value)


def _coerce_union(name: str, args: tuple, value: Any) -> Any:
    """``A | B | None``: None for None, "none" or "null" where None is allowed, else the first type that takes it."""
    if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
        if type(None) in args:
            return None
    for a in args:
        if a is type(None):
            continue
        try:
            return _coerce(name, a, value)
        except ZooError:
            pass
    raise ZooError(f"bad value for {name!r}: {value!r}")


def _coerce_literal(name: str, args: tuple, value: Any) -> Any:
    """``Literal[...]``: the choice whose text equals the value's."""
    for a in args:
        if str(a) == str(value):
            return a
    raise ZooError(f"bad value for {name!r}: {value!r} (choose from {', '.join(map(str, args))})")


def _coerce_sequence(name: str, origin: type, args: tuple, value: Any) -> list | tuple:
    """``tuple[X, ...]`` or ``list[X]`` from a list or a comma-separated string, each item as X."""
    if isinstance(value, str):
        value = [v for v in value.replace(" ", "").strip("()[]").split(",") if v != ""]
    if not isinstance(value, (list, tuple)):
        raise ZooError(f"bad value for {name!r}: {value!r} (expected a list)")
    item = args[0] if args else str
    out = [_coerce(name, item, v) for v in value]
    return tuple(out) if origin is tuple else out


def _coerce_dict(name: str, value: Any) -> dict:
    """``dict[...]`` from an object or a JSON string of one."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise ZooError(f"bad value for {name!r}: {value!r} (expected JSON object)") from None
    if not isinstance(value, dict):
        raise ZooError(f"bad value for {name!r}: {value!r} (expected an object)")
    return dict(value)


def _coerce_scalar(name: str, tp: Any, value: Any) -> Any:
    """bool, int, float or str from a JSON value or a string; any other type takes the value as it is."""
    if tp is bool:
        return _coerce_bool(name, value)
    if tp is int:
        return _coerce_int(name, value)
    if tp is float:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ZooError(f"bad value for {name!r}: {value!r} (expected a number)") from None
    if tp is str:
        return str(value)
    return value


def _coerce_bool(name: str, value: Any) -> bool:
    """A bool, or one of 1/true/yes/on and 0/false/no/off (any case)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
        return True
    if isinstance(value, str) and value.lower() in ("0", "false", "no", "off"):
        return False
    raise ZooError(f"bad value for {name!r}: {value!r} (expected true/false)")


def _coerce_int(name: str, value: Any) -> int:
    """An int (not a bool), or a number or string with an integer value ("3", 3.0, "1e3")."""
    if isinstance(value, bool):
        raise ZooError(f"bad value for {name!r}: {value!r} (expected an integer)")
    if isinstance(value, int):
        return value
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise ZooError(f"bad value for {name!r}: {value!r} (expected an integer)") from None
    if not f.is_integer():
        raise ZooError(f"bad value for {name!r}: {value!r} (expected an integer)")
    return int(f)


def from_dict(cls: type, data: dict) -> Any:
    """Build dataclass ``cls`` from a dict; unknown keys and bad values raise ZooError."""
    if not isinstance(data, dict):
        raise ZooError(f"config for {cls.__name__} must be an object")
    data = _without_removed_fields(cls, data)
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ZooError(f"unknown config key(s) for {cls.__name__}: {', '.join(unknown)}")
    kwargs = {k: _coerce(k, hints[k], v) for k, v in data.items()}
    return cls(**kwargs)


def _without_removed_fields(cls: type, data: dict) -> dict:
    """``data`` less the fields that ``cls.removed_fields`` names (a class attribute: field -> the
    values that meant "unused"), which older records still carry; a one-line ZooError for such a
    field holding any other value."""
    removed = getattr(cls, "removed_fields", {})
    for key, unused in removed.items():
        if key in data and data[key] not in unused:
            raise ZooError(f"config field {key!r} is no longer supported (got {data[key]!r}; "
                           f"only {' or '.join(map(repr, unused))} still reads)")
    return {k: v for k, v in data.items() if k not in removed}


def apply_overrides(cfg: Any, overrides: dict[str, str]) -> Any:
    """Return a copy of ``cfg`` with string overrides parsed by field type."""
    hints = typing.get_type_hints(type(cfg))
    names = [f.name for f in dataclasses.fields(cfg)]
    changes = {}
    for key, value in overrides.items():
        if key not in names:
            raise ZooError(f"unknown key {key!r} for {type(cfg).__name__} (known: {', '.join(names)})")
        changes[key] = _coerce(key, hints[key], value)
    return dataclasses.replace(cfg, **changes)


def parse_sets(items: typing.Iterable[str]) -> dict[str, str]:
    """Parse ``key=value`` strings (from ``--set``) into a dict, rejecting malformed ones."""
    out = {}
    for item in items:
        if "=" not in item:
            raise ZooError(f"bad --set {item!r}: expected key=value")
        k, v = item.split("=", 1)
        k = k.strip()
        if not k:
            raise ZooError(f"bad --set {item!r}: empty key")
        out[k] = v.strip()
    return out


def parse_value(v: str) -> Any:
    """A command-line value as int, float, bool or str (for free-form sampler options)."""
    for conv in (int, float):
        try:
            return conv(v)
        except ValueError:
            pass
    if v.lower() in ("true", "false"):
        return v.lower() == "true"
    return v


def parse_opts(items: typing.Iterable[str]) -> dict[str, Any]:
    """``key=value`` strings (``--opt``) into a dict of typed values (int, float, bool or str)."""
    return {k: parse_value(v) for k, v in parse_sets(items).items()}


def split_sets(items: typing.Iterable[str]) -> tuple[dict[str, str], dict[str, str]]:
    """``--set`` items split into (model fields, trainer fields): ``train.KEY=V`` goes to the trainer."""
    kv = parse_sets(items)
    model = {k: v for k, v in kv.items() if not k.startswith("train.")}
    train = {k[6:]: v for k, v in kv.items() if k.startswith("train.")}
    return model, train
