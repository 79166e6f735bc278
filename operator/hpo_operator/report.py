"""What a person sees in the terminal: the live progress line and the results table."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from .core.plan import best_trial
from .core.spec import ExperimentSpec, Scalar
from .core.trial import FAILED, STOPPED, SUCCEEDED, Trial


def _value(value: Scalar | float | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _params(trial: Trial) -> str:
    return " ".join(f"{k}={_value(v)}" for k, v in trial.parameters.items())


def results_table(spec: ExperimentSpec, trials: Sequence[Trial]) -> Table:
    """One row per trial: one column per parameter (named as in the manifest), then the
    objective, the step it was reached at, and the phase (with the reason of a failure)."""
    best = best_trial(spec, trials)
    metric = spec.objective.metric
    table = Table(title=f"{spec.name}: {metric} ({spec.objective.direction})", title_justify="left")
    table.add_column("trial")
    for p in spec.parameters:
        table.add_column(p.name, justify="right")
    table.add_column(metric, justify="right")
    table.add_column(spec.objective.step_key, justify="right")
    table.add_column("phase")
    for t in trials:
        phase = t.phase if t.phase == SUCCEEDED or not t.reason else f"{t.phase}: {t.reason}"
        is_best = best is not None and t.name == best.name
        table.add_row(
            f"{t.name} ★" if is_best else t.name,
            *(_value(t.parameters.get(p.name)) for p in spec.parameters),
            _value(t.objective),
            _value(t.step),
            phase,
            style="bold green" if is_best else ("red" if t.phase == FAILED else None),
        )
    return table


def best_line(spec: ExperimentSpec, trials: Sequence[Trial]) -> str:
    best = best_trial(spec, trials)
    if best is None:
        return "No trial succeeded."
    where = f" at {spec.objective.step_key} {_value(best.step)}" if best.step is not None else ""
    return (
        f"Best trial: {best.name}  {spec.objective.metric} = {_value(best.objective)}{where}"
        f"  ({_params(best)})"
    )


def progress_text(status: Mapping[str, Any]) -> Text:
    counts = status.get("trials", {})
    text = Text()
    text.append(f"{status.get('phase')}  ", style="bold")
    text.append(
        f"{status.get('progress')} done · {counts.get('running', 0)} running · "
        f"{counts.get('failed', 0)} failed"
    )
    best = status.get("bestTrial")
    if best:
        text.append(f" · best {_value(best.get('objective'))} ({best.get('name')})", style="green")
    return text


class LiveReporter:
    """Prints a line per finished trial above a live progress line."""

    def __init__(self, console: Console, spec: ExperimentSpec) -> None:
        self.console = console
        self.spec = spec
        self.live = Live(Text("starting"), console=console, transient=True, auto_refresh=False)

    def __enter__(self) -> LiveReporter:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.__exit__(None, None, None)

    def trial_started(self, trial: Trial) -> None:
        self.console.print(f"[dim]started  {trial.name}  {_params(trial)}[/dim]", highlight=False)

    def trial_finished(self, trial: Trial) -> None:
        if trial.phase == SUCCEEDED:
            line = f"[green]✓[/green] {trial.name}  {self.spec.objective.metric} = "
            line += _value(trial.objective)
        elif trial.phase == STOPPED:
            line = f"[yellow]■[/yellow] {trial.name}  {trial.reason}"
        else:
            line = f"[red]✗[/red] {trial.name}  {trial.phase}: {trial.reason}"
        self.console.print(line, highlight=False)

    def status_changed(self, status: Mapping[str, Any]) -> None:
        self.live.update(progress_text(status), refresh=True)
