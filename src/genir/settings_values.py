"""Typing and checking a setting's value against its declared field: the part of :mod:`genir.settings` that
knows no group."""

from __future__ import annotations

import math
import types
import typing
from collections.abc import Mapping
from typing import Any


class SettingsError(ValueError):
    """A setting that does not exist or does not fit its declared type; the message names the key."""


def _type_name(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return " or ".join(_type_name(a) for a in inner) + (" or none" if len(inner) < len(args) else "")
    if origin in (list, tuple):
        return f"a list of {_type_name(args[0])}" if args else "a list"
    return {bool: "true/false", int: "an integer", float: "a number", str: "text"}.get(tp, str(tp))


def coerce(tp: Any, value: Any, key: str, choices: tuple = (), meta: Mapping[str, Any] | None = None) -> Any:
    """``value`` (a parsed YAML/JSON value, or the text of a --set) as type ``tp``, or a SettingsError."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        inner = [a for a in args if a is not type(None)]
        return coerce(inner[0], value, key, choices, meta)
    bad = SettingsError(f"{key}: expected {_type_name(tp)}, got {value!r}"
                        + (f" (one of: {', '.join(map(str, choices))})" if choices else ""))
    if origin in (list, tuple):
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)):
            raise bad
        items = [i.strip() if isinstance(i, str) else i for i in items if i != ""]
        out = [coerce(args[0], i, key, meta=meta) for i in items]
        return tuple(out) if origin is tuple else out
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise bad
    try:
        if tp is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            out = int(value)
        elif tp is float:
            if isinstance(value, bool):
                raise ValueError
            out = float(value)
        elif tp is str:
            if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                raise ValueError
            out = str(value)
        else:
            out = value
    except (TypeError, ValueError):
        raise bad from None
    if choices and out not in choices:
        raise SettingsError(f"{key}: {out!r} is not one of: {', '.join(map(str, choices))}")
    if tp in (int, float):
        check_range(out, key, meta or {})
    return out


def check_range(value: float, key: str, meta: Mapping[str, Any]) -> None:
    """Finite, and within the field's declared range (non-negative when none is declared)."""
    if not math.isfinite(value):
        raise SettingsError(f"{key}: expected a finite number, got {value!r}")
    if "gt" in meta and not value > meta["gt"]:
        raise SettingsError(f"{key}: must be greater than {meta['gt']}, got {value!r}")
    low = meta.get("ge", None if "gt" in meta or meta.get("signed") else 0)
    if low is not None and value < low:
        raise SettingsError(f"{key}: must be at least {low}, got {value!r}")
    if "lt" in meta and not value < meta["lt"]:
        raise SettingsError(f"{key}: must be less than {meta['lt']}, got {value!r}")
    if "le" in meta and value > meta["le"]:
        raise SettingsError(f"{key}: must be at most {meta['le']}, got {value!r}")
