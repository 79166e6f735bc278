"""CMA-ES: Optuna's CmaEsSampler, its optimizer replayed from history.

Optuna keeps the CMA-ES optimizer as a pickle in the study. We never unpickle anything that
came back from a cluster object or a file, so the optimizer is rebuilt instead: start fresh and
`tell` it every completed generation recorded in the history (each trial keeps its
`cma:generation` note), then ask. With one parameter, or for categorical parameters, Optuna
falls back to its independent (random) sampler.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from optuna._transform import _SearchSpaceTransform
from optuna.samplers import CmaEsSampler, RandomSampler
from optuna.study import StudyDirection

from ..spec import ExperimentSpec
from ..trial import Trial
from ._base import Suggestion
from ._study import ask, derive_seed


class _ReplayCmaEsSampler(CmaEsSampler):
    def sample_relative(self, study: Any, trial: Any, search_space: Any) -> Any:
        self._replay = (search_space, study.direction)
        return super().sample_relative(study, trial, search_space)

    def _restore_optimizer(self, completed_trials: Any) -> Any:
        search_space, direction = self._replay
        trans = _SearchSpaceTransform(search_space, transform_step=True, transform_0_1=True)
        optimizer = self._init_optimizer(trans, direction)
        sign = 1.0 if direction == StudyDirection.MINIMIZE else -1.0
        while True:
            solutions = self._get_solution_trials(completed_trials, optimizer.generation)
            if len(solutions) < optimizer.population_size:
                return optimizer
            optimizer.tell(
                [
                    (trans.transform(t.params), sign * float(t.values[0]))
                    for t in solutions[: optimizer.population_size]
                ]
            )


class CmaEs:
    def ask(self, spec: ExperimentSpec, history: Sequence[Trial], index: int) -> Suggestion:
        seed = derive_seed(spec.algorithm.seed, index)
        sampler = _ReplayCmaEsSampler(
            seed=seed,
            independent_sampler=RandomSampler(seed=seed),
            warn_independent_sampling=False,
        )
        return ask(spec, history, sampler, drop_attr=lambda key: key.startswith("cma:optimizer"))


ALGORITHM = CmaEs()
