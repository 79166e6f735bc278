"""Simulated Nodes: registration, heartbeats (Ready condition and a Lease), removal.

The real node lifecycle controller watches these: a node whose Lease in `kube-node-lease` and
Ready heartbeat go stale for 40 s is marked Unknown and tainted, and its pods get evicted. The
simulator renews both every few seconds. A freshly created Node carries the
`node.kubernetes.io/not-ready:NoSchedule` taint (added by the TaintNodesByCondition admission
plugin) until the controller sees it Ready and removes it; `ready()` tells when that happened.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from cluster.sim_kube import STRATEGIC_PATCH, Obj, Rest, conflict, micro_now, not_found, now

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 5.0
LEASE_SECONDS = 40
LEASE_NAMESPACE = "kube-node-lease"
SIMULATED_LABEL = "sim.hpo.dev/node-simulator"
NOT_READY_TAINT = "node.kubernetes.io/not-ready"
DEFAULT_CAPACITY = {"cpu": "8", "memory": "32Gi", "pods": "110"}


@dataclass(frozen=True)
class NodeSpec:
    name: str
    capacity: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_CAPACITY))
    """Also the allocatable amounts, e.g. {"cpu": "8", "memory": "32Gi", "nvidia.com/gpu": "2"}.
    `pods` defaults to 110."""
    labels: dict[str, str] = field(default_factory=dict)
    taints: list[dict[str, Any]] = field(default_factory=list)
    """Node taints as the API writes them: {"key", "value", "effect"}."""


def _conditions(ready_since: str) -> list[Obj]:
    beat = now()
    healthy = [
        ("MemoryPressure", "KubeletHasSufficientMemory"),
        ("DiskPressure", "KubeletHasNoDiskPressure"),
        ("PIDPressure", "KubeletHasSufficientPID"),
    ]
    conditions = [
        {
            "type": kind,
            "status": "False",
            "reason": reason,
            "message": "simulated",
            "lastHeartbeatTime": beat,
            "lastTransitionTime": ready_since,
        }
        for kind, reason in healthy
    ]
    conditions.append(
        {
            "type": "Ready",
            "status": "True",
            "reason": "KubeletReady",
            "message": "node simulator is posting ready status",
            "lastHeartbeatTime": beat,
            "lastTransitionTime": ready_since,
        }
    )
    return conditions


def node_status(spec: NodeSpec, ready_since: str) -> Obj:
    capacity = {**{"pods": "110"}, **spec.capacity}
    return {
        "capacity": capacity,
        "allocatable": capacity,
        "conditions": _conditions(ready_since),
        "addresses": [
            {"type": "InternalIP", "address": "127.0.0.1"},
            {"type": "Hostname", "address": spec.name},
        ],
        "nodeInfo": {
            "machineID": "",
            "systemUUID": "",
            "bootID": "",
            "kernelVersion": "",
            "osImage": "hpo-operator node simulator",
            "containerRuntimeVersion": "sim://0.1",
            "kubeletVersion": "v1.20.2",
            "kubeProxyVersion": "v1.20.2",
            "operatingSystem": "linux",
            "architecture": "amd64",
        },
    }


def node_manifest(spec: NodeSpec, ready_since: str) -> Obj:
    labels = {
        "kubernetes.io/hostname": spec.name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        SIMULATED_LABEL: "true",
        **spec.labels,
    }
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": spec.name, "labels": labels},
        "spec": {"taints": list(spec.taints)},
        "status": node_status(spec, ready_since),
    }


def is_ready(node: Obj) -> bool:
    """Ready, and the controller has lifted the start-up not-ready taint."""
    taints = node.get("spec", {}).get("taints") or []
    if any(t["key"] == NOT_READY_TAINT for t in taints):
        return False
    conditions = node.get("status", {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


class NodeKeeper(threading.Thread):
    """Registers the nodes, then renews their Leases and Ready heartbeats until stopped."""

    def __init__(self, rest: Rest, specs: list[NodeSpec]) -> None:
        super().__init__(name="sim-heartbeat", daemon=True)
        self.rest, self.specs = rest, specs
        self._stopping = threading.Event()
        self._since = now()

    def register(self) -> None:
        for spec in self.specs:
            manifest = node_manifest(spec, self._since)
            try:
                self.rest.create("/api/v1/nodes", manifest)
            except Exception as exc:
                if not conflict(exc):
                    raise
                log.info("node %s exists; taking it over", spec.name)
                update = {
                    "metadata": {"labels": manifest["metadata"]["labels"]},
                    "spec": {"taints": list(spec.taints) or None},
                }
                self.rest.patch(f"/api/v1/nodes/{spec.name}", update)
            self._beat(spec)

    def run(self) -> None:
        while not self._stopping.wait(HEARTBEAT_SECONDS):
            for spec in self.specs:
                try:
                    self._beat(spec)
                except Exception as exc:
                    log.warning("heartbeat for node %s failed: %s", spec.name, exc)

    def _beat(self, spec: NodeSpec) -> None:
        status = {"status": node_status(spec, self._since)}
        self.rest.patch(f"/api/v1/nodes/{spec.name}/status", status, STRATEGIC_PATCH)
        self._renew_lease(spec.name)

    def _renew_lease(self, name: str) -> None:
        path = f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases"
        spec = {
            "holderIdentity": name,
            "leaseDurationSeconds": LEASE_SECONDS,
            "renewTime": micro_now(),
        }
        try:
            self.rest.patch(f"{path}/{name}", {"spec": spec})
        except Exception as exc:
            if not not_found(exc):
                raise
            lease = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": name, "namespace": LEASE_NAMESPACE},
                "spec": spec,
            }
            self.rest.create(path, lease)

    def stop(self) -> None:
        self._stopping.set()

    def unregister(self) -> None:
        for spec in self.specs:
            for path in (
                f"/api/v1/nodes/{spec.name}",
                f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases/{spec.name}",
            ):
                try:
                    self.rest.delete(path, timeout=5)  # the API server may be stopping too
                except Exception as exc:
                    if not not_found(exc):
                        log.warning("deleting %s failed: %s", path, exc)
