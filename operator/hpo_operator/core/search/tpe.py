"""Tree-structured Parzen Estimator: Optuna's TPESampler.

Running trials are in the rebuilt study, and the constant-liar strategy keeps parallel asks
apart. The first `n_startup_trials` (Optuna's default, 10) are random.
"""

from __future__ import annotations

from collections.abc import Sequence

from optuna.samplers import TPESampler

from ..spec import ExperimentSpec
from ..trial import Trial
from ._base import Suggestion
from ._study import ask, derive_seed


class Tpe:
    def ask(self, spec: ExperimentSpec, history: Sequence[Trial], index: int) -> Suggestion:
        sampler = TPESampler(seed=derive_seed(spec.algorithm.seed, index), constant_liar=True)
        return ask(spec, history, sampler)


ALGORITHM = Tpe()
