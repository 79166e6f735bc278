"""A trial read back from its Job and pod: pure cases from Kubernetes JSON, then real trial Jobs
on the local control plane failing in each way a user must be told about."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes.client import ApiClient, BatchV1Api, CoreV1Api, CustomObjectsApi

from conftest import manifest, wait_for
from hpo_operator.core.results import summarize, summary_json
from hpo_operator.core.spec import parse_experiment
from hpo_operator.core.trial import FAILED, PENDING, RUNNING, STOPPED, SUCCEEDED, Trial
from hpo_operator.k8s import builders as b
from hpo_operator.k8s import observe as o
from hpo_operator.k8s.observe import ANNOTATION_OUTCOME, Timing, epoch, observe, outcome, timing

NOW = "2026-12-04T20:10:00Z"
OWNER = {"metadata": {"name": "exp", "uid": "u-1"}}
SETTINGS = b.JobSettings(operator_image="registry.example/hpo-operator:0.1")
TRIAL = Trial(2, "exp-t2", {"learning_rate": 0.01, "steps": 300, "optimizer": "sgd"})
OK = summary_json(summarize([(100, 0.8), (200, 0.9)], metric="accuracy", direction="maximize"))
BAD = summary_json(
    summarize([(100, 0.8)], metric="accuracy", direction="maximize", exit_code=1,
              reason="trainer exited with code 1")
)  # fmt: skip


def job(conditions: list[dict[str, Any]] = (), **annotations: str) -> dict[str, Any]:  # type: ignore[assignment]
    doc = b.trial_job(parse_experiment(manifest()), TRIAL, OWNER, SETTINGS)
    doc["metadata"]["annotations"].update(annotations)
    doc["status"] = {"conditions": list(conditions)}
    return doc


def pod(
    phase: str = "Running", state: dict[str, Any] | None = None, **status: Any
) -> dict[str, Any]:
    containers = [{"name": "trainer", "image": "python:3.11", "state": state or {"running": {}}}]
    return {"metadata": {"name": "exp-t2-x", "creationTimestamp": "2026-12-04T20:00:00Z"},
            "status": {"phase": phase, "containerStatuses": containers, **status}}  # fmt: skip


COMPLETE = [{"type": "Complete", "status": "True"}]
FAILED_JOB = [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]


@pytest.mark.parametrize(
    ("the_job", "pods", "phase", "reason", "cause"),
    [
        (job(), [], PENDING, None, None),
        (job(), [pod("Pending", {"waiting": {"reason": "ContainerCreating"}})],
         PENDING, None, None),
        (job(), [pod()], RUNNING, None, None),
        (job(COMPLETE), [pod("Succeeded", {"terminated": {"exitCode": 0, "message": OK}})],
         SUCCEEDED, None, o.COMPLETED),
        (job(COMPLETE), [pod("Succeeded", {"terminated": {"exitCode": 0, "message": "{}"}})],
         FAILED, "the trial's summary is missing", o.RESULTS_INVALID),
        (job(FAILED_JOB), [pod("Failed", {"terminated": {"exitCode": 1, "message": BAD}})],
         FAILED, "trainer exited with code 1", o.TRAINER_ERROR),
        (job(FAILED_JOB), [pod("Failed", {"terminated": {"exitCode": 137, "reason": "OOMKilled"}})],
         FAILED, "OOMKilled: the trainer ran out of memory", o.OOM_KILLED),
        (job(FAILED_JOB), [pod("Failed", {"terminated": {"exitCode": 2, "message": "Traceback"}})],
         FAILED, "trainer exited with code 2 (", o.TRAINER_ERROR),
        (job(FAILED_JOB), [pod("Failed", {"waiting": {}},
                               initContainerStatuses=[{"state": {"terminated": {"exitCode": 1}}}])],
         FAILED, "installing the launcher failed (exit code 1)", o.LAUNCHER_FAILED),
        (job(FAILED_JOB), [], FAILED, "Job failed: BackoffLimitExceeded", o.JOB_FAILED),
        (job([{"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}]), [],
         FAILED, "deadline exceeded", o.DEADLINE_EXCEEDED),
        (job(), [pod("Pending", {"waiting": {"reason": "ErrImagePull", "message": "not found"}})],
         FAILED, "image cannot be pulled: python:3.11: not found", o.IMAGE_PULL_FAILED),
        (job(**{ANNOTATION_OUTCOME: json.dumps(
            {"phase": STOPPED, "reason": "target reached", "cause": "TargetReached"})}),
         [pod()], STOPPED, "target reached", "TargetReached"),
    ],
)  # fmt: skip
def test_observe(
    the_job: Any, pods: Any, phase: str, reason: str | None, cause: str | None
) -> None:
    trial = observe(the_job, pods, NOW, unschedulable_after=300)
    assert (trial.index, trial.name, dict(trial.parameters)) == (2, "exp-t2", TRIAL.parameters)
    assert trial.phase == phase
    assert trial.cause == cause
    assert cause is None or cause in o.CAUSES or phase == STOPPED
    if reason is None:
        assert trial.reason is None or phase == PENDING
    else:
        assert trial.reason is not None and trial.reason.startswith(reason), trial.reason
    if phase == SUCCEEDED:
        assert (
            trial.objective == 0.9 and trial.step == 200 and trial.curve == ((100, 0.8), (200, 0.9))
        )


@pytest.mark.parametrize(
    ("since", "phase"), [("2026-12-04T20:09:00Z", PENDING), ("2026-12-04T20:00:00Z", FAILED)]
)
def test_unschedulable_for_too_long_fails_the_trial(since: str, phase: str) -> None:
    message = "0/1 nodes are available: 1 Insufficient nvidia.com/gpu."
    scheduled = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                 "lastTransitionTime": since, "message": message}  # fmt: skip
    trial = observe(
        job(), [pod("Pending", None, conditions=[scheduled])], NOW, unschedulable_after=300
    )
    assert trial.phase == phase
    assert trial.reason is not None and "Insufficient nvidia.com/gpu" in trial.reason
    if phase == FAILED:
        assert trial.reason.startswith("unschedulable for more than 300 s")
        assert trial.cause == o.UNSCHEDULABLE


# --- times --------------------------------------------------------------------------------------

T0 = "2026-12-04T20:00:00Z"


def at(seconds: int) -> str:
    return f"2026-12-04T20:{seconds // 60:02d}:{seconds % 60:02d}Z"


def timed_job(**annotations: str) -> dict[str, Any]:
    doc = job(**annotations)
    doc["metadata"]["creationTimestamp"] = T0
    return doc


def test_epoch_reads_kubernetes_times() -> None:
    assert epoch(at(90)) - epoch(T0) == 90.0
    assert epoch("1970-01-01T00:00:10Z") == 10.0


@pytest.mark.parametrize(
    ("pods", "expected"),
    [
        ([], (0, None, None, None)),
        ([pod("Pending", {"waiting": {"reason": "ContainerCreating"}}, startTime=at(5))],
         (0, 5, None, None)),
        ([pod("Running", {"running": {"startedAt": at(8)}}, startTime=at(5))], (0, 5, 8, None)),
        ([pod("Succeeded", {"terminated": {"startedAt": at(8), "finishedAt": at(68)}},
              startTime=at(5))], (0, 5, 8, 68)),
        # The launcher's install failed: the pod ended with its init container, the trainer never
        # started.
        ([pod("Failed", {"waiting": {}}, startTime=at(5), initContainerStatuses=[
            {"state": {"terminated": {"exitCode": 1, "finishedAt": at(7)}}}])],
         (0, 5, None, 7)),
    ],
)  # fmt: skip
def test_timing_from_the_job_and_its_pod(pods: Any, expected: tuple[int | None, ...]) -> None:
    base = epoch(T0)
    times = timing(timed_job(), pods)
    got = [getattr(times, f) for f in ("created", "on_node", "started", "ended")]
    assert got == [None if e is None else base + e for e in expected]


def test_a_trial_the_operator_ended_keeps_its_recorded_times_after_its_pod_is_gone() -> None:
    times = Timing(created=1.0, on_node=5.0, started=8.0, ended=30.0)
    stopped = Trial(2, "exp-t2", {}, phase=STOPPED, reason="stopped: done", cause="TargetReached")
    annotated = timed_job(**{ANNOTATION_OUTCOME: outcome(stopped, times)})
    assert timing(annotated, []) == times
    trial = observe(annotated, [], NOW, 300)
    assert (trial.phase, trial.reason, trial.cause) == (STOPPED, "stopped: done", "TargetReached")


# --- real trial Jobs ----------------------------------------------------------------------------

SCRIPTS = {
    "exits-1": "import sys; sys.exit(1)",
    "bad-results": (
        "import os; open(os.path.join(os.environ['RESULT_DIR'], 'val_dict_list.json'), 'w')"
        '.write(\'[{"steps": 1, "accuracy": "high"}]\')'
    ),
}


@pytest.mark.parametrize(
    ("case", "image", "reason"),
    [
        ("exits-1", "python:3.11", "trainer exited with code 1"),
        ("bad-results", "python:3.11", "val_dict_list.json record 0"),
        ("unknown-image", "registry.example/no-such-image:1", "image cannot be pulled"),
    ],
)
def test_real_trial_failures_are_classified(
    kube: ApiClient, namespace: str, sim: Any, case: str, image: str, reason: str
) -> None:
    command = ["python3", "-c", SCRIPTS.get(case, "pass")]
    doc = manifest(
        parameters=[{"name": "x", "float": {"min": 0.0, "max": 1.0}}],
        trialTemplate={"spec": {"containers": [{"name": "t", "image": image, "command": command}]}},
    )
    owner = CustomObjectsApi(kube).create_namespaced_custom_object(
        "hpo.dev", "v1alpha1", namespace, "hpoexperiments", doc
    )
    spec, trial = parse_experiment(doc), Trial(0, "exp-t0", {"x": 0.5})
    core, batch = CoreV1Api(kube), BatchV1Api(kube)
    core.create_namespaced_persistent_volume_claim(namespace, b.results_claim(spec, owner))
    core.create_namespaced_config_map(namespace, b.config_map(spec, trial, owner))
    batch.create_namespaced_job(namespace, b.trial_job(spec, trial, owner, SETTINGS))
    client = kube

    def seen() -> Trial | None:
        got = client.sanitize_for_serialization(batch.read_namespaced_job(trial.name, namespace))
        pods = core.list_namespaced_pod(namespace, label_selector=f"{b.LABEL_TRIAL}=0").items
        row = observe(got, [client.sanitize_for_serialization(p) for p in pods], NOW, 300)
        return row if row.phase == FAILED else None

    row = wait_for(f"the {case} trial to fail", seen, timeout=60)
    assert row.reason is not None and reason in row.reason, row.reason
