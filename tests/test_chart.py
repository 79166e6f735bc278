"""The Helm chart `charts/hpo-operator`: it lints, its rendering is valid Kubernetes 1.29, its CRD
is the repository's CRD, its Deployment carries the settings and the lock-down, its metrics
Service, ServiceMonitor and Grafana dashboard ConfigMap are valid and wired to each other, and its
RBAC is enough: the operator, authenticated as the chart's ServiceAccount (not admin), runs an
experiment to the end on the real control plane without a single 403."""

from __future__ import annotations

import base64
import json
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
from cloudcoil.models.prometheus_operator.v1 import ServiceMonitor
from kubernetes.client import ApiClient, CoreV1Api, CustomObjectsApi, RbacAuthorizationV1Api
from kubernetes.client.exceptions import ApiException

from cluster.control_plane import ControlPlane, write_kubeconfig
from conftest import ROOT, wait_for
from test_operator import API, OperatorProcess, status_of, toy

BIN = Path(sys.executable).parent
HELM, KUBECTL = str(BIN / "helm"), str(BIN / "kubectl")
CHART = ROOT / "charts" / "hpo-operator"
NAMESPACED = ("--set", "rbac.scope=namespaces", "--set", "namespaces={team-a,team-b}")
MODES = {"cluster": (), "namespaces": NAMESPACED}
# Every optional metrics object on, and metrics off (which also turns the ServiceMonitor off).
ALL_ON = (
    "--set", "metrics.serviceMonitor.enabled=true",
    "--set", "dashboard.enabled=true",
    "--set", "metrics.scrapeAnnotations=true",
)  # fmt: skip
METRICS_OFF = ("--set", "metrics.enabled=false", "--set", "metrics.serviceMonitor.enabled=true")
LINTED = {**MODES, "all-on": ALL_ON, "metrics-off": METRICS_OFF}
DASHBOARD = CHART / "dashboards" / "hpo.json"
RBAC_KINDS = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
# What an authorization failure looks like in kopf's and the kubernetes client's logs: the status
# code as a number of its own (not the milliseconds of a timestamp such as 23:34:37,403), or words.
DENIED = re.compile(r"(?<![\d,.:])403(?!\d)|Forbidden|forbidden|Not enough permissions")
# The timestamp that begins every log record.
STAMP = re.compile(r"\[\d{4}-\d\d-\d\d [\d:,]+\] ")


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


def kinds_of(docs: list[dict[str, Any]]) -> list[str]:
    return sorted(d["kind"] for d in docs)


def unknown_fields(doc: Any, known: Any, path: str = "") -> list[str]:
    """The paths of the fields in `doc` that `known` (its round trip through a model) lacks."""
    if isinstance(doc, dict) and isinstance(known, dict):
        found: list[str] = []
        for key, value in doc.items():
            where = f"{path}.{key}"
            found += unknown_fields(value, known[key], where) if key in known else [where]
        return found
    if isinstance(doc, list) and isinstance(known, list) and len(doc) == len(known):
        pairs = enumerate(zip(doc, known, strict=True))
        return [p for i, (d, k) in pairs for p in unknown_fields(d, k, f"{path}[{i}]")]
    return []


def validate_service_monitor(doc: dict[str, Any]) -> None:
    """Raises ValueError (pydantic's ValidationError is one) unless `doc` is a valid
    monitoring.coreos.com/v1 ServiceMonitor without unknown fields: the model's round trip drops
    those, so a misspelt field makes the dump differ from the document."""
    model = ServiceMonitor.model_validate(doc)
    dumped = model.model_dump(exclude_unset=True, by_alias=True, mode="json")
    if dumped != doc:
        raise ValueError(f"not a ServiceMonitor field: {unknown_fields(doc, dumped)}; {dumped}")


def validate(doc: dict[str, Any]) -> None:
    """Validates one rendered object: the ServiceMonitor against the Prometheus Operator's
    model, everything else against Kubernetes 1.29 (strict: unknown fields too)."""
    if doc["kind"] == "ServiceMonitor":
        assert doc["apiVersion"] == "monitoring.coreos.com/v1"
        validate_service_monitor(doc)
    else:
        assert kubernetes_validate.validate(doc, "1.29.0", strict=True) == "1.29"


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and selector.items() <= labels.items()


# --- static checks -----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", LINTED)
def test_helm_lint_passes(mode: str) -> None:
    out = helm("lint", "--strict", str(CHART), *LINTED[mode])
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


@pytest.mark.parametrize("elsewhere", [False, True], ids=["release-namespace", "elsewhere"])
def test_the_rendering_with_servicemonitor_and_dashboard_is_valid(elsewhere: bool) -> None:
    away = ("--set", "metrics.serviceMonitor.namespace=monitoring",
            "--set", "dashboard.namespace=grafana")  # fmt: skip
    docs = render(*ALL_ON, *(away if elsewhere else ()))
    assert {"Service", "ServiceMonitor", "ConfigMap", "Deployment"} <= {*kinds_of(docs)}
    for doc in docs:
        validate(doc)


@pytest.mark.parametrize(
    ("where", "field", "value"),
    [
        ("endpoint", "intervl", "30s"),  # misspelt: the model drops it, the round trip differs
        ("spec", "namespaceSelecter", {"matchNames": ["hpo-system"]}),
        ("metadata", "lables", {"a": "b"}),
        ("endpoint", "interval", "30 seconds"),  # spelt right, but not a Prometheus duration
        ("endpoint", "port", 8080),  # a Service port's name, not its number
    ],
)
def test_the_servicemonitor_check_refuses_a_bad_field(where: str, field: str, value: Any) -> None:
    monitor = one(render(*ALL_ON), "ServiceMonitor")
    validate_service_monitor(monitor)  # as rendered: valid
    parent = {
        "endpoint": monitor["spec"]["endpoints"][0],
        "spec": monitor["spec"],
        "metadata": monitor["metadata"],
    }[where]
    parent[field] = value
    with pytest.raises(ValueError, match=field):
        validate_service_monitor(monitor)


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
    assert container["args"] == ["--liveness=http://0.0.0.0:8081/healthz", "--all-namespaces"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert {"name": "health", "containerPort": 8081, "protocol": "TCP"} in container["ports"]
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
        "HPO_METRICS_PORT": "8080",
        "HPO_METRICS_ADDRESS": "0.0.0.0",
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


# --- metrics, ServiceMonitor and Grafana dashboard ------------------------------------------------


def operator_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (container,) = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    return container


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container["env"]}


def ports_of(container: dict[str, Any]) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in container["ports"]}


@pytest.mark.parametrize("elsewhere", [False, True], ids=["release-namespace", "elsewhere"])
def test_the_metrics_service_and_servicemonitor_reach_the_operators_metrics_port(
    elsewhere: bool,
) -> None:
    away = ("--set", "metrics.serviceMonitor.namespace=monitoring") if elsewhere else ()
    docs = render(*ALL_ON, "--set", "metrics.serviceMonitor.labels.release=kube-prometheus-stack",
                  *away)  # fmt: skip
    deployment, container = one(docs, "Deployment"), operator_container(docs)
    service, monitor = one(docs, "Service"), one(docs, "ServiceMonitor")

    # The Deployment: /metrics on its `metrics` port, apart from the liveness port.
    ports = ports_of(container)
    env = env_of(container)
    assert env["HPO_METRICS_PORT"] == str(ports["metrics"]) == "8080"
    assert env["HPO_METRICS_ADDRESS"] == "0.0.0.0"
    assert container["livenessProbe"]["httpGet"]["port"] == "health"
    assert ports["health"] == 8081 != ports["metrics"]
    assert "--liveness=http://0.0.0.0:8081/healthz" in container["args"]

    # The Service selects the operator pod and forwards to a port the container has.
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selects(service["spec"]["selector"], pod_labels)
    assert service["metadata"]["namespace"] == deployment["metadata"]["namespace"] == "hpo-system"
    (service_port,) = service["spec"]["ports"]
    assert service_port["targetPort"] in ports and service_port["name"] == "metrics"
    annotations = service["metadata"]["annotations"]
    assert annotations == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(ports["metrics"]),
        "prometheus.io/path": "/metrics",
    }

    # The ServiceMonitor selects that Service (and no other object of the release), in its
    # namespace, by the name of a Service port, on the path the operator serves.
    spec = monitor["spec"]
    assert selects(spec["selector"]["matchLabels"], service["metadata"]["labels"])
    assert not selects(spec["selector"]["matchLabels"], pod_labels)
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    (endpoint,) = spec["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint == {"port": "metrics", "path": "/metrics", "interval": "30s",
                        "scrapeTimeout": "10s"}  # fmt: skip
    if elsewhere:
        assert monitor["metadata"]["namespace"] == "monitoring"
        assert spec["namespaceSelector"] == {"matchNames": ["hpo-system"]}
    else:
        assert monitor["metadata"]["namespace"] == "hpo-system"
        assert "namespaceSelector" not in spec


def test_the_dashboard_configmap_carries_the_dashboard_byte_for_byte() -> None:
    docs = render(
        "--set", "dashboard.enabled=true",
        "--set", "dashboard.namespace=grafana",
        "--set", "dashboard.annotations.grafana_folder=HPO",
    )  # fmt: skip
    (config_map,) = [d for d in docs if d["kind"] == "ConfigMap"]
    metadata = config_map["metadata"]
    assert metadata["labels"]["grafana_dashboard"] == "1"
    assert metadata["namespace"] == "grafana"
    assert metadata["annotations"] == {"grafana_folder": "HPO"}
    assert list(config_map["data"]) == ["hpo.json"]
    text = config_map["data"]["hpo.json"]
    assert text.encode() == DASHBOARD.read_bytes()
    dashboard = json.loads(text)
    assert isinstance(dashboard["panels"], list) and dashboard["panels"]


def test_by_default_a_metrics_service_but_no_servicemonitor_or_dashboard() -> None:
    docs = render()
    assert one(docs, "Service")["metadata"]["name"] == "hpo-hpo-operator-metrics"
    assert "ServiceMonitor" not in kinds_of(docs) and "ConfigMap" not in kinds_of(docs)
    assert "annotations" not in one(docs, "Service")["metadata"]
    container = operator_container(docs)
    assert env_of(container)["HPO_METRICS_PORT"] == str(ports_of(container)["metrics"]) == "8080"


def test_metrics_off_serves_none_and_renders_no_service_or_servicemonitor() -> None:
    docs = render(*METRICS_OFF)
    assert "Service" not in kinds_of(docs) and "ServiceMonitor" not in kinds_of(docs)
    container = operator_container(docs)
    assert env_of(container)["HPO_METRICS_PORT"] == "0"
    assert set(ports_of(container)) == {"health"}
    # A Service may be turned off on its own; the Deployment still serves /metrics.
    docs = render("--set", "metrics.service.enabled=false")
    assert "Service" not in kinds_of(docs)
    assert env_of(operator_container(docs))["HPO_METRICS_PORT"] == "8080"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--set", "metrics.port=8081"), "metrics.port and operator.healthPort must differ"),
        (("--set", "operator.healthPort=8080"), "metrics.port and operator.healthPort must differ"),
        (
            (
                "--set",
                "metrics.serviceMonitor.enabled=true",
                "--set",
                "metrics.service.enabled=false",
            ),
            "metrics.serviceMonitor.enabled needs metrics.service.enabled",
        ),
    ],
    ids=["metrics-port-on-health", "health-port-on-metrics", "monitor-without-service"],
)
def test_clashing_metrics_values_are_refused(args: tuple[str, ...], message: str) -> None:
    done = subprocess.run(
        [HELM, "template", "hpo", str(CHART), *args], capture_output=True, text=True
    )
    assert done.returncode != 0 and message in done.stderr, done.stderr


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
        if DENIED.search(STAMP.sub("", record)) and "is being terminated" not in record
    ]


def test_denials_finds_a_refusal_and_not_a_timestamps_milliseconds() -> None:
    # Records seen in a real run: the first three passed the old check only by their ",403" stamp.
    log = (
        "[2026-12-04 23:34:37,403] kopf.activities.star [INFO    ] serving Prometheus metrics\n"
        "[2026-12-04 23:34:37,403] kopf._core.engines.a [INFO    ] Initial authentication.\n"
        "[2026-12-04 23:34:38,538] kopf.objects [INFO    ] [ns/toy] Timer 'reconcile' succeeded.\n"
        "[2026-12-04 23:34:39,001] kopf._core.reactor.o [ERROR   ] Request attempt #1 failed;\n"
        "kubernetes.client.exceptions.ApiException: (403)\n"
        "Reason: Forbidden\n"
        "[2026-12-04 23:34:40,100] kopf.objects [WARNING ] Not enough permissions to watch.\n"
        '[2026-12-04 23:34:41,200] hpo [WARNING ] 403 namespace ns "is being terminated"\n'
    )
    found = denials(log)
    assert [record.split("] ")[0] for record in found] == [
        "[2026-12-04 23:34:39,001",
        "[2026-12-04 23:34:40,100",
    ]
    assert "Reason: Forbidden" in found[0]


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
    operator = OperatorProcess(kubeconfig, tmp_path / "operator.log", args)
    log_path = operator.log
    # A trial ConfigMap left by an earlier try whose Job the cluster refused, holding values
    # that are not the ones the Job will get: the operator must rewrite it (its `update` grant).
    stale = {"metadata": {"name": "toy-t0"}, "data": {"config.json": '{"x": 42}'}}
    CoreV1Api(kube).create_namespaced_config_map(namespace, stale)
    operator.start()
    try:
        doc = toy()
        CustomObjectsApi(kube).create_namespaced_custom_object(
            *API, namespace, "hpoexperiments", doc
        )

        # Done when the experiment ends, or as soon as the operator is refused something: in
        # its log, or a creation refused and reported in the status.
        def ended() -> dict[str, Any] | None:
            status = status_of(kube, namespace, "toy")
            if status.get("phase") in ("Succeeded", "Failed"):
                return status
            if status.get("reason") == "TrialCreateRefused":
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
        operator.stop()
    text = log_path.read_text()
    print(text[-4000:])
    assert denials(text) == []
    assert status["phase"] == "Succeeded", status
    assert status["trials"]["succeeded"] == 3
    # The operator did use its grants: children exist, created with the ServiceAccount's token.
    assert len(CoreV1Api(kube).list_namespaced_config_map(namespace).items) >= 3
    rewritten = CoreV1Api(kube).read_namespaced_config_map("toy-t0", namespace)
    assert json.loads(rewritten.data["config.json"]) == {"x": 0.1}
