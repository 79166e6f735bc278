"""The test cluster: a real kube-apiserver + kube-controller-manager (Job controller, garbage
collector, PV binder) with the node simulator (tests/cluster/node_simulator.py) as scheduler and
kubelet. The tests assert on API objects: Job conditions, pod phases and container states."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from kubernetes.client import (
    ApiClient,
    BatchV1Api,
    CoreV1Api,
    CustomObjectsApi,
    V1Pod,
)
from kubernetes.client.exceptions import ApiException

from cluster.node_simulator import ImageMap, ImageMapError
from cluster.sim_containers import PathRewriter, expand
from cluster.sim_fit import node_reasons, pod_requests, unschedulable_message
from conftest import wait_for

ROOT = Path(__file__).resolve().parent.parent
PYTHON_IMAGE = "python:3.11"
GPU = "nvidia.com/gpu"
T = TypeVar("T")


# --- helpers -------------------------------------------------------------------------------------


def describe_pods(core: CoreV1Api, namespace: str) -> list[tuple[Any, ...]]:
    out = []
    for pod in core.list_namespaced_pod(namespace).items:
        statuses = pod.status.container_statuses or []
        states = [(s.name, _state(s.state)) for s in statuses]
        conditions = [(c.type, c.status, c.reason) for c in pod.status.conditions or []]
        out.append((pod.metadata.name, pod.status.phase, pod.spec.node_name, conditions, states))
    return out


def _state(state: Any) -> str:
    if state.running:
        return "running"
    if state.terminated:
        return f"terminated({state.terminated.exit_code}, {state.terminated.reason})"
    return f"waiting({state.waiting.reason}: {state.waiting.message})"


def job_manifest(
    name: str,
    command: list[str],
    *,
    restart: str = "Never",
    resources: dict[str, Any] | None = None,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "main", "image": PYTHON_IMAGE, "command": command}
    if resources:
        container["resources"] = resources
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"labels": labels or {}},
                "spec": {"restartPolicy": restart, "containers": [container]},
            },
        },
    }


def job_finished(batch: BatchV1Api, namespace: str, name: str) -> str | None:
    """ "Complete" or "Failed" once the Job controller has decided, else None."""
    job = batch.read_namespaced_job(name, namespace)
    for condition in job.status.conditions or []:
        if condition.status == "True" and condition.type in ("Complete", "Failed"):
            return str(condition.type)
    return None


def wait_job(kube: ApiClient, namespace: str, name: str, timeout: float = 30.0) -> str:
    core, batch = CoreV1Api(kube), BatchV1Api(kube)
    return wait_for(
        f"Job {name} to finish",
        lambda: job_finished(batch, namespace, name),
        timeout,
        lambda: describe_pods(core, namespace),
    )


def job_pod(core: CoreV1Api, namespace: str, job: str) -> V1Pod:
    pods = core.list_namespaced_pod(namespace, label_selector=f"job-name={job}").items
    assert len(pods) == 1, [p.metadata.name for p in pods]
    return pods[0]


def create_pod(core: CoreV1Api, namespace: str, pod: dict[str, Any]) -> None:
    """Bare pods need the namespace's default service account (and its token) first."""

    def account_ready() -> bool:
        try:
            return bool(core.read_namespaced_service_account("default", namespace).secrets)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise

    wait_for(f"service account {namespace}/default", account_ready, 30)
    core.create_namespaced_pod(namespace, pod)


def pod_manifest(name: str, container: dict[str, Any], **spec: Any) -> dict[str, Any]:
    container = {"name": "main", "image": PYTHON_IMAGE, **container}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"restartPolicy": "Never", "containers": [container], **spec},
    }


def pod_phase(core: CoreV1Api, namespace: str, name: str) -> str:
    return str(core.read_namespaced_pod(name, namespace).status.phase)


def terminated(pod: V1Pod) -> Any:
    state = pod.status.container_statuses[0].state
    assert state.terminated is not None, state
    return state.terminated


# --- fixtures ------------------------------------------------------------------------------------


# --- Jobs through the real Job controller --------------------------------------------------------


def test_job_completes_with_termination_message(kube, namespace, sim):
    """A one-liner writes /dev/termination-log; the real Job controller sees the pod succeed."""
    code = "open('/dev/termination-log', 'w').write('accuracy=0.93')"
    BatchV1Api(kube).create_namespaced_job(
        namespace, job_manifest("hello", ["python3", "-c", code])
    )

    assert wait_job(kube, namespace, "hello") == "Complete"
    pod = job_pod(CoreV1Api(kube), namespace, "hello")
    assert pod.status.phase == "Succeeded"
    assert pod.spec.node_name == sim.nodes[0].name
    end = terminated(pod)
    assert (end.exit_code, end.reason, end.message) == (0, "Completed", "accuracy=0.93")
    assert end.started_at <= end.finished_at
    conditions = {c.type: c.status for c in pod.status.conditions}
    assert conditions["PodScheduled"] == "True"


def test_failing_container_fails_the_job(kube, namespace, sim):
    BatchV1Api(kube).create_namespaced_job(
        namespace, job_manifest("boom", ["python3", "-c", "raise SystemExit(3)"])
    )

    assert wait_job(kube, namespace, "boom") == "Failed"
    job = BatchV1Api(kube).read_namespaced_job("boom", namespace)
    failed = next(c for c in job.status.conditions if c.type == "Failed")
    assert failed.reason == "BackoffLimitExceeded"
    pod = job_pod(CoreV1Api(kube), namespace, "boom")
    assert pod.status.phase == "Failed"
    assert (terminated(pod).exit_code, terminated(pod).reason) == (3, "Error")


def test_gpu_capacity_limits_concurrency(kube, namespace, sim):
    """Three 1-GPU Jobs on a 2-GPU node: two run, the third waits Unschedulable, then runs."""
    core, batch = CoreV1Api(kube), BatchV1Api(kube)
    sleep = ["python3", "-c", "import time; time.sleep(2)"]
    names = [f"gpu-{i}" for i in range(3)]
    for name in names:
        manifest = job_manifest(
            name, sleep, resources={"limits": {GPU: "1"}}, labels={"test": "gpu"}
        )
        batch.create_namespaced_job(namespace, manifest)

    most_running, saw_waiting = 0, None
    deadline = time.monotonic() + 40
    while not all(job_finished(batch, namespace, n) for n in names):
        assert time.monotonic() < deadline, describe_pods(core, namespace)
        pods = core.list_namespaced_pod(namespace, label_selector="test=gpu").items
        running = [p for p in pods if p.status.phase == "Running"]
        most_running = max(most_running, len(running))
        for pod in pods:
            scheduled = [c for c in pod.status.conditions or [] if c.type == "PodScheduled"]
            if len(running) == 2 and scheduled and scheduled[0].status == "False":
                saw_waiting = (pod.status.phase, scheduled[0].reason, scheduled[0].message)
        time.sleep(0.1)

    assert most_running == 2
    assert saw_waiting == (
        "Pending",
        "Unschedulable",
        f"0/1 nodes are available: 1 Insufficient {GPU}.",
    )
    assert [job_finished(batch, namespace, n) for n in names] == ["Complete"] * 3
    pods = core.list_namespaced_pod(namespace, label_selector="test=gpu").items
    ends = sorted((terminated(p).started_at, terminated(p).finished_at) for p in pods)
    last_start = ends[2][0]
    assert last_start >= min(ends[0][1], ends[1][1]), ends


# --- the simulated kubelet: images, volumes, init containers, restarts, deletion ------------------


def test_unknown_image_waits_with_err_image_pull(kube, namespace, sim):
    core = CoreV1Api(kube)
    image = "registry.invalid/nobody/nothing:1"
    create_pod(core, namespace, pod_manifest("unpullable", {"image": image, "command": ["x"]}))

    def waiting() -> Any:
        statuses = core.read_namespaced_pod("unpullable", namespace).status.container_statuses
        return statuses and statuses[0].state.waiting

    state = wait_for("an image-pull wait", waiting, 20, lambda: describe_pods(core, namespace))
    assert state.reason == "ErrImagePull"
    assert image in state.message and "image map" in state.message
    time.sleep(0.5)
    assert pod_phase(core, namespace, "unpullable") == "Pending"


def test_missing_executable_is_a_start_error(kube, namespace, sim):
    core = CoreV1Api(kube)
    create_pod(core, namespace, pod_manifest("typo", {"command": ["pyhton3", "-V"]}))

    done = lambda: pod_phase(core, namespace, "typo") == "Failed"  # noqa: E731
    wait_for("the pod to fail", done, 20, lambda: describe_pods(core, namespace))
    end = terminated(core.read_namespaced_pod("typo", namespace))
    assert (end.exit_code, end.reason) == (128, "StartError")
    assert "pyhton3" in end.message


def test_configmap_volume_is_visible_and_kept_current(kube, namespace, sim):
    """The process reads the ConfigMap at its mountPath (paths are rewritten to the host folder)
    and sees an update to the ConfigMap while it runs."""
    core = CoreV1Api(kube)
    config = {"metadata": {"name": "settings"}, "data": {"mode": "v1"}}
    core.create_namespaced_config_map(namespace, config)
    code = (
        "import time\n"
        "first = open('/etc/hpo/mode').read()\n"
        "open('/work/started', 'w').write(first)\n"
        "deadline = time.time() + 20\n"
        "while open('/etc/hpo/mode').read() == first and time.time() < deadline:\n"
        "    time.sleep(0.1)\n"
        "open('/dev/termination-log', 'w').write(first + '->' + open('/etc/hpo/mode').read())\n"
    )
    container = {
        "command": ["python3", "-c", code],
        "volumeMounts": [
            {"name": "settings", "mountPath": "/etc/hpo"},
            {"name": "work", "mountPath": "/work"},
        ],
    }
    volumes = [
        {"name": "settings", "configMap": {"name": "settings"}},
        {"name": "work", "emptyDir": {}},
    ]
    create_pod(core, namespace, pod_manifest("reader", container, volumes=volumes))

    wait_for("the pod to run", lambda: pod_phase(core, namespace, "reader") == "Running", 20)
    started = sim.work_dir / "pods" / f"{namespace}_reader" / "volumes" / "work" / "started"
    wait_for("the process to read the first value", started.exists, 20)
    core.patch_namespaced_config_map("settings", namespace, {"data": {"mode": "v2"}})

    done = lambda: pod_phase(core, namespace, "reader") in ("Succeeded", "Failed")  # noqa: E731
    wait_for("the pod to end", done, 30, lambda: describe_pods(core, namespace))
    pod = core.read_namespaced_pod("reader", namespace)
    assert (pod.status.phase, terminated(pod).message) == ("Succeeded", "v1->v2")


def test_pvc_subpath_mount_writes_into_the_volume(kube, namespace, sim):
    core = CoreV1Api(kube)
    claim = {
        "metadata": {"name": "results"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    core.create_namespaced_persistent_volume_claim(namespace, claim)
    container = {
        "command": ["python3", "-c", "open('/results/score.txt', 'w').write('0.9')"],
        "volumeMounts": [{"name": "results", "mountPath": "/results", "subPath": "trial-7"}],
    }
    volumes = [{"name": "results", "persistentVolumeClaim": {"claimName": "results"}}]
    create_pod(core, namespace, pod_manifest("writer", container, volumes=volumes))

    done = lambda: pod_phase(core, namespace, "writer") in ("Succeeded", "Failed")  # noqa: E731
    wait_for("the pod to end", done, 30, lambda: describe_pods(core, namespace))
    assert pod_phase(core, namespace, "writer") == "Succeeded"
    pvc = core.read_namespaced_persistent_volume_claim("results", namespace)
    assert pvc.status.phase == "Bound"
    volume = core.read_persistent_volume(pvc.spec.volume_name)
    folder = Path(volume.spec.host_path.path)
    assert folder.parent == sim.work_dir / "volumes"
    assert (folder / "trial-7" / "score.txt").read_text() == "0.9"


def test_init_containers_then_restart_on_failure(kube, namespace, sim):
    """The init container runs first (its file is there); OnFailure restarts the failing
    container once, counting restartCount; env $(VAR) expansion and fieldRefs work."""
    core = CoreV1Api(kube)
    init = {
        "name": "prepare",
        "image": PYTHON_IMAGE,
        "command": ["python3", "-c", "open('/shared/ready', 'w').write('yes')"],
        "volumeMounts": [{"name": "shared", "mountPath": "/shared"}],
    }
    code = (
        "import os, sys\n"
        "assert open('/shared/ready').read() == 'yes'\n"
        "if not os.path.exists('/shared/tried'):\n"
        "    open('/shared/tried', 'w').close(); sys.exit(1)\n"
        "open('/dev/termination-log', 'w').write(sys.argv[1])\n"
    )
    container = {
        "command": ["python3", "-c", code, "$(POD)/$(STAGE)"],
        "env": [
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "STAGE", "value": "second"},
        ],
        "volumeMounts": [{"name": "shared", "mountPath": "/shared"}],
    }
    manifest = pod_manifest(
        "twice", container, initContainers=[init], volumes=[{"name": "shared", "emptyDir": {}}]
    )
    manifest["spec"]["restartPolicy"] = "OnFailure"
    create_pod(core, namespace, manifest)

    done = lambda: pod_phase(core, namespace, "twice") == "Succeeded"  # noqa: E731
    wait_for("the pod to succeed", done, 30, lambda: describe_pods(core, namespace))
    pod = core.read_namespaced_pod("twice", namespace)
    assert pod.status.init_container_statuses[0].state.terminated.exit_code == 0
    status = pod.status.container_statuses[0]
    assert status.restart_count == 1
    assert status.last_state.terminated.exit_code == 1
    assert status.state.terminated.message == "twice/second"


def test_deleting_a_running_pod_sends_sigterm(kube, namespace, sim, tmp_path):
    core = CoreV1Api(kube)
    marker = tmp_path / "marker"
    code = (
        "import signal, sys, time\n"
        "def stop(*_):\n"
        "    open('/marker/terminated', 'w').write('SIGTERM'); sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, stop)\n"
        "open('/marker/started', 'w').close()\n"
        "time.sleep(60)\n"
    )
    container = {
        "command": ["python3", "-c", code],
        "volumeMounts": [{"name": "marker", "mountPath": "/marker"}],
    }
    volumes = [{"name": "marker", "hostPath": {"path": str(marker), "type": "DirectoryOrCreate"}}]
    create_pod(core, namespace, pod_manifest("sleeper", container, volumes=volumes))
    wait_for("the process to start", (marker / "started").exists, 20)
    assert pod_phase(core, namespace, "sleeper") == "Running"

    started = time.monotonic()
    core.delete_namespaced_pod("sleeper", namespace, grace_period_seconds=20)
    wait_for(
        "the pod object to go away",
        lambda: gone(lambda: core.read_namespaced_pod("sleeper", namespace)),
        30,
    )
    assert (marker / "terminated").read_text() == "SIGTERM"
    assert time.monotonic() - started < 10, "the process ended on SIGTERM; no need for the grace"


# --- garbage collection (last: the collector needs time to learn the CRD, see below) ----------


def gone(read: Callable[[], Any]) -> bool:
    try:
        read()
    except ApiException as exc:
        if exc.status == 404:
            return True
        raise
    return False


def owner_reference(owner: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "hpo.dev/v1alpha1",
        "kind": "HPOExperiment",
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def create_experiment(kube: ApiClient, namespace: str, name: str) -> dict[str, Any]:
    experiment = yaml.safe_load((ROOT / "examples" / "quickstart.yaml").read_text())
    experiment["metadata"]["name"] = name
    return CustomObjectsApi(kube).create_namespaced_custom_object(
        "hpo.dev", "v1alpha1", namespace, "hpoexperiments", experiment
    )


def delete_experiment(kube: ApiClient, namespace: str, name: str) -> None:
    CustomObjectsApi(kube).delete_namespaced_custom_object(
        "hpo.dev", "v1alpha1", namespace, "hpoexperiments", name, propagation_policy="Background"
    )


def test_deleting_owner_collects_configmaps_and_jobs(kube, namespace):
    """The CRD is installed before kube-controller-manager starts (ControlPlane.start), so the
    garbage collector knows HPOExperiment owners from the first moment."""
    core, batch = CoreV1Api(kube), BatchV1Api(kube)
    owner = create_experiment(kube, namespace, "quickstart")
    reference = owner_reference(owner)
    core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "trial-0", "ownerReferences": [reference]}}
    )
    job = job_manifest("trial-0", ["python3", "-c", "pass"])
    job["metadata"]["ownerReferences"] = [reference]
    batch.create_namespaced_job(namespace, job)
    assert not gone(lambda: core.read_namespaced_config_map("trial-0", namespace))

    delete_experiment(kube, namespace, "quickstart")
    wait_for(
        "the garbage collector to delete the owned ConfigMap and Job",
        lambda: (
            gone(lambda: core.read_namespaced_config_map("trial-0", namespace))
            and gone(lambda: batch.read_namespaced_job("trial-0", namespace))
        ),
        timeout=20,
    )


# --- the simulator's pure parts ---------------------------------------------------------------


def _pod(containers: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "p"}, "spec": {"containers": containers, **spec}}


def _node(allocatable: dict[str, str], **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "n", "labels": {"gpu": "a100"}}, "spec": spec,
            "status": {"allocatable": allocatable}}  # fmt: skip


def test_requests_count_limits_and_init_containers_like_the_scheduler():
    pod = _pod(
        [{"resources": {"limits": {GPU: "1"}, "requests": {"cpu": "500m"}}}, {"resources": {}}],
        initContainers=[{"resources": {"requests": {"cpu": "2", GPU: "1"}}}],
    )
    requests = {k: float(v) for k, v in pod_requests(pod).items()}
    assert requests == {"cpu": 2.0, GPU: 1.0, "pods": 1.0}


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({}, []),
        ({"nodeSelector": {"gpu": "h100"}}, ["node(s) didn't match node selector"]),
        ({"nodeSelector": {"gpu": "a100"}}, []),
        ({"containers": [{"resources": {"limits": {GPU: "3"}}}]}, [f"Insufficient {GPU}"]),
    ],
)
def test_node_filters(spec, expected):
    pod = _pod(spec.pop("containers", [{}]), **spec)
    node = _node({"cpu": "8", GPU: "2", "pods": "10"})
    assert node_reasons(pod, pod_requests(pod), node, {}) == expected


def test_taints_need_tolerations():
    taint = {"key": "gpu", "value": "only", "effect": "NoSchedule"}
    node = _node({"cpu": "8", "pods": "10"}, taints=[taint])
    plain = _pod([{}])
    tolerant = _pod([{}], tolerations=[{"key": "gpu", "operator": "Exists"}])
    assert node_reasons(plain, pod_requests(plain), node, {}) == [
        "node(s) had taint {gpu: only}, that the pod didn't tolerate"
    ]
    assert node_reasons(tolerant, pod_requests(tolerant), node, {}) == []
    message = unschedulable_message(3, [["Insufficient cpu"], [f"Insufficient {GPU}"] * 1, []])
    assert message == f"0/3 nodes are available: 1 Insufficient cpu, 1 Insufficient {GPU}."


def test_expansion_and_path_rewriting():
    assert expand("$(A)/$(B)-$$(A)-$(C)", {"A": "x", "B": "y"}) == "x/y-$(A)-$(C)"
    rewrite = PathRewriter([("/data", Path("/h/d")), ("/data/sub", Path("/h/s"))])
    assert rewrite("/data/sub/f --out=/data/x '/data' /database ./data") == (
        "/h/s/f --out=/h/d/x '/h/d' /database ./data"
    )


def test_image_map_rules_come_before_the_defaults(tmp_path):
    rules = tmp_path / "images.yaml"
    rules.write_text("- {image: 'python:3.8*', python: /bin/sh}\n")
    images = ImageMap.from_yaml(rules)
    assert images.resolve("python:3.8-slim").python == "/bin/sh"
    assert images.resolve("docker.io/library/python:3.11").image == "python:*"
    assert images.resolve("ghcr.io/acme/hpo-trainer:0.1").python == sys.executable
    assert images.resolve("busybox") is None
    rules.write_text("- {image: 'x:*', python: /no/such/python}\n")
    with pytest.raises(ImageMapError, match=r"images.yaml\[0\].python: '/no/such/python'"):
        ImageMap.from_yaml(rules)
