"""`hpo plot`: the objective against each parameter, and every trial's learning curve."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from .core.plan import best_trial
from .core.spec import ChoiceParam, ExperimentSpec, FloatParam, IntParam, Parameter, Scalar
from .core.trial import SUCCEEDED, Trial

Curve = Sequence[tuple[float, float]]


def plot_experiment(
    spec: ExperimentSpec,
    trials: Sequence[Trial],
    out: Path,
    full_curve: Callable[[Trial], Curve | None] = lambda t: None,
) -> None:
    """Write a PNG: top row objective vs each parameter, bottom the learning curves.
    `full_curve` may return a trial's complete curve; the summary's curve is the fallback."""
    n = len(spec.parameters)
    fig = plt.figure(figsize=(max(8.0, 4.0 * n), 8.0), layout="constrained")
    grid = fig.add_gridspec(2, n)
    done = [t for t in trials if t.phase == SUCCEEDED and t.objective is not None]
    best = best_trial(spec, trials)
    metric = spec.objective.metric
    for i, param in enumerate(spec.parameters):
        ax = fig.add_subplot(grid[0, i])
        xs = [_x(param, t.parameters[param.name]) for t in done]
        ax.scatter(xs, [float(t.objective or 0.0) for t in done], color="tab:blue", label="trials")
        if best is not None:
            ax.scatter(
                [_x(param, best.parameters[param.name])],
                [float(best.objective or 0.0)],
                color="tab:red",
                s=90,
                marker="*",
                label=f"best ({best.name})",
            )
        if isinstance(param, IntParam | FloatParam) and param.log:
            ax.set_xscale("log")
        if isinstance(param, ChoiceParam):
            ax.set_xticks(range(len(param.choices)), [str(c) for c in param.choices])
        ax.set_xlabel(param.name)
        ax.set_ylabel(metric)
        ax.set_title(f"{metric} vs {param.name}")
        ax.grid(alpha=0.3)
        if i == 0:
            ax.legend(loc="best", fontsize="small")
    ax = fig.add_subplot(grid[1, :])
    for t in trials:
        curve = full_curve(t) or t.curve
        if not curve:
            continue
        is_best = best is not None and t.name == best.name
        ax.plot(
            [s for s, _ in curve],
            [v for _, v in curve],
            linewidth=2.5 if is_best else 1.0,
            alpha=1.0 if is_best else 0.5,
            color="tab:red" if is_best else None,
            label=f"{t.name} (best)" if is_best else None,
        )
    ax.set_xlabel(spec.objective.step_key)
    ax.set_ylabel(metric)
    ax.set_title(f"learning curves of {len(trials)} trials")
    ax.grid(alpha=0.3)
    if best is not None:
        ax.legend(loc="best", fontsize="small")
    fig.suptitle(f"{spec.name}: {metric} ({spec.objective.direction})")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)


def _x(param: Parameter, value: Scalar) -> float:
    """Where a value sits on its axis: choices by their position, numbers as they are."""
    if isinstance(param, ChoiceParam):
        return float(param.choices.index(value))
    return float(value)
