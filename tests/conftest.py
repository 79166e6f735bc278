"""Shared fixtures: manifests as dicts, built the way users write them."""

from __future__ import annotations

import copy
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from kubernetes.client import ApiClient, BatchV1Api, CoreV1Api
from kubernetes.client.exceptions import ApiException
from kubernetes.config import new_client_from_config

from cluster.control_plane import ControlPlane
from cluster.node_simulator import NodeSimulator, NodeSpec

ROOT = Path(__file__).resolve().parent.parent

BASE: dict[str, Any] = {
    "apiVersion": "hpo.dev/v1alpha1",
    "kind": "HPOExperiment",
    "metadata": {"name": "exp"},
    "spec": {
        "objective": {"metric": "accuracy", "direction": "maximize"},
        "algorithm": {"name": "random", "seed": 7},
        "parameters": [
            {"name": "learning_rate", "float": {"min": 1e-4, "max": 1e-1, "log": True}},
            {"name": "steps", "int": {"min": 100, "max": 2000, "step": 100}},
            {"name": "optimizer", "categorical": ["sgd", "adam", "rmsprop"]},
        ],
        "maxTrials": 20,
        "trialTemplate": {
            "spec": {
                "containers": [
                    {"name": "trainer", "image": "python:3.11", "command": ["python3", "t.py"]}
                ]
            }
        },
    },
}


def manifest(**spec: Any) -> dict[str, Any]:
    """A valid manifest with some spec fields replaced (None deletes a field)."""
    doc = copy.deepcopy(BASE)
    for key, value in spec.items():
        if value is None:
            doc["spec"].pop(key, None)
        else:
            doc["spec"][key] = value
    return doc


@pytest.fixture
def root() -> Path:
    return ROOT


# --- the real local control plane (tests/cluster/) -------------------------------------------


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """etcd + kube-apiserver + kube-controller-manager on loopback, for the whole session.
    Builds the binaries on first use (cached outside the repository)."""
    plane = ControlPlane(tmp_path_factory.mktemp("control-plane"))
    try:
        plane.start()
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def kube(control_plane: ControlPlane) -> Iterator[ApiClient]:
    """An admin API client for the session's control plane."""
    client = new_client_from_config(config_file=str(control_plane.kubeconfig))
    yield client
    client.close()


@pytest.fixture
def namespace(kube: ApiClient) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards (the namespace controller empties it)."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    core = CoreV1Api(kube)
    core.create_namespace({"metadata": {"name": name}})
    yield name
    core.delete_namespace(name)


@pytest.fixture
def sim(kube: ApiClient, tmp_path: Path) -> Iterator[NodeSimulator]:
    """One simulated node with 8 CPUs, 32 GiB and 2 GPUs, new for each test."""
    node = NodeSpec(
        name=f"sim-{uuid.uuid4().hex[:6]}",
        capacity={"cpu": "8", "memory": "32Gi", "nvidia.com/gpu": "2", "pods": "110"},
    )
    with NodeSimulator(kube, [node], tmp_path / "sim") as simulator:
        simulator.wait_ready(60)
        yield simulator


T = TypeVar("T")


def wait_for(
    what: str, probe: Callable[[], T], timeout: float = 30.0, state: Callable[[], Any] | None = None
) -> T:
    """Poll `probe` until it returns something truthy; fail naming `what` and the last state."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            seen = state() if state else value
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; saw {seen}")
        time.sleep(0.1)


NO_JOBS = {"metadata": {"name": "no-jobs"}, "spec": {"hard": {"count/jobs.batch": "0"}}}


def bare_job(name: str) -> dict[str, Any]:
    """The smallest valid Job manifest."""
    container = {"name": "main", "image": "python:3.11"}
    template = {"spec": {"restartPolicy": "Never", "containers": [container]}}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {"template": template},
    }


def refuse_jobs(kube: ApiClient, namespace: str) -> None:
    """Put a ResourceQuota allowing no Job in `namespace`, and return once the API server
    enforces it: quota admission goes by the quota's status, which the quota controller fills
    in a moment later, so until then a Job is still let in. Probed with dry-run creates."""
    CoreV1Api(kube).create_namespaced_resource_quota(namespace, NO_JOBS)
    probe = bare_job("quota-probe")

    def refused() -> bool:
        try:
            BatchV1Api(kube).create_namespaced_job(namespace, probe, dry_run="All")
        except ApiException as exc:
            if exc.status == 403:
                return True
            raise
        return False

    wait_for(f"the quota in {namespace} to refuse Jobs", refused, timeout=60)


@pytest.fixture(scope="session")
def fixtures(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fixtures")
    subprocess.run(
        [sys.executable, "-m", "hpo_trainer.fixtures", "--out", str(out)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    return out


def short_digits_manifest(fixtures: Path, folder: Path) -> Path:
    """examples/digits-steps.yaml as written but for a short grid (20, 40, 60 steps,
    evaluated every 20) on the fixtures in `fixtures`; written to folder/digits.yaml."""
    import yaml

    doc = yaml.safe_load((ROOT / "examples" / "digits-steps.yaml").read_text())
    doc["spec"]["parameters"][0]["int"] = {"min": 20, "max": 60, "step": 20}
    container = doc["spec"]["trialTemplate"]["spec"]["containers"][0]
    container["env"] = [{"name": "FIXTURES", "value": str(fixtures)}]
    container["args"] = [
        a.replace("--eval_step_interval=100", "--eval_step_interval=20") for a in container["args"]
    ]
    path = folder / "digits.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path
