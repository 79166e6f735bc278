"""What the operator exports to Prometheus, and the HTTP server that exports it.

Every per-experiment series is drawn from an `ExperimentSample`: a pure function of what the
experiment's last reconcile observed in the cluster (its trials, and the times on their Jobs and
pods). So a restarted operator exports the same values again once it has reconciled each
experiment: its counters carry on from where they were instead of starting again at zero (which
`rate()` would read as every trial finishing at once). Within one process no counter ever goes
down, even if the cluster forgets something (a pod deleted by hand). The series of a deleted
experiment go with it (`forget`).

Operator health (reconcile latency, API errors) are ordinary in-process metrics: they start at
zero with the process, which `rate()` reads correctly as a counter reset.

Labels are `namespace`, `experiment`, `phase`, `reason` (plus the objective's `metric` and
`direction`, and `verb`/`code` for API errors): never one per trial, so the number of series
grows with experiments, not trials.
"""

from __future__ import annotations

import math
import threading
from collections import Counter as Tally
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import start_http_server

from .core.plan import best_trial, planned_trials
from .core.spec import ExperimentSpec
from .core.trial import FINISHED, PHASES, SUCCEEDED, Trial
from .k8s.observe import Timing

INF = math.inf
DURATION_BUCKETS = (1, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 28800, 86400,
                    INF)  # fmt: skip
PENDING_BUCKETS = (1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400, INF)
UNKNOWN = "Unknown"  # the reason label of an ended trial whose cause was not recorded


@dataclass(frozen=True)
class Buckets:
    """A histogram: cumulative counts for each upper bound of `bounds` (the last is +Inf)."""

    bounds: tuple[float, ...]
    counts: tuple[int, ...]
    total: float = 0.0

    @classmethod
    def of(cls, values: Sequence[float], bounds: tuple[float, ...]) -> Buckets:
        counts = tuple(sum(v <= b for v in values) for b in bounds)
        return cls(bounds, counts, float(sum(values)))

    @property
    def count(self) -> int:
        return self.counts[-1] if self.counts else 0


@dataclass(frozen=True)
class ExperimentSample:
    """One experiment's metrics as of one reconcile."""

    namespace: str
    name: str
    phase: str
    trials: Mapping[str, int] = field(default_factory=dict)  # phase -> count, every phase
    finished: Mapping[tuple[str, str], int] = field(default_factory=dict)  # (phase, reason)
    max_trials: int | None = None
    objective: tuple[str, str] | None = None  # (metric, direction)
    best: float | None = None
    latest: float | None = None
    duration: Buckets = Buckets(DURATION_BUCKETS, (0,) * len(DURATION_BUCKETS))
    pending: Buckets = Buckets(PENDING_BUCKETS, (0,) * len(PENDING_BUCKETS))
    gpu_seconds: float = 0.0  # of ended trials: only grows
    running_gpu_seconds: float = 0.0  # of trials still running, so far


def sample(
    namespace: str,
    name: str,
    phase: str,
    spec: ExperimentSpec | None,
    trials: Sequence[Trial] = (),
    timings: Mapping[str, Timing] | None = None,
    now: float = 0.0,
) -> ExperimentSample:
    """The sample of one experiment: its phase, its trials as observed, their times (by trial
    name), and `now` (epoch seconds). `spec` is None when the spec was refused."""
    if spec is None:
        return ExperimentSample(namespace, name, phase, trials=dict.fromkeys(PHASES, 0))
    by_phase = Tally(t.phase for t in trials)
    ended = [t for t in trials if t.phase in FINISHED]
    finished = Tally((t.phase, t.cause or UNKNOWN) for t in ended)
    none = Timing()
    times = {t.name: (timings or {}).get(t.name, none) for t in trials}
    durations = [_span(times[t.name].started, times[t.name].ended) for t in ended]
    pending = [_span(times[t.name].created, times[t.name].started) for t in trials]
    gpus = spec.trial_resources.gpus
    used = [_span(times[t.name].on_node, times[t.name].ended) for t in ended]
    running = [_span(times[t.name].on_node, now) for t in trials if t.phase not in FINISHED]
    scored = [t for t in ended if t.phase == SUCCEEDED and t.objective is not None]
    best = best_trial(spec, scored)
    latest = max(scored, key=lambda t: (times[t.name].ended or 0.0, t.index), default=None)
    return ExperimentSample(
        namespace=namespace,
        name=name,
        phase=phase,
        trials={p: by_phase.get(p, 0) for p in PHASES},
        finished=dict(finished),
        max_trials=planned_trials(spec),
        objective=(spec.objective.metric, spec.objective.direction),
        best=best.objective if best else None,
        latest=latest.objective if latest else None,
        duration=Buckets.of([d for d in durations if d is not None], DURATION_BUCKETS),
        pending=Buckets.of([p for p in pending if p is not None], PENDING_BUCKETS),
        gpu_seconds=gpus * sum(u for u in used if u is not None),
        running_gpu_seconds=gpus * sum(r for r in running if r is not None),
    )


def _span(start: float | None, end: float | None) -> float | None:
    return max(0.0, end - start) if start is not None and end is not None else None


def _monotonic(before: ExperimentSample | None, now: ExperimentSample) -> ExperimentSample:
    """`now`, with no counter lower than it was in `before`."""
    if before is None:
        return now
    keys = set(before.finished) | set(now.finished)
    finished = {k: max(before.finished.get(k, 0), now.finished.get(k, 0)) for k in keys}
    return replace(
        now,
        finished=finished,
        gpu_seconds=max(before.gpu_seconds, now.gpu_seconds),
        duration=now.duration if now.duration.count >= before.duration.count else before.duration,
        pending=now.pending if now.pending.count >= before.pending.count else before.pending,
    )


class Metrics:
    """The operator's registry: experiment samples, reconcile latency, API errors."""

    def __init__(self) -> None:
        # No `_created` series: Prometheus 2 would store each as one more gauge.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry()
        self._servers: list[Any] = []
        self._samples: dict[tuple[str, str], ExperimentSample] = {}
        self._lock = threading.Lock()
        self.registry.register(self)
        self.reconcile_duration = Histogram(
            "hpo_reconcile_duration_seconds",
            "Time one reconcile of one experiment took.",
            registry=self.registry,
        )
        self.api_errors = Counter(
            "hpo_kubernetes_api_errors",
            "Kubernetes API calls of the operator that failed, by verb and HTTP status code "
            "(0: no answer). 409 on create and 404 on ending a Job are expected, not counted.",
            ["verb", "code"],
            registry=self.registry,
        )
        ProcessCollector(registry=self.registry)

    def record(self, s: ExperimentSample) -> None:
        with self._lock:
            key = (s.namespace, s.name)
            self._samples[key] = _monotonic(self._samples.get(key), s)

    def forget(self, namespace: str, name: str) -> None:
        with self._lock:
            self._samples.pop((namespace, name), None)

    def api_error(self, verb: str, code: int) -> None:
        self.api_errors.labels(verb, str(code)).inc()

    def serve(self, port: int, address: str) -> None:
        """Serve /metrics on `address:port` from a daemon thread, until `close`."""
        server, _thread = start_http_server(port, addr=address, registry=self.registry)
        self._servers.append(server)

    def close(self) -> None:
        while self._servers:
            server = self._servers.pop()
            server.shutdown()
            server.server_close()

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            samples = sorted(self._samples.values(), key=lambda s: (s.namespace, s.name))
        yield from _families(samples)


def _families(samples: Sequence[ExperimentSample]) -> Iterator[Metric]:
    exp = ["namespace", "experiment"]
    experiments = GaugeMetricFamily(
        "hpo_experiments", "Experiments by phase.", labels=["namespace", "phase"]
    )
    for ns in sorted({s.namespace for s in samples}):
        here = Tally(s.phase for s in samples if s.namespace == ns)
        for phase in PHASES:
            experiments.add_metric([ns, phase], here.get(phase, 0))
    yield experiments
    trials = GaugeMetricFamily("hpo_trials", "Trials by phase.", labels=[*exp, "phase"])
    finished = CounterMetricFamily(
        "hpo_trials_finished",
        "Trials that ended, by phase (Succeeded, Failed, Stopped) and reason.",
        labels=[*exp, "phase", "reason"],
    )
    max_trials = GaugeMetricFamily(
        "hpo_experiment_max_trials",
        "The most trials the experiment will run: spec.maxTrials, or a smaller grid's size.",
        labels=exp,
    )
    goal = [*exp, "metric", "direction"]
    best = GaugeMetricFamily("hpo_best_objective", "Best objective so far.", labels=goal)
    latest = GaugeMetricFamily(
        "hpo_latest_objective", "Objective of the trial that succeeded last.", labels=goal
    )
    duration = HistogramMetricFamily(
        "hpo_trial_duration_seconds",
        "Run time of ended trials, from the trainer's start to its end.",
        labels=exp,
    )
    pending = HistogramMetricFamily(
        "hpo_trial_pending_seconds",
        "Time from a trial's creation until its trainer started (queueing, scheduling, pulls).",
        labels=exp,
    )
    gpu = CounterMetricFamily(
        "hpo_gpu_seconds",
        "GPU-seconds of ended trials: GPUs x time from the pod's start on a node to its end.",
        labels=exp,
    )
    running_gpu = GaugeMetricFamily(
        "hpo_running_gpu_seconds", "GPU-seconds used so far by trials still running.", labels=exp
    )
    for s in samples:
        key = [s.namespace, s.name]
        for phase, count in s.trials.items():
            trials.add_metric([*key, phase], count)
        for (phase, reason), count in sorted(s.finished.items()):
            finished.add_metric([*key, phase, reason], count)
        if s.max_trials is not None:
            max_trials.add_metric(key, s.max_trials)
        if s.objective is not None:
            if s.best is not None:
                best.add_metric([*key, *s.objective], s.best)
            if s.latest is not None:
                latest.add_metric([*key, *s.objective], s.latest)
            duration.add_metric(key, _buckets(s.duration), s.duration.total)
            pending.add_metric(key, _buckets(s.pending), s.pending.total)
            gpu.add_metric(key, s.gpu_seconds)
            running_gpu.add_metric(key, s.running_gpu_seconds)
    yield from (trials, finished, max_trials, best, latest, duration, pending, gpu, running_gpu)


def _buckets(h: Buckets) -> list[tuple[str, float]]:
    return [
        ("+Inf" if b == INF else repr(float(b)), c) for b, c in zip(h.bounds, h.counts, strict=True)
    ]
