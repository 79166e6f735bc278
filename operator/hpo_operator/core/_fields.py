"""Field checks for manifest parsing: each adds a (path, message) error and returns a usable
value (or None), so that one pass over a manifest reports every problem at once."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any


class Errors:
    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []

    def add(self, path: str, message: str) -> None:
        self.items.append((path, message))


def type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


def mapping(raw: object, path: str, errs: Errors, required: bool = True) -> Mapping[str, Any]:
    if raw is None and not required:
        return {}
    if not isinstance(raw, Mapping):
        errs.add(path, f"must be an object, got {type_name(raw)}")
        return {}
    return raw


def unknown(raw: Mapping[str, Any], allowed: Sequence[str], path: str, errs: Errors) -> None:
    for key in raw:
        if key not in allowed:
            errs.add(f"{path}.{key}", f"unknown field; expected one of: {', '.join(allowed)}")


def integer(
    raw: object, path: str, errs: Errors, minimum: int | None = None, default: int | None = None
) -> int | None:
    if raw is None:
        if default is None:
            errs.add(path, "is required (an integer)")
        return default
    if isinstance(raw, bool) or not isinstance(raw, int):
        errs.add(path, f"must be an integer, got {type_name(raw)} {raw!r}")
        return default
    if minimum is not None and raw < minimum:
        errs.add(path, f"must be >= {minimum}, got {raw}")
        return default
    return raw


def number(raw: object, path: str, errs: Errors, required: bool = True) -> float | None:
    if raw is None:
        if required:
            errs.add(path, "is required (a number)")
        return None
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        errs.add(path, f"must be a number, got {type_name(raw)} {raw!r}")
        return None
    if not math.isfinite(raw):
        errs.add(path, f"must be a finite number, got {raw}")
        return None
    return float(raw)


def boolean(raw: object, path: str, errs: Errors) -> bool:
    if raw is None:
        return False
    if not isinstance(raw, bool):
        errs.add(path, f"must be true or false, got {type_name(raw)} {raw!r}")
        return False
    return raw


def string(
    raw: object,
    path: str,
    errs: Errors,
    default: str | None = None,
    choices: Sequence[str] | None = None,
) -> str | None:
    if raw is None:
        if default is None:
            errs.add(path, "is required (a string)")
        return default
    if not isinstance(raw, str) or not raw:
        errs.add(path, f"must be a non-empty string, got {type_name(raw)} {raw!r}")
        return default
    if choices is not None and raw not in choices:
        errs.add(path, f"must be one of {', '.join(choices)}; got {raw!r}")
        return default
    return raw
