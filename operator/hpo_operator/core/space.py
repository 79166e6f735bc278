"""Parameter spaces: Optuna distributions, grid enumeration, and config.json values."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from .spec import FloatParam, IntParam, Parameter, Scalar


def distribution(param: Parameter) -> BaseDistribution:
    if isinstance(param, IntParam):
        return IntDistribution(param.min, param.max, log=param.log, step=param.step)
    if isinstance(param, FloatParam):
        return FloatDistribution(param.min, param.max, log=param.log, step=param.step)
    return CategoricalDistribution(param.choices)


def distributions(params: Sequence[Parameter]) -> dict[str, BaseDistribution]:
    return {p.name: distribution(p) for p in params}


def axis(param: Parameter) -> list[Scalar]:
    """Every value a discrete parameter can take, in increasing (or listed) order."""
    if isinstance(param, IntParam):
        return list(range(param.min, param.max + 1, param.step))
    if isinstance(param, FloatParam):
        if param.step is None:
            raise ValueError(f"{param.name}: a float without step has no finite axis")
        count = math.floor((param.max - param.min) / param.step + 1e-9) + 1
        return [_clean_float(param.min + k * param.step) for k in range(count)]
    return list(param.choices)


def grid_point(
    params: Sequence[Parameter], position: int, axes: Sequence[Sequence[Scalar]] | None = None
) -> dict[str, Scalar]:
    """The grid point at `position`, counting with the last parameter varying fastest.

    `axes` (from `axis` for each parameter) may be passed in to save recomputing them.
    """
    axes = axes if axes is not None else [axis(p) for p in params]
    point: dict[str, Scalar] = {}
    for param, values in zip(reversed(params), reversed(axes), strict=True):
        position, k = divmod(position, len(values))
        point[param.name] = values[k]
    if position:
        raise IndexError("grid position beyond the grid")
    return {p.name: point[p.name] for p in params}


def iter_grid(params: Sequence[Parameter]) -> Iterator[dict[str, Scalar]]:
    axes = [axis(p) for p in params]
    for position in range(math.prod(len(a) for a in axes)):
        yield grid_point(params, position, axes)


def _clean_float(value: float) -> float:
    """Round away binary noise (0.30000000000000004 -> 0.3) while keeping 12 significant digits."""
    return float(f"{value:.12g}")


def config_values(params: Sequence[Parameter], values: Mapping[str, object]) -> dict[str, Scalar]:
    """The values a trial's config.json holds, each with its parameter's type kept."""
    out: dict[str, Scalar] = {}
    for p in params:
        value = values[p.name]
        if isinstance(p, IntParam):
            out[p.name] = int(value)  # type: ignore[call-overload]
        elif isinstance(p, FloatParam):
            out[p.name] = _clean_float(float(value))  # type: ignore[arg-type]
        else:
            out[p.name] = value  # type: ignore[assignment]
    return out


def point_key(params: Sequence[Parameter], values: Mapping[str, object]) -> tuple[object, ...]:
    """A hashable identity of a point, e.g. to tell whether a grid point was tried."""
    typed = config_values(params, values)
    return tuple((type(typed[p.name]).__name__, typed[p.name]) for p in params)


def fits(params: Sequence[Parameter], values: Mapping[str, object]) -> bool:
    """True when `values` is a point of this space (same names, each value allowed)."""
    if set(values) != {p.name for p in params}:
        return False
    for p in params:
        dist = distribution(p)
        try:
            if not dist._contains(dist.to_internal_repr(values[p.name])):
                return False
        except (TypeError, ValueError):
            return False
    return True
