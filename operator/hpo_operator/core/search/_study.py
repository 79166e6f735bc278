"""Rebuild an in-memory Optuna study from trial history and ask it for one trial."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import optuna
from optuna.samplers import BaseSampler
from optuna.trial import TrialState, create_trial

from ..space import config_values, distributions
from ..spec import ExperimentSpec
from ..trial import ACTIVE, SUCCEEDED, Trial
from ._base import Suggestion

MAX_ATTR_BYTES = 1024  # per-trial sampler notes larger than this are not kept in history


def derive_seed(seed: int, index: int) -> int:
    """A distinct, reproducible seed for the study rebuilt to ask for trial `index`."""
    digest = hashlib.sha256(f"hpo:{seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def _state(trial: Trial) -> tuple[TrialState, float | None]:
    if trial.phase in ACTIVE:
        return TrialState.RUNNING, None
    if trial.phase == SUCCEEDED and trial.objective is not None and math.isfinite(trial.objective):
        return TrialState.COMPLETE, trial.objective
    return TrialState.FAIL, None


def build_study(
    spec: ExperimentSpec, history: Sequence[Trial], sampler: BaseSampler
) -> optuna.Study:
    dists = distributions(spec.parameters)
    study = optuna.create_study(direction=spec.objective.direction, sampler=sampler)
    for trial in sorted(history, key=lambda t: t.index):
        state, value = _state(trial)
        try:
            params = config_values(spec.parameters, trial.parameters)
            frozen = create_trial(
                state=state,
                value=value,
                params=params,
                distributions=dists,
                system_attrs=dict(trial.sampler_attrs),
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise ValueError(
                f"trial {trial.name} has parameters {dict(trial.parameters)} that do not fit "
                f"spec.parameters ({exc}); the parameter space of a started experiment "
                "cannot change"
            ) from exc
        study.add_trial(frozen)
    return study


def _keepable(key: str, value: Any) -> bool:
    try:
        return len(json.dumps({key: value})) <= MAX_ATTR_BYTES
    except (TypeError, ValueError):
        return False


def ask(
    spec: ExperimentSpec,
    history: Sequence[Trial],
    sampler: BaseSampler,
    drop_attr: Callable[[str], bool] = lambda key: False,
) -> Suggestion:
    """Rebuild the study with `sampler`, ask for one trial, return its values and notes."""
    study = build_study(spec, history, sampler)
    trial = study.ask(distributions(spec.parameters))
    attrs: Mapping[str, Any] = study._storage.get_trial_system_attrs(trial._trial_id)
    kept = {k: v for k, v in attrs.items() if not drop_attr(k) and _keepable(k, v)}
    return Suggestion(config_values(spec.parameters, trial.params), kept)
