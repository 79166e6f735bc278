"""The operator (kopf, as `kopf run` would start it) on the real local control plane with the
node simulator: an experiment applied with the API runs to the end, and a spec the parser
refuses ends Failed with its field path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.client import ApiClient, BatchV1Api, CoreV1Api, CustomObjectsApi
from kubernetes.client.exceptions import ApiException

from cluster.control_plane import ControlPlane, free_port
from conftest import (
    ROOT,
    bare_job,
    manifest,
    refuse_jobs,
    short_digits_manifest,
    wait_for,
)

TOY = ROOT / "tests" / "trainers" / "toy_trainer.py"
KOPF = str(Path(sys.executable).parent / "kopf")
API = ("hpo.dev", "v1alpha1")


def scope(*namespaces: str) -> list[str]:
    """`kopf run` arguments that limit the operator to these namespaces."""
    return [arg for ns in namespaces for arg in ("--namespace", ns)]


class OperatorProcess:
    """`kopf run` of the operator, startable and killable at will."""

    def __init__(self, kubeconfig: Path, log: Path, args: Sequence[str]) -> None:
        """`args`: the scope, as `kopf run` takes it (`scope(namespace, ...)`)."""
        self.metrics_port = free_port()
        self.env = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            "HPO_OPERATOR_IMAGE": "registry.example/hpo-operator:0.1",
            "HPO_RECONCILE_SECONDS": "1",
            "HPO_METRICS_PORT": str(self.metrics_port),
            "HPO_METRICS_ADDRESS": "127.0.0.1",
        }
        self.args, self.log = list(args), log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [KOPF, "run", "-m", "hpo_operator.handlers", "--standalone", *self.args],
                env=self.env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip

    def kill(self) -> None:
        """SIGKILL: no chance to clean up, as when a node dies."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=30)
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
            self.proc = None


@pytest.fixture
def operator(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> Iterator[OperatorProcess]:
    process = OperatorProcess(control_plane.kubeconfig, tmp_path / "operator.log", scope(namespace))
    process.start()
    try:
        yield process
    finally:
        process.stop()
        print(process.log.read_text()[-4000:])


def toy(
    env: dict[str, str] | None = None, image: str = "python:3.11", **spec: Any
) -> dict[str, Any]:
    container = {
        "name": "trainer",
        "image": image,
        "command": ["python3", str(TOY)],
        "env": [{"name": k, "value": v} for k, v in (env or {}).items()],
    }
    fields = {
        "algorithm": {"name": "grid"},
        "parameters": [{"name": "x", "values": [0.1, 0.3, 0.6]}],
        "parallelism": 2,
        "trialTemplate": {"spec": {"containers": [container]}},
        **spec,
    }
    doc = manifest(**fields)
    doc["metadata"]["name"] = "toy"
    return doc


def status_of(kube: ApiClient, namespace: str, name: str) -> dict[str, Any]:
    got = CustomObjectsApi(kube).get_namespaced_custom_object(
        *API, namespace, "hpoexperiments", name
    )
    return dict(got.get("status") or {})


def test_an_experiment_runs_to_the_end_with_the_local_runners_best(
    kube: ApiClient, namespace: str, sim: Any, operator: OperatorProcess, tmp_path: Path
) -> None:
    doc = toy()
    CustomObjectsApi(kube).create_namespaced_custom_object(*API, namespace, "hpoexperiments", doc)
    status = wait_for(
        "the experiment to succeed",
        lambda: (
            (s := status_of(kube, namespace, "toy")).get("phase") in ("Succeeded", "Failed") and s
        ),
        timeout=120,
        state=lambda: status_of(kube, namespace, "toy"),
    )
    assert status["phase"] == "Succeeded", status
    assert status["trials"]["succeeded"] == 3 and len(status["results"]) == 3
    jobs = BatchV1Api(kube).list_namespaced_job(namespace).items
    assert sorted(j.metadata.name for j in jobs) == ["toy-t0", "toy-t1", "toy-t2"]
    # The same manifest through `hpo run` finds the same best trial.
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump(doc))
    command = [sys.executable, "-m", "hpo_operator.cli", "run", str(path)]
    local = subprocess.run(
        [*command, "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=120
    )
    assert local.returncode == 0, local.stderr
    best = yaml.safe_load((tmp_path / "out" / "status.yaml").read_text())["bestTrial"]
    assert status["bestTrial"] == best


def test_a_spec_the_parser_refuses_ends_failed_with_the_field_path(
    kube: ApiClient, namespace: str, operator: OperatorProcess
) -> None:
    doc = toy(parameters=[{"name": "x", "int": {"min": 5, "max": 3}}])
    CustomObjectsApi(kube).create_namespaced_custom_object(*API, namespace, "hpoexperiments", doc)
    status = wait_for(
        "the experiment to fail",
        lambda: (s := status_of(kube, namespace, "toy")).get("phase") and s,
        60,
    )
    assert status["phase"] == "Failed" and status["reason"] == "SpecInvalid"
    assert "spec.parameters[0].int: min (5) must be less than max (3)" in status["message"]
    assert BatchV1Api(kube).list_namespaced_job(namespace).items == []


def create(kube: ApiClient, namespace: str, doc: dict[str, Any]) -> None:
    CustomObjectsApi(kube).create_namespaced_custom_object(*API, namespace, "hpoexperiments", doc)


def finished(kube: ApiClient, namespace: str, timeout: float = 120) -> Any:
    def done() -> dict[str, Any] | None:
        status = status_of(kube, namespace, "toy")
        return status if status.get("phase") in ("Succeeded", "Failed") else None

    return wait_for(
        "the experiment to finish", done, timeout, state=lambda: status_of(kube, namespace, "toy")
    )


def job_names(kube: ApiClient, namespace: str) -> list[str]:
    return sorted(j.metadata.name for j in BatchV1Api(kube).list_namespaced_job(namespace).items)


def test_events_tell_the_story(
    kube: ApiClient, namespace: str, sim: Any, operator: OperatorProcess
) -> None:
    create(kube, namespace, toy(parameters=[{"name": "x", "values": [0.2]}]))
    assert finished(kube, namespace)["phase"] == "Succeeded"
    expected = {"TrialCreated", "TrialSucceeded", "ExperimentSucceeded"}

    def reasons() -> set[str]:
        events = CoreV1Api(kube).list_namespaced_event(namespace).items
        return {e.reason for e in events if e.involved_object.kind == "HPOExperiment"}

    wait_for("the experiment's events", lambda: reasons() >= expected, timeout=20)
    events = CoreV1Api(kube).list_namespaced_event(namespace).items
    told = [(e.reason, e.message) for e in events if e.involved_object.kind == "HPOExperiment"]
    assert len(told) == len(set(told)), told  # each transition is told once
    assert "TrialFailed" not in reasons()


def test_an_operator_killed_and_restarted_loses_nothing_and_duplicates_nothing(
    kube: ApiClient, namespace: str, sim: Any, operator: OperatorProcess, tmp_path: Path
) -> None:
    values = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    doc = toy(env={"TOY_SLEEP": "0.4"}, parameters=[{"name": "x", "values": values}])
    create(kube, namespace, doc)
    for jobs_seen in (1, 3, 5):
        wait_for(f"{jobs_seen} Jobs", lambda n=jobs_seen: len(job_names(kube, namespace)) >= n, 60)
        operator.kill()
        operator.start()
    status = finished(kube, namespace)
    assert job_names(kube, namespace) == [f"toy-t{i}" for i in range(6)]
    assert status["phase"] == "Succeeded" and status["trials"]["succeeded"] == 6
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump(doc))
    command = [
        sys.executable,
        "-m",
        "hpo_operator.cli",
        "run",
        str(path),
        "--out",
        str(tmp_path / "o"),
    ]
    assert subprocess.run(command, capture_output=True, timeout=120).returncode == 0
    local = yaml.safe_load((tmp_path / "o" / "status.yaml").read_text())
    keep = ("name", "parameters", "phase", "objective", "step", "curve")
    assert [{k: r.get(k) for k in keep} for r in status["results"]] == [
        {k: r.get(k) for k in keep} for r in local["results"]
    ]
    assert status["bestTrial"] == local["bestTrial"]


def test_two_gpus_run_two_trials_at_once_and_the_rest_wait_visibly(
    kube: ApiClient, namespace: str, sim: Any, operator: OperatorProcess
) -> None:
    doc = toy(
        env={"TOY_SLEEP": "0.7"},
        parameters=[{"name": "x", "values": [0.1, 0.2, 0.3, 0.4]}],
        parallelism=4,
        trialResources={"gpus": 1},
    )
    create(kube, namespace, doc)

    def waiting() -> list[dict[str, Any]]:
        rows = status_of(kube, namespace, "toy").get("results", [])
        gpu = "Insufficient nvidia.com/gpu"
        return [r for r in rows if r["phase"] == "Pending" and gpu in (r.get("reason") or "")]

    assert wait_for("a trial waiting for a GPU", waiting, timeout=60)
    assert finished(kube, namespace)["trials"]["succeeded"] == 4
    spans = [json.loads(p.read_text()) for p in sim.work_dir.glob("volumes/*/toy/*/times.json")]
    assert len(spans) == 4
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    running = most = 0
    for _, change in events:
        running += change
        most = max(most, running)
    assert most == 2


def test_failing_trials_fail_alone_until_max_failed_trials(
    kube: ApiClient, namespace: str, sim: Any, operator: OperatorProcess
) -> None:
    doc = toy(
        env={"TOY_BAD_X": "0.5", "TOY_FAIL_ABOVE": "0.8"},
        parameters=[{"name": "x", "values": [0.1, 0.5, 0.9, 0.2]}],
        maxFailedTrials=3,
        parallelism=1,
    )
    create(kube, namespace, doc)
    status = finished(kube, namespace)
    assert status["phase"] == "Succeeded", status  # two failures, maxFailedTrials is 3
    rows = {r["name"]: r for r in status["results"]}
    assert [rows[f"toy-t{i}"]["phase"] for i in range(4)] == [
        "Succeeded", "Failed", "Failed", "Succeeded",
    ]  # fmt: skip
    assert "val_dict_list.json record 0" in rows["toy-t1"]["reason"]
    assert "code 3" in rows["toy-t2"]["reason"]
    assert rows["toy-t2"]["curve"]  # what the trial measured before failing is kept


def test_an_unknown_image_fails_its_trials_and_then_the_experiment(
    kube: ApiClient, namespace: str, sim: Any, operator: OperatorProcess
) -> None:
    doc = toy(image="registry.example/no-such-trainer:1", maxFailedTrials=2, parallelism=1)
    create(kube, namespace, doc)
    status = finished(kube, namespace)
    assert status["phase"] == "Failed" and status["reason"] == "MaxFailedTrialsReached"
    assert all("image cannot be pulled" in r["reason"] for r in status["results"])
    assert status["trials"]["total"] == 2


def test_schema_errors_are_refused_by_the_api_server(kube: ApiClient, namespace: str) -> None:
    doc = toy()
    doc["spec"]["objective"]["direction"] = "maximise"
    with pytest.raises(ApiException) as refused:
        create(kube, namespace, doc)
    assert refused.value.status == 422
    assert "spec.objective.direction" in str(refused.value.body)


def test_deleting_the_experiment_removes_its_jobs_and_config_maps(
    kube: ApiClient, namespace: str, sim: Any, operator: OperatorProcess
) -> None:
    create(kube, namespace, toy(parameters=[{"name": "x", "values": [0.2, 0.3]}]))
    finished(kube, namespace)
    core = CoreV1Api(kube)
    assert len(job_names(kube, namespace)) == 2
    CustomObjectsApi(kube).delete_namespaced_custom_object(
        *API, namespace, "hpoexperiments", "toy", propagation_policy="Background"
    )
    trial_maps = lambda: [c for c in core.list_namespaced_config_map(namespace).items  # noqa: E731
                          if c.metadata.name.startswith("toy-t")]  # fmt: skip
    wait_for("Jobs and ConfigMaps to be collected",
             lambda: not job_names(kube, namespace) and not trial_maps(), timeout=30)  # fmt: skip


def test_the_digits_example_applied_with_kubectl_matches_the_local_runner(
    kube: ApiClient,
    namespace: str,
    sim: Any,
    operator: OperatorProcess,
    control_plane: ControlPlane,
    fixtures: Path,
    tmp_path: Path,
) -> None:
    """examples/digits-steps.yaml with the real retrainer, a shorter grid, applied as a user
    would; the same manifest through `hpo run` finds the same best trial."""
    path = short_digits_manifest(fixtures, tmp_path)
    env = {**os.environ, "KUBECONFIG": str(control_plane.kubeconfig)}
    applied = subprocess.run(
        [str(Path(sys.executable).parent / "kubectl"), "apply", "-n", namespace, "-f", str(path)],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert applied.returncode == 0, applied.stderr

    def done() -> dict[str, Any] | None:
        status = status_of(kube, namespace, "digits-steps")
        return status if status.get("phase") in ("Succeeded", "Failed") else None

    status = wait_for(
        "the digits experiment", done, 300, lambda: status_of(kube, namespace, "digits-steps")
    )
    assert status["phase"] == "Succeeded", status
    assert [r["parameters"]["how_many_training_steps"] for r in status["results"]] == [20, 40, 60]
    local_env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    command = [sys.executable, "-m", "hpo_operator.cli", "run", str(path)]
    local_run = subprocess.run(
        [*command, "--out", str(tmp_path / "o")], capture_output=True, env=local_env, timeout=300
    )
    assert local_run.returncode == 0, local_run.stderr
    local = yaml.safe_load((tmp_path / "o" / "status.yaml").read_text())
    assert status["bestTrial"] == local["bestTrial"]


def test_changing_the_parameter_space_of_a_started_experiment_is_refused(
    kube: ApiClient, namespace: str, sim: Any, operator: OperatorProcess
) -> None:
    doc = toy(env={"TOY_SLEEP": "0.5"}, parallelism=1)
    create(kube, namespace, doc)
    wait_for("the first Job", lambda: job_names(kube, namespace), timeout=60)
    CustomObjectsApi(kube).patch_namespaced_custom_object(
        *API, namespace, "hpoexperiments", "toy",
        {"spec": {"parameters": [{"name": "x", "values": [5.0]}]}},
    )  # fmt: skip
    status = finished(kube, namespace)
    assert status["phase"] == "Failed" and status["reason"] == "ParameterSpaceChangeRefused"
    assert "toy-t0" in status["message"] and "restore it" in status["message"]
    assert job_names(kube, namespace) == ["toy-t0"]  # nothing was created from the new space


def test_a_quota_that_refuses_trials_shows_in_the_status_and_nothing_is_lost_when_lifted(
    kube: ApiClient, namespace: str, sim: Any, operator: OperatorProcess
) -> None:
    core = CoreV1Api(kube)
    refuse_jobs(kube, namespace)
    create(kube, namespace, toy())

    def refused() -> dict[str, Any] | None:
        status = status_of(kube, namespace, "toy")
        return status if status.get("reason") == "TrialCreateRefused" else None

    status = wait_for("the refusal in the status", refused, timeout=60)
    assert status["phase"] == "Pending", status
    assert status["message"].startswith("creating Job toy-t0 was refused (403): "), status
    assert "exceeded quota: no-jobs" in status["message"], status
    assert job_names(kube, namespace) == []

    def warned() -> list[str]:
        events = core.list_namespaced_event(namespace).items
        return [e.message for e in events if e.reason == "TrialCreateRefused"]

    (told,) = wait_for("the Warning event", warned, timeout=20)
    assert "exceeded quota: no-jobs" in told

    core.delete_namespaced_resource_quota("no-jobs", namespace)
    status = finished(kube, namespace)
    assert (status["phase"], status["trials"]["total"]) == ("Succeeded", 3), status
    assert job_names(kube, namespace) == ["toy-t0", "toy-t1", "toy-t2"]
    for job in BatchV1Api(kube).list_namespaced_job(namespace).items:
        config = core.read_namespaced_config_map(job.metadata.name, namespace).data["config.json"]
        assert json.loads(config) == json.loads(job.metadata.annotations["hpo.dev/parameters"])
    assert len(warned()) == 1  # told once, not every reconcile


def test_create_rewrites_a_stale_config_map_and_names_a_refusal(
    kube: ApiClient, namespace: str
) -> None:
    from hpo_operator.k8s.api import Cluster, Refused

    errors: list[tuple[str, int]] = []
    cluster = Cluster(kube, on_error=lambda verb, code: errors.append((verb, code)))
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "toy-t0"}}
    assert cluster.create(namespace, {**config, "data": {"config.json": '{"x": 1}'}})
    assert not cluster.create(namespace, {**config, "data": {"config.json": '{"x": 2}'}})
    read = CoreV1Api(kube).read_namespaced_config_map
    assert read("toy-t0", namespace).data == {"config.json": '{"x": 1}'}  # kept: no replace
    assert not cluster.create(
        namespace, {**config, "data": {"config.json": '{"x": 3}'}}, replace=True
    )
    assert read("toy-t0", namespace).data == {"config.json": '{"x": 3}'}

    refuse_jobs(kube, namespace)
    with pytest.raises(Refused) as refusal:
        cluster.create(namespace, bare_job("toy-t0"))
    assert (refusal.value.kind, refusal.value.name, refusal.value.code) == ("Job", "toy-t0", 403)
    assert "exceeded quota: no-jobs" in refusal.value.message
    assert str(refusal.value).startswith(
        'creating Job toy-t0 was refused (403): jobs.batch "toy-t0" is forbidden: exceeded quota'
    )
    assert errors == [("create", 403)]
