"""Read a trial back from the cluster: its Job (and pod) as Kubernetes JSON -> a trial row.

Pure: dicts in, a `Trial` out; `now` is passed in. The Job carries everything that must survive
an operator restart: parameters and sampler notes in annotations, the index in a label, and,
once the operator has decided a trial's fate itself (an image that cannot be pulled, a pod that
cannot be scheduled), that outcome in the `hpo.dev/outcome` annotation, with the trial's times
as they were then (its pod is deleted when the Job is ended, and the times with it).

Each ended trial also gets a `cause`: a short CamelCase word from a fixed set, for counting in
metrics, where the reason is a sentence for people.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from datetime import datetime
from typing import Any

from ..core.results import ResultsError, parse_summary
from ..core.trial import FAILED, PENDING, RUNNING, STOPPED, SUCCEEDED, Trial
from .builders import ANNOTATION_PARAMETERS, ANNOTATION_SAMPLER, GROUP, LABEL_TRIAL

ANNOTATION_OUTCOME = f"{GROUP}/outcome"  # {"phase", "reason", "cause", "timing"}: the operator's
IMAGE_PULL_REASONS = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull")
Obj = Mapping[str, Any]

# Causes: why a trial ended, one word each (a Stopped trial's cause is the experiment's reason).
COMPLETED = "Completed"
TRAINER_ERROR = "TrainerError"  # the trainer exited non-zero
RESULTS_INVALID = "ResultsInvalid"  # exit 0, but val_dict_list.json missing or unusable
OOM_KILLED = "OOMKilled"
DEADLINE_EXCEEDED = "DeadlineExceeded"
LAUNCHER_FAILED = "LauncherFailed"
IMAGE_PULL_FAILED = "ImagePullFailed"
UNSCHEDULABLE = "Unschedulable"
JOB_FAILED = "JobFailed"  # the Job failed with no pod to tell why
CAUSES = (COMPLETED, TRAINER_ERROR, RESULTS_INVALID, OOM_KILLED, DEADLINE_EXCEEDED,
          LAUNCHER_FAILED, IMAGE_PULL_FAILED, UNSCHEDULABLE, JOB_FAILED)  # fmt: skip


@dataclass(frozen=True)
class Timing:
    """When a trial reached each stage, in seconds since the epoch (None: not yet, or unknown).

    `on_node` is the pod's start on a node: from then on it holds its GPUs. `started` is the
    trainer container's start, `ended` the end of the pod's last container (or the moment the
    operator ended the trial)."""

    created: float | None = None
    on_node: float | None = None
    started: float | None = None
    ended: float | None = None


def _condition(obj: Obj, kind: str) -> Obj | None:
    conditions: list[Obj] = obj.get("status", {}).get("conditions") or []
    return next(
        (c for c in conditions if c.get("type") == kind and c.get("status") == "True"), None
    )


def finished(job: Obj) -> bool:
    """The Job controller has marked the Job Complete or Failed."""
    return _condition(job, "Complete") is not None or _condition(job, "Failed") is not None


def epoch(t: str) -> float:
    """An RFC 3339 time (metav1.Time) in seconds since the epoch."""
    return datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp()


def _epoch_or_none(t: str | None) -> float | None:
    return epoch(t) if t else None


def _seconds_between(start: str, now: str) -> float:
    return epoch(now) - epoch(start)


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


def _from_summary(trial: Trial, message: str | None, fallback: str, exit_code: Any) -> Trial:
    try:
        summary = parse_summary(message or "")
    except ResultsError as exc:
        cause = TRAINER_ERROR if exit_code else RESULTS_INVALID
        return _with(trial, FAILED, f"{fallback} ({exc.reason})", cause)
    if summary.ok:
        cause = COMPLETED
    else:
        cause = TRAINER_ERROR if summary.exit_code != 0 else RESULTS_INVALID
    return _with(
        trial,
        SUCCEEDED if summary.ok else FAILED,
        summary.reason,
        cause,
        objective=summary.objective,
        step=summary.step,
        curve=summary.curve,
    )


def _with(
    trial: Trial, phase: str, reason: str | None, cause: str | None = None, **values: Any
) -> Trial:
    return replace(trial, phase=phase, reason=reason, cause=cause, **values)


def _failure(trial: Trial, job: Obj, pod: Obj | None) -> Trial:
    """Why a Job failed, in words a user can act on."""
    failed = _condition(job, "Failed") or {}
    if failed.get("reason") == "DeadlineExceeded":
        limit = job.get("spec", {}).get("activeDeadlineSeconds")
        reason = f"deadline exceeded: the Job ran longer than {limit} s"
        return _with(trial, FAILED, reason, DEADLINE_EXCEEDED)
    if pod is None:
        reason = f"Job failed: {failed.get('message') or failed.get('reason')}"
        return _with(trial, FAILED, reason, JOB_FAILED)
    for init in _statuses(pod, "initContainerStatuses"):
        done = init.get("state", {}).get("terminated")
        if done and done.get("exitCode"):
            reason = f"installing the launcher failed (exit code {done['exitCode']})"
            return _with(trial, FAILED, reason, LAUNCHER_FAILED)
    done = _trainer_state(pod).get("terminated") or {}
    if done.get("reason") == "OOMKilled":
        return _with(trial, FAILED, "OOMKilled: the trainer ran out of memory", OOM_KILLED)
    exit_code = done.get("exitCode")
    return _from_summary(
        trial, done.get("message"), f"trainer exited with code {exit_code}", exit_code
    )


def _waiting(trial: Trial, pod: Obj, now: str, unschedulable_after: float) -> Trial:
    for status in [*_statuses(pod, "initContainerStatuses"), *_statuses(pod, "containerStatuses")]:
        waiting = status.get("state", {}).get("waiting") or {}
        if waiting.get("reason") in IMAGE_PULL_REASONS:
            image = status.get("image", "?")
            detail = waiting.get("message") or waiting["reason"]
            reason = f"image cannot be pulled: {image}: {detail}"
            return _with(trial, FAILED, reason, IMAGE_PULL_FAILED)
    scheduled = next(
        (c for c in pod.get("status", {}).get("conditions") or [] if c["type"] == "PodScheduled"),
        None,
    )
    if scheduled and scheduled.get("status") == "False":
        since = scheduled.get("lastTransitionTime")
        if since and _seconds_between(since, now) > unschedulable_after:
            reason = (
                f"unschedulable for more than {unschedulable_after:.0f} s: "
                f"{scheduled.get('message') or scheduled.get('reason')}"
            )
            return _with(trial, FAILED, reason, UNSCHEDULABLE)
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
            return _with(trial, decided["phase"], decided.get("reason"), decided.get("cause"))
    pod = _latest(pods)
    if _condition(job, "Complete"):
        done = _trainer_state(pod).get("terminated") or {} if pod else {}
        return _from_summary(trial, done.get("message"), "the trial's summary is missing", 0)
    if _condition(job, "Failed"):
        return _failure(trial, job, pod)
    if pod is None:
        return _with(trial, PENDING, None)
    return _waiting(trial, pod, now, unschedulable_after)


def _latest(pods: Sequence[Obj]) -> Obj | None:
    return max(pods, key=lambda p: p["metadata"].get("creationTimestamp", "")) if pods else None


def timing(job: Obj, pods: Sequence[Obj]) -> Timing:
    """The trial's times from its Job and pod, or as recorded when the operator ended it."""
    outcome = (job["metadata"].get("annotations") or {}).get(ANNOTATION_OUTCOME)
    recorded = json.loads(outcome).get("timing") if outcome else None
    if recorded:
        return Timing(**{f.name: recorded.get(f.name) for f in fields(Timing)})
    created = _epoch_or_none(job["metadata"].get("creationTimestamp"))
    pod = _latest(pods)
    if pod is None:
        return Timing(created=created)
    state = _trainer_state(pod)
    started = (state.get("running") or state.get("terminated") or {}).get("startedAt")
    ends = [
        s.get("state", {}).get("terminated", {}).get("finishedAt")
        for s in [*_statuses(pod, "initContainerStatuses"), *_statuses(pod, "containerStatuses")]
    ]
    done = pod.get("status", {}).get("phase") in ("Succeeded", "Failed") or "terminated" in state
    ended = max((e for e in ends if e), default=None) if done else None
    return Timing(
        created=created,
        on_node=_epoch_or_none(pod.get("status", {}).get("startTime")),
        started=_epoch_or_none(started),
        ended=_epoch_or_none(ended),
    )


def outcome(trial: Trial, times: Timing) -> str:
    """The `hpo.dev/outcome` annotation of a trial the operator ends itself."""
    record = {"phase": trial.phase, "reason": trial.reason, "cause": trial.cause}
    return json.dumps({**record, "timing": asdict(times)})
