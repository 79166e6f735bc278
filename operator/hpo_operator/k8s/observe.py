"""Read a trial back from the cluster: its Job (and pod) as Kubernetes JSON -> a trial row.

Pure: dicts in, a `Trial` out; `now` is passed in. The Job carries everything that must survive
an operator restart: parameters and sampler notes in annotations, the index in a label, and,
once the operator has decided a trial's fate itself (an image that cannot be pulled, a pod that
cannot be scheduled), that outcome in the `hpo.dev/outcome` annotation.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from ..core.results import ResultsError, parse_summary
from ..core.trial import FAILED, PENDING, RUNNING, STOPPED, SUCCEEDED, Trial
from .builders import ANNOTATION_PARAMETERS, ANNOTATION_SAMPLER, GROUP, LABEL_TRIAL

ANNOTATION_OUTCOME = f"{GROUP}/outcome"  # {"phase": ..., "reason": ...} set by the operator
IMAGE_PULL_REASONS = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull")
Obj = Mapping[str, Any]


def _condition(obj: Obj, kind: str) -> Obj | None:
    conditions: list[Obj] = obj.get("status", {}).get("conditions") or []
    return next(
        (c for c in conditions if c.get("type") == kind and c.get("status") == "True"), None
    )


def finished(job: Obj) -> bool:
    """The Job controller has marked the Job Complete or Failed."""
    return _condition(job, "Complete") is not None or _condition(job, "Failed") is not None


def _seconds_between(start: str, now: str) -> float:
    def parse(t: str) -> datetime:
        return datetime.fromisoformat(t.replace("Z", "+00:00"))

    return (parse(now) - parse(start)).total_seconds()


def _statuses(pod: Obj, key: str) -> list[Obj]:
    return list(pod.get("status", {}).get(key) or [])


def _trainer_state(pod: Obj) -> Obj:
    statuses = _statuses(pod, "containerStatuses")
    return statuses[0].get("state", {}) if statuses else {}


def base_trial(job: Obj) -> Trial:
    meta = job["metadata"]
    annotations = meta.get("annotations") or {}
    return Trial(
        index=int(meta["labels"][LABEL_TRIAL]),
        name=str(meta["name"]),
        parameters=json.loads(annotations.get(ANNOTATION_PARAMETERS, "{}")),
        sampler_attrs=json.loads(annotations.get(ANNOTATION_SAMPLER, "{}")),
    )


def _from_summary(trial: Trial, message: str | None, fallback: str) -> Trial:
    try:
        summary = parse_summary(message or "")
    except ResultsError as exc:
        return _with(trial, FAILED, f"{fallback} ({exc.reason})")
    return _with(
        trial,
        SUCCEEDED if summary.ok else FAILED,
        summary.reason,
        objective=summary.objective,
        step=summary.step,
        curve=summary.curve,
    )


def _with(trial: Trial, phase: str, reason: str | None, **values: Any) -> Trial:
    return replace(trial, phase=phase, reason=reason, **values)


def _failure(trial: Trial, job: Obj, pod: Obj | None) -> Trial:
    """Why a Job failed, in words a user can act on."""
    failed = _condition(job, "Failed") or {}
    if failed.get("reason") == "DeadlineExceeded":
        limit = job.get("spec", {}).get("activeDeadlineSeconds")
        return _with(trial, FAILED, f"deadline exceeded: the Job ran longer than {limit} s")
    if pod is None:
        return _with(trial, FAILED, f"Job failed: {failed.get('message') or failed.get('reason')}")
    for init in _statuses(pod, "initContainerStatuses"):
        done = init.get("state", {}).get("terminated")
        if done and done.get("exitCode"):
            return _with(
                trial, FAILED, f"installing the launcher failed (exit code {done['exitCode']})"
            )
    done = _trainer_state(pod).get("terminated") or {}
    if done.get("reason") == "OOMKilled":
        return _with(trial, FAILED, "OOMKilled: the trainer ran out of memory")
    message = done.get("message")
    exit_code = done.get("exitCode")
    return _from_summary(trial, message, f"trainer exited with code {exit_code}")


def _waiting(trial: Trial, pod: Obj, now: str, unschedulable_after: float) -> Trial:
    for status in [*_statuses(pod, "initContainerStatuses"), *_statuses(pod, "containerStatuses")]:
        waiting = status.get("state", {}).get("waiting") or {}
        if waiting.get("reason") in IMAGE_PULL_REASONS:
            image = status.get("image", "?")
            detail = waiting.get("message") or waiting["reason"]
            return _with(trial, FAILED, f"image cannot be pulled: {image}: {detail}")
    scheduled = next(
        (c for c in pod.get("status", {}).get("conditions") or [] if c["type"] == "PodScheduled"),
        None,
    )
    if scheduled and scheduled.get("status") == "False":
        since = scheduled.get("lastTransitionTime")
        if since and _seconds_between(since, now) > unschedulable_after:
            return _with(
                trial,
                FAILED,
                f"unschedulable for more than {unschedulable_after:.0f} s: "
                f"{scheduled.get('message') or scheduled.get('reason')}",
            )
        return _with(trial, PENDING, f"waiting for a node: {scheduled.get('message', '')}".strip())
    phase = pod.get("status", {}).get("phase")
    return _with(trial, RUNNING if phase == "Running" else PENDING, None)


def observe(job: Obj, pods: Sequence[Obj], now: str, unschedulable_after: float) -> Trial:
    """The trial row for one Job and its pods (a Job of a trial has at most one pod)."""
    trial = base_trial(job)
    outcome = (job["metadata"].get("annotations") or {}).get(ANNOTATION_OUTCOME)
    if outcome:
        decided = json.loads(outcome)
        if decided.get("phase") in (FAILED, STOPPED):
            return _with(trial, decided["phase"], decided.get("reason"))
    pod = max(pods, key=lambda p: p["metadata"].get("creationTimestamp", "")) if pods else None
    if _condition(job, "Complete"):
        done = _trainer_state(pod).get("terminated") or {} if pod else {}
        return _from_summary(trial, done.get("message"), "the trial's summary is missing")
    if _condition(job, "Failed"):
        return _failure(trial, job, pod)
    if pod is None:
        return _with(trial, PENDING, None)
    return _waiting(trial, pod, now, unschedulable_after)
