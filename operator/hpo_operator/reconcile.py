"""One reconcile of one experiment: observe its Jobs, decide with the core, act, and return
the status document and the experiment's metrics sample. Everything is read from the cluster
each time; nothing is remembered."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any, NamedTuple

from .core import search
from .core.plan import CREATE_REFUSED, Decision, decide, refuse_create, refuse_space_change
from .core.space import fits
from .core.spec import ExperimentSpec, SpecError, parse_experiment
from .core.status import build_status, invalid_spec_status
from .core.trial import FAILED, STOPPED, Trial
from .k8s import builders
from .k8s.api import Cluster, Refused
from .k8s.observe import ANNOTATION_OUTCOME, Timing, epoch, finished, observe, outcome, timing
from .metrics import ExperimentSample, sample
from .settings import Settings


class Reconciled(NamedTuple):
    status: dict[str, Any]
    sample: ExperimentSample


def _observe(
    cluster: Cluster, namespace: str, spec: ExperimentSpec, settings: Settings, now: str
) -> tuple[list[Trial], dict[str, Timing]]:
    """Every trial as its Job and pod show it, and its times; trials the operator must end are
    ended (their times recorded on the Job, since their pods go)."""
    jobs = cluster.trial_jobs(namespace, spec.name)
    pods = cluster.trial_pods(namespace, spec.name)
    trials, timings = [], {}
    for job in jobs:
        name = job["metadata"]["name"]
        mine = [p for p in pods if p["metadata"].get("labels", {}).get("job-name") == name]
        trial = observe(job, mine, now, settings.unschedulable_seconds)
        times = timing(job, mine)
        decided = ANNOTATION_OUTCOME in (job["metadata"].get("annotations") or {})
        if trial.phase == FAILED and not finished(job) and not decided:
            times = _ended(times, now)
            cluster.end_job(namespace, name, outcome(trial, times))
        trials.append(trial)
        timings[name] = times
    return sorted(trials, key=lambda t: t.index), timings


def _ended(times: Timing, now: str) -> Timing:
    return times if times.ended is not None else replace(times, ended=epoch(now))


def reconcile(
    body: Mapping[str, Any], cluster: Cluster, settings: Settings, now: str
) -> Reconciled:
    meta = body["metadata"]
    namespace, name, generation = meta["namespace"], meta["name"], meta.get("generation")
    previous = body.get("status") or {}
    try:
        spec = parse_experiment({k: body[k] for k in ("apiVersion", "kind", "metadata", "spec")})
    except SpecError as exc:
        status = invalid_spec_status(
            exc.errors, now=now, previous=previous, observed_generation=generation
        )
        return Reconciled(status, sample(namespace, name, status["phase"], None))
    trials, timings = _observe(cluster, namespace, spec, settings, now)
    misfits = [t.name for t in trials if not fits(spec.parameters, t.parameters)]
    if misfits:
        decision = refuse_space_change(trials, misfits)
    else:
        decision, trials = _act(body, spec, trials, timings, cluster, settings, now)
    status = build_status(
        spec, trials, decision, now=now, previous=previous, observed_generation=generation
    )
    found = sample(namespace, name, decision.phase, spec, trials, timings, epoch(now))
    return Reconciled(status, found)


def _act(
    body: Mapping[str, Any],
    spec: ExperimentSpec,
    trials: list[Trial],
    timings: dict[str, Timing],
    cluster: Cluster,
    settings: Settings,
    now: str,
) -> tuple[Decision, list[Trial]]:
    """Stop and create trials as the core decides; the decision and the trials after it.
    `timings` gets the end of each trial stopped here."""
    namespace = body["metadata"]["namespace"]
    decision = decide(spec, trials, search.exhausted(spec, trials))
    stopped = {}
    for t in trials:
        if t.name in decision.stop:
            reason = f"stopped: {decision.message}"
            stopped[t.name] = replace(t, phase=STOPPED, reason=reason, cause=decision.reason)
            timings[t.name] = _ended(timings[t.name], now)
            cluster.end_job(namespace, t.name, outcome(stopped[t.name], timings[t.name]))
    trials = [stopped.get(t.name, t) for t in trials]
    if not decision.create:
        return decision, trials
    job_settings = builders.JobSettings(
        settings.operator_image, settings.trainer_python, settings.gpu_resource_name
    )
    try:
        claim = builders.results_claim(spec, body)
        if claim is not None:
            cluster.create(namespace, claim)
        for trial in search.suggest(spec, trials, decision.create).trials:
            # Written afresh: a ConfigMap left by an earlier try whose Job was refused may hold
            # another suggestion's values.
            cluster.create(namespace, builders.config_map(spec, trial, body), replace=True)
            job = builders.trial_job(spec, trial, body, job_settings)
            cluster.create(namespace, job)
            trials.append(trial)
    except Refused as refused:
        return refuse_create(trials, str(refused)), trials
    return decide(spec, trials, search.exhausted(spec, trials)), trials


Event = tuple[str, str, str]  # (type Normal|Warning, reason, message)


def transitions(previous: Mapping[str, Any], status: Mapping[str, Any]) -> list[Event]:
    """The Events that tell what changed between two status documents: trials started,
    succeeded or failed, the cluster starting to refuse new trials, and the experiment ending."""
    before = {r["name"]: r.get("phase") for r in previous.get("results") or []}
    events: list[Event] = []
    for row in status.get("results") or []:
        name, phase = row["name"], row.get("phase")
        if before.get(name) == phase:
            continue
        if name not in before:
            params = " ".join(f"{k}={v}" for k, v in row.get("parameters", {}).items())
            events.append(("Normal", "TrialCreated", f"{name}: {params}"))
        if phase == "Succeeded":
            where = f" at step {row['step']}" if row.get("step") is not None else ""
            events.append(
                ("Normal", "TrialSucceeded", f"{name}: objective {row.get('objective')}{where}")
            )
        elif phase == "Failed":
            events.append(("Warning", "TrialFailed", f"{name}: {row.get('reason')}"))
    reason = status.get("reason")
    if reason == CREATE_REFUSED and previous.get("reason") != reason:
        events.append(("Warning", reason, str(status.get("message"))))
    phase = status.get("phase")
    if phase != previous.get("phase") and phase in ("Succeeded", "Failed"):
        kind = "Normal" if phase == "Succeeded" else "Warning"
        events.append((kind, f"Experiment{phase}", str(status.get("message"))))
    return events
