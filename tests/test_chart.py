"""The Helm chart `charts/hpo-operator`: it lints, its rendering is valid Kubernetes 1.29, its CRD
is the repository's CRD, its Deployment carries the settings and the lock-down, and its RBAC is
enough: the operator, authenticated as the chart's ServiceAccount (not admin), runs an experiment
to the end on the real control plane without a single 403."""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes.client import ApiClient, CoreV1Api, CustomObjectsApi, RbacAuthorizationV1Api
from kubernetes.client.exceptions import ApiException

from cluster.control_plane import ControlPlane, free_port, write_kubeconfig
from conftest import ROOT, wait_for
from test_operator import API, KOPF, status_of, toy

BIN = Path(sys.executable).parent
HELM, KUBECTL = str(BIN / "helm"), str(BIN / "kubectl")
CHART = ROOT / "charts" / "hpo-operator"
NAMESPACED = ("--set", "rbac.scope=namespaces", "--set", "namespaces={team-a,team-b}")
MODES = {"cluster": (), "namespaces": NAMESPACED}
RBAC_KINDS = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
# What an authorization failure looks like in kopf's and the kubernetes client's logs.
DENIED = ("403", "Forbidden", "forbidden", "Not enough permissions")


def helm(*args: str) -> str:
    done = subprocess.run([HELM, *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def render(*args: str, release: str = "hpo", namespace: str = "hpo-system") -> list[dict[str, Any]]:
    out = helm("template", release, str(CHART), "--namespace", namespace, "--include-crds", *args)
    return [doc for doc in yaml.safe_load_all(out) if doc]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, [d["kind"] for d in docs]
    return found[0]


# --- static checks -----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_helm_lint_passes(mode: str) -> None:
    out = helm("lint", "--strict", str(CHART), *MODES[mode])
    assert "0 chart(s) failed" in out


@pytest.mark.parametrize("mode", MODES)
def test_the_rendering_is_valid_kubernetes_1_29(mode: str) -> None:
    docs = render(*MODES[mode])
    kinds = sorted({d["kind"] for d in docs})
    assert {"CustomResourceDefinition", "Deployment", *RBAC_KINDS} - {"Role", "RoleBinding"} <= {
        *kinds
    }
    for doc in docs:
        # Raises ValidationError (strict: unknown fields too) naming the bad field.
        assert kubernetes_validate.validate(doc, "1.29.0", strict=True) == "1.29"


def test_a_bad_scope_or_an_empty_namespace_list_is_refused() -> None:
    for args in (("--set", "rbac.scope=everywhere"), ("--set", "rbac.scope=namespaces")):
        done = subprocess.run(
            [HELM, "template", "hpo", str(CHART), *args], capture_output=True, text=True
        )
        assert done.returncode != 0 and "rbac.scope" in done.stderr, done.stderr


def test_the_charts_crd_is_the_repositorys_crd() -> None:
    chart_crd = CHART / "crds" / "hpoexperiment.yaml"
    assert chart_crd.read_bytes() == (ROOT / "crds" / "hpoexperiment.yaml").read_bytes()
    assert sorted(p.name for p in (CHART / "crds").iterdir()) == ["hpoexperiment.yaml"]


def test_the_deployment_is_locked_down_and_takes_its_settings_from_values() -> None:
    docs = render(
        "--set", "operator.image=registry.example/hpo-operator:1.2.3",
        "--set", "settings.reconcileSeconds=7",
        "--set", "settings.unschedulableSeconds=120",
        "--set", "settings.gpuResourceName=nvidia.com/mig-1g.10gb",
        "--set", "settings.trainerPython=python3.11",
        "--set", "operator.imagePullSecrets[0].name=regcred",
        "--set", "operator.nodeSelector.pool=system",
    )  # fmt: skip
    deployment = one(docs, "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["nodeSelector"] == {"pool": "system"}
    assert pod["serviceAccountName"] == one(docs, "ServiceAccount")["metadata"]["name"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    assert container["image"] == "registry.example/hpo-operator:1.2.3"
    assert container["args"] == ["--liveness=http://0.0.0.0:8080/healthz", "--all-namespaces"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert {"name": "health", "containerPort": 8080, "protocol": "TCP"} in container["ports"]
    security = container["securityContext"]
    assert security["runAsNonRoot"] is True and security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert {e["name"]: e["value"] for e in container["env"]} == {
        "HPO_OPERATOR_IMAGE": "registry.example/hpo-operator:1.2.3",
        "HPO_RECONCILE_SECONDS": "7",
        "HPO_UNSCHEDULABLE_SECONDS": "120",
        "HPO_GPU_RESOURCE_NAME": "nvidia.com/mig-1g.10gb",
        "HPO_TRAINER_PYTHON": "python3.11",
    }


def test_namespaced_mode_binds_a_role_per_namespace_and_limits_the_operator() -> None:
    docs = render(*NAMESPACED)
    roles = {d["metadata"]["namespace"] for d in docs if d["kind"] == "Role"}
    bindings = {d["metadata"]["namespace"] for d in docs if d["kind"] == "RoleBinding"}
    assert roles == bindings == {"team-a", "team-b"}
    # Only kopf's discovery stays cluster-wide; the operator's own rules live in the Roles.
    (cluster_role,) = [d for d in docs if d["kind"] == "ClusterRole"]
    assert {r for rule in cluster_role["rules"] for r in rule["resources"]} == {
        "customresourcedefinitions",
        "namespaces",
    }
    (container,) = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert container["args"][1:] == ["--namespace=team-a", "--namespace=team-b"]


# --- the RBAC proof on the real control plane --------------------------------------------------


def kubectl_apply(control_plane: ControlPlane, docs: list[dict[str, Any]]) -> None:
    done = subprocess.run(
        [KUBECTL, "--kubeconfig", str(control_plane.kubeconfig), "apply", "-f", "-"],
        input=yaml.safe_dump_all(docs), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def service_account_token(kube: ApiClient, namespace: str, name: str) -> str:
    """The token of the Secret the 1.20 token controller creates for a ServiceAccount."""
    core = CoreV1Api(kube)

    def token() -> str | None:
        for ref in core.read_namespaced_service_account(name, namespace).secrets or []:
            secret = core.read_namespaced_secret(ref.name, namespace)
            if secret.type == "kubernetes.io/service-account-token" and secret.data:
                return base64.b64decode(secret.data["token"]).decode()
        return None

    return wait_for(f"the token of ServiceAccount {name}", token, 30)


def account_kubeconfig(control_plane: ControlPlane, token: str, path: Path) -> Path:
    admin = yaml.safe_load(control_plane.kubeconfig.read_text())
    ca = base64.b64decode(admin["clusters"][0]["cluster"]["certificate-authority-data"])
    with tempfile.NamedTemporaryFile(suffix=".crt") as handle:
        handle.write(ca)
        handle.flush()
        write_kubeconfig(path, control_plane.server, Path(handle.name), token)
    return path


def denials(log: str) -> list[str]:
    """The log records (a line and its continuation lines) that report an authorization failure.
    A namespace that an earlier test is deleting answers 403 to creations in it as well; that is
    not a grant the chart could give, so those records are left out."""
    records = re.split(r"\n(?=\[\d{4}-\d\d-\d\d )", log)
    return [
        record
        for record in records
        if any(word in record for word in DENIED) and "is being terminated" not in record
    ]


@pytest.fixture
def delete_cluster_scoped(kube: ApiClient) -> Iterator[list[dict[str, Any]]]:
    """ClusterRoles and ClusterRoleBindings a test installed, deleted afterwards."""
    installed: list[dict[str, Any]] = []
    yield installed
    rbac = RbacAuthorizationV1Api(kube)
    for doc in installed:
        delete = {
            "ClusterRole": rbac.delete_cluster_role,
            "ClusterRoleBinding": rbac.delete_cluster_role_binding,
        }[doc["kind"]]
        try:
            delete(doc["metadata"]["name"])
        except ApiException as exc:
            if exc.status != 404:
                raise


@pytest.mark.parametrize("mode", MODES)
def test_the_operator_runs_an_experiment_with_the_charts_rbac_and_no_403(
    control_plane: ControlPlane,
    kube: ApiClient,
    namespace: str,
    sim: Any,
    tmp_path: Path,
    delete_cluster_scoped: list[dict[str, Any]],
    mode: str,
) -> None:
    # The operator's ServiceAccount lives in the test namespace; its Role (namespaced mode) too.
    scope = ("--set", "rbac.scope=namespaces", "--set", f"namespaces={{{namespace}}}")
    release = f"hpo-{uuid.uuid4().hex[:6]}"
    docs = render(*(scope if mode == "namespaces" else ()), release=release, namespace=namespace)
    rbac = [d for d in docs if d["kind"] in RBAC_KINDS]
    delete_cluster_scoped.extend(d for d in rbac if d["kind"].startswith("Cluster"))
    kubectl_apply(control_plane, rbac)
    account = one(docs, "ServiceAccount")["metadata"]["name"]
    token = service_account_token(kube, namespace, account)
    kubeconfig = account_kubeconfig(control_plane, token, tmp_path / "operator.kubeconfig")

    # The operator as the Deployment starts it, with the Deployment's arguments.
    (container,) = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    args = [a for a in container["args"] if not a.startswith("--liveness")]
    env = {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        "HPO_OPERATOR_IMAGE": "registry.example/hpo-operator:0.1",
        "HPO_RECONCILE_SECONDS": "1",
        "HPO_METRICS_PORT": str(free_port()),
        "HPO_METRICS_ADDRESS": "127.0.0.1",
    }
    log_path = tmp_path / "operator.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [KOPF, "run", "-m", "hpo_operator.handlers", "--standalone", *args],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            doc = toy()
            CustomObjectsApi(kube).create_namespaced_custom_object(
                *API, namespace, "hpoexperiments", doc
            )

            # Done when the experiment ends, or as soon as the operator is refused something.
            def ended() -> dict[str, Any] | None:
                status = status_of(kube, namespace, "toy")
                if status.get("phase") in ("Succeeded", "Failed"):
                    return status
                return {"phase": "Denied"} if denials(log_path.read_text()) else None

            status = wait_for(
                "the experiment to finish",
                ended,
                timeout=120,
                state=lambda: status_of(kube, namespace, "toy"),
            )
            time.sleep(2)  # a few more reconciles and event posts after the end
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    text = log_path.read_text()
    print(text[-4000:])
    assert denials(text) == []
    assert status["phase"] == "Succeeded", status
    assert status["trials"]["succeeded"] == 3
    # The operator did use its grants: children exist, created with the ServiceAccount's token.
    assert len(CoreV1Api(kube).list_namespaced_config_map(namespace).items) >= 3
