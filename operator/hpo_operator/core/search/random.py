"""Random search: Optuna's RandomSampler, seeded per trial index."""

from __future__ import annotations

from collections.abc import Sequence

from optuna.samplers import RandomSampler

from ..spec import ExperimentSpec
from ..trial import Trial
from ._base import Suggestion
from ._study import ask, derive_seed


class Random:
    def ask(self, spec: ExperimentSpec, history: Sequence[Trial], index: int) -> Suggestion:
        return ask(spec, history, RandomSampler(seed=derive_seed(spec.algorithm.seed, index)))


ALGORITHM = Random()
