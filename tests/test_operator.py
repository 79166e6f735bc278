"""The operator (kopf, as `kopf run` would start it) on the real local control plane with the
node simulator: an experiment applied with the API runs to the end, and a spec the parser
refuses ends Failed with its field path."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.client import ApiClient, BatchV1Api, CustomObjectsApi

from cluster.control_plane import ControlPlane
from conftest import ROOT, manifest, wait_for

TOY = ROOT / "tests" / "trainers" / "toy_trainer.py"
KOPF = str(Path(sys.executable).parent / "kopf")
API = ("hpo.dev", "v1alpha1")


@pytest.fixture
def operator(control_plane: ControlPlane, namespace: str, tmp_path: Path) -> Iterator[None]:
    env = {
        **os.environ,
        "KUBECONFIG": str(control_plane.kubeconfig),
        "HPO_OPERATOR_IMAGE": "registry.example/hpo-operator:0.1",
        "HPO_RECONCILE_SECONDS": "1",
    }
    log = (tmp_path / "operator.log").open("wb")
    proc = subprocess.Popen(
        [KOPF, "run", "-m", "hpo_operator.handlers", "--standalone", "--namespace", namespace],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
        print((tmp_path / "operator.log").read_text()[-4000:])


def toy(**spec: Any) -> dict[str, Any]:
    container = {"name": "trainer", "image": "python:3.11", "command": ["python3", str(TOY)]}
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
    kube: ApiClient, namespace: str, sim: Any, operator: None, tmp_path: Path
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
    kube: ApiClient, namespace: str, operator: None
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
