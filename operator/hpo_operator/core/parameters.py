"""Parameters of the search space: their dataclasses and their parsing from the manifest."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from ._fields import Errors, boolean, integer, mapping, number, string, type_name, unknown

PARAM_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
MAX_CHOICE_LENGTH = 253
MAX_GRID_SIZE = 1_000_000

Scalar = bool | int | float | str


@dataclass(frozen=True)
class IntParam:
    name: str
    min: int
    max: int
    step: int = 1
    log: bool = False


@dataclass(frozen=True)
class FloatParam:
    name: str
    min: float
    max: float
    step: float | None = None
    log: bool = False


@dataclass(frozen=True)
class ChoiceParam:
    """`values` (any scalars, e.g. batch sizes) or `categorical` (strings)."""

    name: str
    choices: tuple[Scalar, ...]
    kind: Literal["values", "categorical"] = "values"


Parameter = IntParam | FloatParam | ChoiceParam


PARAM_TYPES = ("int", "float", "values", "categorical")


def _parse_parameter(raw: object, path: str, errs: Errors) -> Parameter | None:
    data = mapping(raw, path, errs)
    if not isinstance(raw, Mapping):
        return None
    name = string(data.get("name"), f"{path}.name", errs)
    if name is not None and not PARAM_NAME_RE.match(name):
        errs.add(
            f"{path}.name",
            f"{name!r} is not a valid parameter name; use letters, digits, '_', '.', '-', "
            "starting with a letter or '_'",
        )
    kinds = [k for k in PARAM_TYPES if k in data]
    unknown(data, ("name", *PARAM_TYPES), path, errs)
    if len(kinds) != 1:
        found = ", ".join(kinds) if kinds else "none"
        errs.add(path, f"needs exactly one of int, float, values, categorical; found {found}")
        return None
    if name is None:
        return None
    kind = kinds[0]
    sub = f"{path}.{kind}"
    if kind == "int":
        return _parse_int_param(name, data["int"], sub, errs)
    if kind == "float":
        return _parse_float_param(name, data["float"], sub, errs)
    return _parse_choices(name, data[kind], sub, kind, errs)


def _parse_int_param(name: str, raw: object, path: str, errs: Errors) -> IntParam | None:
    data = mapping(raw, path, errs)
    if not isinstance(raw, Mapping):
        return None
    unknown(data, ("min", "max", "step", "log"), path, errs)
    low = integer(data.get("min"), f"{path}.min", errs)
    high = integer(data.get("max"), f"{path}.max", errs)
    step = integer(data.get("step"), f"{path}.step", errs, minimum=1, default=1)
    log = boolean(data.get("log"), f"{path}.log", errs)
    if low is None or high is None or step is None:
        return None
    ok = True
    if low >= high:
        errs.add(path, f"min ({low}) must be less than max ({high})")
        ok = False
    if log and step != 1:
        errs.add(path, f"log: true needs step 1, got step {step}")
        ok = False
    if log and low < 1:
        errs.add(f"{path}.min", f"log: true needs min >= 1, got {low}")
        ok = False
    if ok and (high - low) % step:
        errs.add(
            f"{path}.step",
            f"max - min ({high - low}) must be a multiple of step ({step}) so max is reachable",
        )
        ok = False
    return IntParam(name, low, high, step, log) if ok else None


def _parse_float_param(name: str, raw: object, path: str, errs: Errors) -> FloatParam | None:
    data = mapping(raw, path, errs)
    if not isinstance(raw, Mapping):
        return None
    unknown(data, ("min", "max", "step", "log"), path, errs)
    low = number(data.get("min"), f"{path}.min", errs)
    high = number(data.get("max"), f"{path}.max", errs)
    step = number(data.get("step"), f"{path}.step", errs, required=False)
    log = boolean(data.get("log"), f"{path}.log", errs)
    if low is None or high is None:
        return None
    ok = True
    if low >= high:
        errs.add(path, f"min ({low:g}) must be less than max ({high:g})")
        ok = False
    if log and low <= 0:
        errs.add(f"{path}.min", f"log: true needs min > 0, got {low:g}")
        ok = False
    if step is not None:
        if step <= 0:
            errs.add(f"{path}.step", f"must be > 0, got {step:g}")
            ok = False
        elif log:
            errs.add(path, "step and log: true cannot be combined; drop one of them")
            ok = False
    return FloatParam(name, low, high, step, log) if ok else None


def _parse_choices(
    name: str, raw: object, path: str, kind: str, errs: Errors
) -> ChoiceParam | None:
    if not isinstance(raw, list) or not raw:
        errs.add(path, f"must be a non-empty list, got {type_name(raw)} {raw!r}")
        return None
    ok = True
    seen: list[Scalar] = []
    for i, value in enumerate(raw):
        where = f"{path}[{i}]"
        if kind == "categorical" and not isinstance(value, str):
            errs.add(where, f"must be a string, got {type_name(value)} {value!r}")
            ok = False
        elif not isinstance(value, bool | int | float | str):
            errs.add(where, f"must be a number, string or boolean, got {type_name(value)}")
            ok = False
        elif isinstance(value, float) and not math.isfinite(value):
            errs.add(where, f"must be finite, got {value}")
            ok = False
        elif isinstance(value, str) and len(value) > MAX_CHOICE_LENGTH:
            errs.add(where, f"is {len(value)} characters; at most {MAX_CHOICE_LENGTH}")
            ok = False
        elif any(value == s for s in seen):
            # 1, 1.0 and true are one choice to the search (Optuna finds choices by ==).
            same = next(s for s in seen if value == s)
            again = "is listed twice" if repr(same) == repr(value) else f"equals {same!r}"
            errs.add(where, f"{value!r} {again}; values must be unique")
            ok = False
        else:
            seen.append(value)
    choice_kind: Literal["values", "categorical"] = (
        "categorical" if kind == "categorical" else "values"
    )
    return ChoiceParam(name, tuple(seen), choice_kind) if ok else None


def grid_size(parameters: Sequence[Parameter]) -> int | None:
    """Number of grid points, or None when a parameter is continuous."""
    size = 1
    for p in parameters:
        if isinstance(p, IntParam):
            size *= (p.max - p.min) // p.step + 1
        elif isinstance(p, FloatParam):
            if p.step is None:
                return None
            size *= math.floor((p.max - p.min) / p.step + 1e-9) + 1
        else:
            size *= len(p.choices)
    return size


def parse_parameters(raw: object, errs: Errors) -> list[Parameter]:
    path = "spec.parameters"
    if not isinstance(raw, list) or not raw:
        errs.add(path, f"must be a non-empty list of parameters, got {type_name(raw)}")
        return []
    params: list[Parameter] = []
    names: dict[str, int] = {}
    for i, item in enumerate(raw):
        param = _parse_parameter(item, f"{path}[{i}]", errs)
        if param is None:
            continue
        if param.name in names:
            errs.add(
                f"{path}[{i}].name",
                f"{param.name!r} is already used by {path}[{names[param.name]}]; "
                "names must be unique",
            )
            continue
        names[param.name] = i
        params.append(param)
    return params if len(params) == len(raw) else []


def check_grid(params: Sequence[Parameter], size: int | None, errs: Errors) -> None:
    for i, p in enumerate(params):
        if isinstance(p, FloatParam) and p.step is None:
            errs.add(
                f"spec.parameters[{i}].float",
                "grid search needs a finite set of values: give float.step, or use values: [...]",
            )
    if size is not None and size > MAX_GRID_SIZE:
        errs.add("spec.parameters", f"the grid has {size} points; at most {MAX_GRID_SIZE}")
