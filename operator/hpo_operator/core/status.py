"""Trial rows -> the experiment's status document, the same in the cluster and on disk.

The document stays bounded whatever the number of trials: counts cover every trial, and
`results` keeps the best rows, the active ones and the most recent ones (with
`resultsOmitted` saying how many were left out), each with a short curve.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from .plan import SPEC_INVALID, Decision, best_trial, planned_trials
from .results import step_out
from .spec import ExperimentSpec
from .trial import FAILED, FINISHED, PHASES, RUNNING, SUCCEEDED, Trial

MAX_RESULT_ROWS = 200
BEST_ROWS = 50
ACTIVE_ROWS = 50
CURVE_POINTS = 20
MAX_REASON_CHARS = 512
MAX_STATUS_BYTES = 200 * 1024  # well under Kubernetes' object limits; tested at 10,000 trials


def _short_curve(curve: Sequence[tuple[float, float]]) -> list[list[float | int]]:
    if len(curve) > CURVE_POINTS:
        last = len(curve) - 1
        picks = sorted({round(i * last / (CURVE_POINTS - 1)) for i in range(CURVE_POINTS)})
        curve = [curve[i] for i in picks]
    return [[step_out(s), v] for s, v in curve]


def result_row(trial: Trial) -> dict[str, Any]:
    row: dict[str, Any] = {"name": trial.name, "parameters": dict(trial.parameters)}
    row["phase"] = trial.phase
    if trial.objective is not None:
        row["objective"] = trial.objective
    if trial.step is not None:
        row["step"] = step_out(trial.step)
    if trial.curve:
        row["curve"] = _short_curve(trial.curve)
    if trial.reason:
        row["reason"] = trial.reason[:MAX_REASON_CHARS]
    return row


def _kept_rows(spec: ExperimentSpec, trials: Sequence[Trial], limit: int) -> list[Trial]:
    """The best, the active, then the most recent trials, at most `limit`, in index order."""
    scored = [t for t in trials if t.phase == SUCCEEDED and t.objective is not None]
    sign = -1.0 if spec.objective.direction == "maximize" else 1.0
    scored.sort(key=lambda t: (sign * t.objective, t.index))  # type: ignore[operator]
    active = [t for t in trials if t.active]
    recent = sorted(trials, key=lambda t: -t.index)
    keep: dict[int, Trial] = {}
    for group, quota in ((scored, BEST_ROWS), (active, ACTIVE_ROWS), (recent, limit)):
        for t in group[:quota]:
            if len(keep) >= limit:
                break
            keep.setdefault(t.index, t)
    return sorted(keep.values(), key=lambda t: t.index)


def _conditions(
    decision: Decision, now: str, previous: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    before = {c.get("type"): c for c in previous}
    out = []
    for kind in (RUNNING, SUCCEEDED, FAILED):
        state = "True" if decision.phase == kind else "False"
        cond = {
            "type": kind,
            "status": state,
            "reason": decision.reason,
            "message": decision.message,
        }
        old = before.get(kind)
        same = old is not None and old.get("status") == state
        cond["lastTransitionTime"] = old.get("lastTransitionTime", now) if same else now  # type: ignore[union-attr]
        out.append(cond)
    return out


def build_status(
    spec: ExperimentSpec,
    trials: Sequence[Trial],
    decision: Decision,
    *,
    now: str,
    previous: Mapping[str, Any] | None = None,
    observed_generation: int | None = None,
) -> dict[str, Any]:
    """The whole status document. `now` (RFC 3339) stamps conditions that changed."""
    counts = {"total": len(trials)}
    for phase in PHASES:
        counts[phase.lower()] = sum(t.phase == phase for t in trials)
    finished = sum(t.phase in FINISHED for t in trials)
    status: dict[str, Any] = {
        "phase": decision.phase,
        "reason": decision.reason,
        "message": decision.message,
        "progress": f"{finished}/{planned_trials(spec)}",
        "trials": counts,
        "conditions": _conditions(decision, now, (previous or {}).get("conditions", [])),
    }
    if observed_generation is not None:
        status["observedGeneration"] = observed_generation
    best = best_trial(spec, trials)
    if best is not None:
        status["bestTrial"] = {
            "name": best.name,
            "parameters": dict(best.parameters),
            "objective": best.objective,
        }
        if best.step is not None:
            status["bestTrial"]["step"] = step_out(best.step)
    _fill_results(status, spec, trials)
    return status


def _fill_results(status: dict[str, Any], spec: ExperimentSpec, trials: Sequence[Trial]) -> None:
    limit = MAX_RESULT_ROWS
    while True:
        rows = [result_row(t) for t in _kept_rows(spec, trials, limit)]
        status["results"] = rows
        status["resultsOmitted"] = len(trials) - len(rows)
        if limit == 0 or len(json.dumps(status)) <= MAX_STATUS_BYTES:
            return
        limit = limit * 3 // 4


def invalid_spec_status(
    errors: Sequence[tuple[str, str]],
    *,
    now: str,
    previous: Mapping[str, Any] | None = None,
    observed_generation: int | None = None,
) -> dict[str, Any]:
    """The status of an experiment whose spec the parser refused: Failed, every error listed."""
    message = "; ".join(f"{path}: {text}" for path, text in errors)
    decision = Decision(FAILED, SPEC_INVALID, message)
    status: dict[str, Any] = {
        "phase": FAILED,
        "reason": SPEC_INVALID,
        "message": message,
        "conditions": _conditions(decision, now, (previous or {}).get("conditions", [])),
    }
    if observed_generation is not None:
        status["observedGeneration"] = observed_generation
    return status
