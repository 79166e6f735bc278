"""Quasi-Monte Carlo: Optuna's QMCSampler (scrambled Sobol), continued from history.

Optuna's QMCSampler counts its position in the sequence in the study's own memory, so a study
rebuilt from history would start the sequence again and repeat its first point forever. Here
the position is derived from the history instead: trial n (n >= 1) takes point n - 1 of the
sequence; trial 0 is drawn by the independent sampler, as in Optuna. The sequence is seeded with
the experiment's seed (not a per-trial one), so all trials walk one sequence.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

from optuna.exceptions import ExperimentalWarning
from optuna.samplers import QMCSampler, RandomSampler

from ..spec import ExperimentSpec
from ..trial import Trial
from ._base import Suggestion
from ._study import ask, derive_seed


class _HistoryQMCSampler(QMCSampler):
    def _find_sample_id(self, study: Any, search_space: Any) -> int:
        # The study holds the history plus the trial being asked; trial 0 was not from QMC.
        return max(0, len(study._get_trials(deepcopy=False, use_cache=False)) - 2)


class Qmc:
    def ask(self, spec: ExperimentSpec, history: Sequence[Trial], index: int) -> Suggestion:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)  # stable in practice since 3.0
            sampler = _HistoryQMCSampler(
                qmc_type="sobol",
                scramble=True,
                seed=spec.algorithm.seed,
                independent_sampler=RandomSampler(seed=derive_seed(spec.algorithm.seed, index)),
                warn_independent_sampling=False,
            )
        return ask(spec, history, sampler)


ALGORITHM = Qmc()
