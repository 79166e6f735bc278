"""How long a suggestion takes when the study is rebuilt from history, per algorithm and
history size, how large and slow the status document is at many trials, and what the metrics
sample and the /metrics page cost at many trials and experiments.

Prints figures; asserts nothing. Run with `make bench`.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import optuna

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from prometheus_client import generate_latest

from conftest import manifest
from hpo_operator.core import search
from hpo_operator.core.plan import decide
from hpo_operator.core.spec import ALGORITHMS, parse_experiment
from hpo_operator.core.status import build_status
from hpo_operator.core.trial import SUCCEEDED, Trial
from hpo_operator.k8s.observe import COMPLETED, Timing
from hpo_operator.metrics import Metrics, sample

SIZES = (10, 100, 500, 1000)
PARAMETERS = [
    {"name": "lr", "float": {"min": 1e-4, "max": 1e-1, "log": True}},
    {"name": "steps", "int": {"min": 100, "max": 2000, "step": 100}},
    {"name": "opt", "categorical": ["sgd", "adam", "rmsprop"]},
]


def history(spec, n: int) -> list[Trial]:  # type: ignore[no-untyped-def]
    """n finished trials drawn by random search (cheap to make, valid for every sampler)."""
    rnd = replace(spec, algorithm=replace(spec.algorithm, name="random"))
    trials: list[Trial] = []
    while len(trials) < n:
        batch = search.suggest(rnd, trials, min(50, n - len(trials))).trials
        trials.extend(replace(t, phase=SUCCEEDED, objective=t.index % 97 / 97) for t in batch)
    return trials


def time_suggest(algorithm: str, n: int) -> float:
    spec = parse_experiment(
        manifest(algorithm={"name": algorithm, "seed": 1}, parameters=PARAMETERS, maxTrials=5000)
    )
    past = history(spec, n) if algorithm != "grid" else []
    started = time.perf_counter()
    search.suggest(spec, past, 1)
    return time.perf_counter() - started


def main() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    print("seconds for one suggestion, study rebuilt from n finished trials")
    print(f"{'algorithm':<10}" + "".join(f"{'n=' + str(n):>10}" for n in SIZES))
    for algorithm in (a for a in ALGORITHMS if a != "grid"):
        cells = "".join(f"{time_suggest(algorithm, n):>10.3f}" for n in SIZES)
        print(f"{algorithm:<10}{cells}")
    spec = parse_experiment(manifest(parameters=PARAMETERS, maxTrials=10_000))
    curve = tuple((float(s), 0.5) for s in range(0, 5000, 100))
    for n in (1_000, 10_000):
        trials = [
            Trial(i, f"exp-t{i}", {"lr": 0.001, "steps": 100, "opt": "adam"}, SUCCEEDED,
                  i % 97 / 97, 4900.0, curve)
            for i in range(n)
        ]  # fmt: skip
        started = time.perf_counter()
        status = build_status(spec, trials, decide(spec, trials, False), now="now")
        took = time.perf_counter() - started
        size = len(json.dumps(status))
        print(f"status of {n:>6} trials: {size / 1024:7.1f} KiB, built in {took:.3f} s")
    bench_metrics(spec, curve)


def bench_metrics(spec, curve) -> None:  # type: ignore[no-untyped-def]
    """One reconcile's metrics sample at n trials, and a scrape of /metrics at m experiments."""
    for n in (1_000, 10_000):
        trials = [
            replace(Trial(i, f"exp-t{i}", {}, SUCCEEDED, i % 97 / 97, 4900.0, curve),
                    cause=COMPLETED)
            for i in range(n)
        ]  # fmt: skip
        times = {t.name: Timing(i, i + 5.0, i + 6.0, i + 66.0) for i, t in enumerate(trials)}
        started = time.perf_counter()
        sample("ns", "exp", "Running", spec, trials, times, 20_000.0)
        took = time.perf_counter() - started
        print(f"metrics sample of {n:>6} trials: {took:.3f} s")
    one = sample("ns", "exp", "Running", spec, trials[:100], times, 20_000.0)
    for m in (10, 100, 1000):
        metrics = Metrics()
        for e in range(m):
            metrics.record(replace(one, name=f"exp{e}"))
        started = time.perf_counter()
        page = generate_latest(metrics.registry)
        took = time.perf_counter() - started
        lines = page.count(b"\n")
        print(f"/metrics at {m:>4} experiments: {len(page) / 1024:8.1f} KiB, "
              f"{lines:>6} lines, rendered in {took:.3f} s")  # fmt: skip


if __name__ == "__main__":
    main()
