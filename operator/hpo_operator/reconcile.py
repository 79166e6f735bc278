"""One reconcile of one experiment: observe its Jobs, decide with the core, act, and return
the status document. Everything is read from the cluster each time; nothing is remembered."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from .core import search
from .core.plan import decide, refuse_space_change
from .core.space import fits
from .core.spec import ExperimentSpec, SpecError, parse_experiment
from .core.status import build_status, invalid_spec_status
from .core.trial import FAILED, STOPPED, Trial
from .k8s import builders
from .k8s.api import Cluster
from .k8s.observe import ANNOTATION_OUTCOME, finished, observe
from .settings import Settings


def _observe(
    cluster: Cluster, namespace: str, spec: ExperimentSpec, settings: Settings, now: str
) -> list[Trial]:
    """Every trial as its Job and pod show it; trials the operator must end are ended."""
    jobs = cluster.trial_jobs(namespace, spec.name)
    pods = cluster.trial_pods(namespace, spec.name)
    trials = []
    for job in jobs:
        name = job["metadata"]["name"]
        mine = [p for p in pods if p["metadata"].get("labels", {}).get("job-name") == name]
        trial = observe(job, mine, now, settings.unschedulable_seconds)
        decided = ANNOTATION_OUTCOME in (job["metadata"].get("annotations") or {})
        if trial.phase == FAILED and not finished(job) and not decided:
            cluster.end_job(namespace, name, FAILED, trial.reason or "failed")
        trials.append(trial)
    return sorted(trials, key=lambda t: t.index)


def reconcile(
    body: Mapping[str, Any], cluster: Cluster, settings: Settings, now: str
) -> dict[str, Any]:
    meta = body["metadata"]
    namespace, generation = meta["namespace"], meta.get("generation")
    previous = body.get("status") or {}
    try:
        spec = parse_experiment({k: body[k] for k in ("apiVersion", "kind", "metadata", "spec")})
    except SpecError as exc:
        return invalid_spec_status(
            exc.errors, now=now, previous=previous, observed_generation=generation
        )
    claim = builders.results_claim(spec, body)
    if claim is not None:
        cluster.create(namespace, claim)
    trials = _observe(cluster, namespace, spec, settings, now)
    misfits = [t.name for t in trials if not fits(spec.parameters, t.parameters)]
    if misfits:
        decision = refuse_space_change(trials, misfits)
        return build_status(
            spec, trials, decision, now=now, previous=previous, observed_generation=generation
        )
    decision = decide(spec, trials, search.exhausted(spec, trials))
    for name in decision.stop:
        cluster.end_job(namespace, name, STOPPED, f"stopped: {decision.message}")
    trials = [
        replace(t, phase=STOPPED, reason=f"stopped: {decision.message}")
        if t.name in decision.stop
        else t
        for t in trials
    ]
    if decision.create:
        job_settings = builders.JobSettings(
            settings.operator_image, settings.trainer_python, settings.gpu_resource_name
        )
        for trial in search.suggest(spec, trials, decision.create).trials:
            cluster.create(namespace, builders.config_map(spec, trial, body))
            job = builders.trial_job(spec, trial, body, job_settings, spec.queue_name)
            cluster.create(namespace, job)
            trials.append(trial)
        decision = decide(spec, trials, search.exhausted(spec, trials))
    return build_status(
        spec, trials, decision, now=now, previous=previous, observed_generation=generation
    )


Event = tuple[str, str, str]  # (type Normal|Warning, reason, message)


def transitions(previous: Mapping[str, Any], status: Mapping[str, Any]) -> list[Event]:
    """The Events that tell what changed between two status documents: trials started,
    succeeded or failed, and the experiment ending."""
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
    phase = status.get("phase")
    if phase != previous.get("phase") and phase in ("Succeeded", "Failed"):
        kind = "Normal" if phase == "Succeeded" else "Warning"
        events.append((kind, f"Experiment{phase}", str(status.get("message"))))
    return events
