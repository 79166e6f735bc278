"""Suggest the next trials from the experiment spec and the trial history.

Nothing is remembered between calls: every suggestion rebuilds an in-memory Optuna study from
the history (running trials included), so the same spec and history always give the same
suggestion, and a restarted runner or operator continues exactly where it was.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from ..space import point_key
from ..spec import ExperimentSpec, grid_size
from ..trial import RUNNING, Trial, trial_name
from . import cmaes, grid, qmc, random, tpe
from ._base import Algorithm, Suggestion

ALGORITHMS: dict[str, Algorithm] = {
    "grid": grid.ALGORITHM,
    "random": random.ALGORITHM,
    "tpe": tpe.ALGORITHM,
    "cmaes": cmaes.ALGORITHM,
    "qmc": qmc.ALGORITHM,
}

__all__ = ["ALGORITHMS", "Suggestion", "Suggestions", "exhausted", "suggest"]


@dataclass(frozen=True)
class Suggestions:
    """Up to `count` new trials; `exhausted` when the space has no untried point left."""

    trials: tuple[Trial, ...]
    exhausted: bool


def _tried(spec: ExperimentSpec, history: Sequence[Trial]) -> int:
    return len({point_key(spec.parameters, t.parameters) for t in history})


def exhausted(spec: ExperimentSpec, history: Sequence[Trial]) -> bool:
    """True when the space is finite and every point of it is in the history."""
    size = grid_size(spec.parameters)
    return size is not None and _tried(spec, history) >= size


def suggest(spec: ExperimentSpec, history: Sequence[Trial], count: int) -> Suggestions:
    """Ask for `count` new trials, one after another, each seeing the ones before as running."""
    algorithm = ALGORITHMS[spec.algorithm.name]
    trials = sorted(history, key=lambda t: t.index)
    new: list[Trial] = []
    for _ in range(count):
        if exhausted(spec, trials):
            return Suggestions(tuple(new), exhausted=True)
        index = trials[-1].index + 1 if trials else 0
        suggestion = algorithm.ask(spec, trials, index)
        if suggestion is None:
            return Suggestions(tuple(new), exhausted=True)
        trial = Trial(
            index=index,
            name=trial_name(spec.name, index),
            parameters=suggestion.parameters,
            sampler_attrs=suggestion.sampler_attrs,
        )
        new.append(trial)
        trials.append(replace(trial, phase=RUNNING))
    return Suggestions(tuple(new), exhausted=exhausted(spec, trials))
