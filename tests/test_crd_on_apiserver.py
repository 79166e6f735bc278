"""The CRD on the real kube-apiserver (1.20): it installs, `kubectl explain` teaches it, the
examples are accepted, broken manifests are refused, and the status document the core builds
survives the round trip through the status subresource unpruned."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.client import ApiClient, ApiextensionsV1Api, CustomObjectsApi

from cluster.control_plane import ControlPlane
from conftest import ROOT
from hpo_operator.core.plan import decide
from hpo_operator.core.spec import parse_experiment
from hpo_operator.core.status import build_status
from hpo_operator.core.trial import FAILED, RUNNING, SUCCEEDED, Trial

KUBECTL = str(Path(sys.executable).parent / "kubectl")
CRD = ROOT / "crds" / "hpoexperiment.yaml"
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
BROKEN = sorted((ROOT / "tests" / "manifests" / "broken").glob("*.yaml"))
# v1 CRDs prune unknown fields instead of refusing them, and 1.20 has no server-side field
# validation: kubectl's client-side check (from the published schema) is what refuses these.
GROUP, VERSION, PLURAL = "hpo.dev", "v1alpha1", "hpoexperiments"


def kubectl(
    plane: ControlPlane, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBECONFIG": str(plane.kubeconfig)}
    return subprocess.run(
        [KUBECTL, *args], input=stdin, capture_output=True, text=True, env=env, timeout=60
    )


@pytest.fixture(scope="module")
def crd(control_plane: ControlPlane, kube: ApiClient) -> None:
    applied = kubectl(control_plane, "apply", "-f", str(CRD))
    assert applied.returncode == 0, applied.stderr
    api = ApiextensionsV1Api(kube)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        got = api.read_custom_resource_definition(f"{PLURAL}.{GROUP}")
        if any(c.type == "Established" and c.status == "True" for c in got.status.conditions or []):
            break
        time.sleep(0.2)
    else:
        pytest.fail("the CRD never became Established")
    # kubectl finds the resource through discovery, and explains it from the OpenAPI document,
    # which the API server republishes a few seconds after a CRD changes.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if kubectl(control_plane, "explain", "hpoexperiment.spec.objective").returncode == 0:
            return
        time.sleep(0.5)
    pytest.fail("kubectl never found HPOExperiment in the API's OpenAPI document")


def test_kubectl_explain_teaches_the_spec(control_plane: ControlPlane, crd: None) -> None:
    spec = kubectl(control_plane, "explain", "hpoexperiment.spec")
    assert spec.returncode == 0, spec.stderr
    for field in (
        "objective",
        "algorithm",
        "parameters",
        "maxTrials",
        "parallelism",
        "trialTemplate",
    ):
        assert field in spec.stdout
    deep = kubectl(control_plane, "explain", "hpoexperiment.spec.parameters.int.step")
    assert deep.returncode == 0, deep.stderr
    assert "DESCRIPTION" in deep.stdout.upper() and len(deep.stdout.split()) > 10


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_are_accepted(
    control_plane: ControlPlane, crd: None, namespace: str, path: Path
) -> None:
    applied = kubectl(control_plane, "apply", "-n", namespace, "--dry-run=server", "-f", str(path))
    assert applied.returncode == 0, applied.stderr


@pytest.mark.parametrize("path", BROKEN, ids=lambda p: p.name)
def test_broken_manifests_are_refused(
    control_plane: ControlPlane, crd: None, namespace: str, path: Path
) -> None:
    applied = kubectl(control_plane, "apply", "-n", namespace, "--dry-run=server", "-f", str(path))
    assert applied.returncode != 0, f"{path.name} was accepted"
    expected = path.read_text().splitlines()[0].removeprefix("# expect:").strip()
    leaf = expected.rsplit(".", 1)[-1].split("[")[0]
    assert leaf in applied.stderr, applied.stderr


def test_status_round_trips_and_printer_columns_show_it(
    control_plane: ControlPlane, kube: ApiClient, crd: None, namespace: str
) -> None:
    manifest = yaml.safe_load((ROOT / "examples" / "quickstart.yaml").read_text())
    objects = CustomObjectsApi(kube)
    objects.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, manifest)
    spec = parse_experiment(manifest)
    params = [
        {"learning_rate": 0.1, "how_many_training_steps": 300, "batch_size": 16},
        {"learning_rate": 0.01, "how_many_training_steps": 100, "batch_size": 4},
        {"learning_rate": 0.5, "how_many_training_steps": 600, "batch_size": 64},
    ]
    trials = [
        Trial(0, "quickstart-t0", params[0], SUCCEEDED, 0.28519, 150, ((50, 0.3), (150, 0.28519))),
        Trial(
            1, "quickstart-t1", params[1], FAILED, None, None, ((50, 0.6),), "exited with code 3"
        ),
        Trial(2, "quickstart-t2", params[2], RUNNING),
    ]
    status = build_status(
        spec, trials, decide(spec, trials, False), now="2026-12-04T20:00:00Z", observed_generation=1
    )
    objects.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL, "quickstart", {"status": status}
    )
    stored = objects.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "quickstart")
    assert json.loads(json.dumps(stored["status"])) == json.loads(json.dumps(status))
    table = kubectl(control_plane, "get", "hpox", "-n", namespace)
    assert table.returncode == 0, table.stderr
    header, row = table.stdout.splitlines()[:2]
    assert header.split()[:5] == ["NAME", "PHASE", "BEST", "TRIALS", "AGE"]
    assert row.split()[:4] == ["quickstart", "Running", "0.28519", "2/12"]


def test_status_writes_do_not_touch_the_spec(
    control_plane: ControlPlane, kube: ApiClient, crd: None, namespace: str
) -> None:
    manifest: dict[str, Any] = yaml.safe_load((ROOT / "examples" / "quickstart.yaml").read_text())
    objects = CustomObjectsApi(kube)
    objects.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, manifest)
    objects.patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        namespace,
        PLURAL,
        "quickstart",
        {"spec": {"maxTrials": 99}, "status": {"phase": "Running"}},
    )
    stored = objects.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "quickstart")
    assert stored["spec"]["maxTrials"] == 12 and stored["status"]["phase"] == "Running"
