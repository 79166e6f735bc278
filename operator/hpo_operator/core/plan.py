"""What to do next: (spec, observed trials) -> how many trials to create, which to stop, and
the experiment's phase. The local runner and the operator both follow this one function."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .parameters import grid_size
from .spec import ExperimentSpec
from .trial import FAILED, PENDING, RUNNING, STOPPED, SUCCEEDED, Trial

# An experiment's phase takes the same five words as a trial's (trial.PHASES).
TERMINAL_PHASES = (SUCCEEDED, FAILED, STOPPED)

# Reasons, CamelCase as Kubernetes condition reasons are.
TRIALS_RUNNING = "TrialsRunning"
CREATED = "Created"
MAX_TRIALS_REACHED = "MaxTrialsReached"
SPACE_EXHAUSTED = "SearchSpaceExhausted"
TARGET_REACHED = "TargetReached"
MAX_FAILED_REACHED = "MaxFailedTrialsReached"
NO_TRIAL_SUCCEEDED = "NoTrialSucceeded"
INTERRUPTED = "Interrupted"
SPEC_INVALID = "SpecInvalid"
SPACE_CHANGE_REFUSED = "ParameterSpaceChangeRefused"
CREATE_REFUSED = "TrialCreateRefused"
MAX_REFUSAL_CHARS = 1024


@dataclass(frozen=True)
class Decision:
    phase: str
    reason: str
    message: str
    create: int = 0
    stop: tuple[str, ...] = ()


def best_trial(spec: ExperimentSpec, trials: Sequence[Trial]) -> Trial | None:
    """The succeeded trial with the best objective; the earlier trial wins a tie."""
    best: Trial | None = None
    for t in sorted(trials, key=lambda t: t.index):
        if t.phase != SUCCEEDED or t.objective is None:
            continue
        if best is None or spec.objective.better(t.objective, best.objective):  # type: ignore[arg-type]
            best = t
    return best


def planned_trials(spec: ExperimentSpec) -> int:
    """The most trials the experiment will run: spec.maxTrials, or the grid's size when a grid
    search has fewer points (other algorithms may suggest a point twice, so only a grid's size
    bounds them)."""
    size = grid_size(spec.parameters) if spec.algorithm.name == "grid" else None
    return min(spec.max_trials, size) if size else spec.max_trials


def decide(
    spec: ExperimentSpec, trials: Sequence[Trial], exhausted: bool, interrupted: bool = False
) -> Decision:
    active = tuple(t.name for t in trials if t.active)
    failed = sum(t.phase == FAILED for t in trials)
    best = best_trial(spec, trials)
    if interrupted:
        return Decision(STOPPED, INTERRUPTED, "stopped by the user", stop=active)
    if failed >= spec.max_failed_trials:
        message = f"{failed} trials failed; spec.maxFailedTrials is {spec.max_failed_trials}"
        return Decision(FAILED, MAX_FAILED_REACHED, message, stop=active)
    if best is not None and best.objective is not None and spec.objective.reached(best.objective):
        message = (
            f"{best.name} reached {spec.objective.metric} {best.objective:g} "
            f"(target {spec.objective.target:g})"
        )
        return Decision(SUCCEEDED, TARGET_REACHED, message, stop=active)
    total = len(trials)
    if total >= spec.max_trials or exhausted:
        reason = MAX_TRIALS_REACHED if total >= spec.max_trials else SPACE_EXHAUSTED
        if active:
            return Decision(RUNNING, TRIALS_RUNNING, f"{len(active)} last trials running")
        if best is None:
            return Decision(FAILED, NO_TRIAL_SUCCEEDED, "no trial succeeded")
        done = "all trials done" if reason == MAX_TRIALS_REACHED else "search space exhausted"
        return Decision(SUCCEEDED, reason, f"{done}; best {best.name}")
    create = max(0, min(spec.parallelism - len(active), spec.max_trials - total))
    if total == 0 and create == 0:
        return Decision(PENDING, CREATED, "waiting to start trials")
    return Decision(RUNNING, TRIALS_RUNNING, f"{len(active)} trials running", create=create)


def refuse_space_change(trials: Sequence[Trial], misfits: Sequence[str]) -> Decision:
    """The parameter space changed under started trials: create nothing more, keep what runs."""
    message = (
        f"spec.parameters changed after trials started ({', '.join(misfits[:5])} no longer fit); "
        "a started experiment keeps its parameter space: restore it, or start a new experiment"
    )
    active = any(t.active for t in trials)
    return Decision(RUNNING if active else FAILED, SPACE_CHANGE_REFUSED, message)


def refuse_create(trials: Sequence[Trial], refusal: str) -> Decision:
    """The cluster refused to create a trial's objects (a quota, a policy, a permission):
    pending while no trial runs, running while some do; the next reconcile tries again."""
    message = f"{refusal[:MAX_REFUSAL_CHARS]}; trying again each reconcile"
    return Decision(RUNNING if any(t.active for t in trials) else PENDING, CREATE_REFUSED, message)
