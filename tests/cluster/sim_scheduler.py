"""The scheduler half of the node simulator: binds Pending pods to the simulated nodes.

A pod is taken when it has no nodeName, no deletionTimestamp and the default scheduler name.
It goes to the least loaded node that passes `sim_fit`'s filters and whose PersistentVolumeClaims
are all Bound, through the Binding subresource (the API server then sets PodScheduled=True).
When no node fits it stays Pending with `PodScheduled=False`, reason `Unschedulable` and the
scheduler's summary message; every pod event (a pod ending frees its requests), claim or node
change wakes the scheduler to try again, and it retries at least once a second.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from decimal import Decimal

from cluster.sim_fit import (
    Obj,
    Resources,
    load,
    node_reasons,
    occupies,
    pod_requests,
    quantities,
    unschedulable_message,
)
from cluster.sim_kube import STRATEGIC_PATCH, Rest, conflict, not_found, now

log = logging.getLogger(__name__)

DEFAULT_SCHEDULER = "default-scheduler"


def wants_scheduling(pod: Obj) -> bool:
    spec, meta = pod["spec"], pod["metadata"]
    return (
        not spec.get("nodeName")
        and not meta.get("deletionTimestamp")
        and spec.get("schedulerName", DEFAULT_SCHEDULER) == DEFAULT_SCHEDULER
        and pod.get("status", {}).get("phase", "Pending") == "Pending"
    )


def _scheduled_condition(pod: Obj) -> Obj:
    for condition in pod.get("status", {}).get("conditions") or []:
        if condition["type"] == "PodScheduled":
            return dict(condition)
    return {}


class Scheduler(threading.Thread):
    def __init__(
        self,
        rest: Rest,
        pods: Callable[[], list[Obj]],
        nodes: Callable[[], list[Obj]],
        claim: Callable[[str, str], Obj | None],
    ) -> None:
        super().__init__(name="sim-scheduler", daemon=True)
        self.rest, self.pods, self.nodes, self.claim = rest, pods, nodes, claim
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._assumed: dict[str, tuple[str, Resources]] = {}  # uid -> (node, requests)
        self._reported: dict[str, str] = {}  # uid -> last Unschedulable message we wrote

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    def run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(1.0)
            self._wake.clear()
            if self._stopping.is_set():
                return
            try:
                self.schedule_pending()
            except Exception:
                log.exception("scheduling pass failed")

    def _usage(self, pods: list[Obj], nodes: list[Obj]) -> dict[str, Resources]:
        used: dict[str, Resources] = {n["metadata"]["name"]: {} for n in nodes}
        unbound = set()
        for pod in pods:
            node = pod["spec"].get("nodeName")
            if not node:
                unbound.add(pod["metadata"]["uid"])
            elif node in used and occupies(pod):
                _add_into(used[node], pod_requests(pod))
        # An assumed binding lasts until the cache shows the pod bound (or gone).
        self._assumed = {u: a for u, a in self._assumed.items() if u in unbound}
        for node, requests in self._assumed.values():
            if node in used:
                _add_into(used[node], requests)
        return used

    def schedule_pending(self) -> None:
        nodes = sorted(self.nodes(), key=lambda n: n["metadata"]["name"])
        if not nodes:
            return
        pods = self.pods()
        used = self._usage(pods, nodes)
        pending = [
            p for p in pods if wants_scheduling(p) and p["metadata"]["uid"] not in self._assumed
        ]
        pending.sort(
            key=lambda p: (p["metadata"].get("creationTimestamp", ""), p["metadata"]["name"])
        )
        live = {p["metadata"]["uid"] for p in pending}
        self._reported = {u: m for u, m in self._reported.items() if u in live}
        for pod in pending:
            if self._stopping.is_set():
                return
            self._schedule_one(pod, nodes, used)

    def _schedule_one(self, pod: Obj, nodes: list[Obj], used: dict[str, Resources]) -> None:
        claim_problem = self._claim_problem(pod)
        if claim_problem:
            n = len(nodes)
            self._unschedulable(pod, f"0/{n} nodes are available: {n} {claim_problem}.")
            return
        requests = pod_requests(pod)
        reasons, feasible = [], []
        for node in nodes:
            name = node["metadata"]["name"]
            why = node_reasons(pod, requests, node, used[name])
            reasons.append(why)
            if not why:
                allocatable = quantities(node["status"].get("allocatable"))
                feasible.append((load(requests, used[name], allocatable), name))
        if not feasible:
            self._unschedulable(pod, unschedulable_message(len(nodes), reasons))
            return
        _, chosen = min(feasible)
        if self._bind(pod, chosen):
            self._assumed[pod["metadata"]["uid"]] = (chosen, requests)
            _add_into(used[chosen], requests)

    def _claim_problem(self, pod: Obj) -> str | None:
        namespace = pod["metadata"]["namespace"]
        for volume in pod["spec"].get("volumes") or []:
            name = (volume.get("persistentVolumeClaim") or {}).get("claimName")
            if not name:
                continue
            pvc = self.claim(namespace, name)  # from the simulator's claim watch
            if pvc is None:
                return f'persistentvolumeclaim "{name}" not found'
            if pvc.get("status", {}).get("phase") != "Bound":
                return "pod has unbound immediate PersistentVolumeClaims"
        return None

    def _bind(self, pod: Obj, node: str) -> bool:
        meta = pod["metadata"]
        body = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"]},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        }
        path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/binding"
        try:
            self.rest.create(path, body)
        except Exception as exc:
            if conflict(exc) or not_found(exc):
                log.info("binding %s/%s skipped: %s", meta["namespace"], meta["name"], exc)
                return False
            raise
        log.info("bound %s/%s to %s", meta["namespace"], meta["name"], node)
        return True

    def _unschedulable(self, pod: Obj, message: str) -> None:
        meta = pod["metadata"]
        current = _scheduled_condition(pod)
        if self._reported.get(meta["uid"]) == message or (
            current.get("reason") == "Unschedulable" and current.get("message") == message
        ):
            return
        condition = {
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": message,
            "lastProbeTime": None,
            "lastTransitionTime": current.get("lastTransitionTime") or now(),
        }
        path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/status"
        try:
            self.rest.patch(path, {"status": {"conditions": [condition]}}, STRATEGIC_PATCH)
        except Exception as exc:
            if not not_found(exc):
                raise
        self._reported[meta["uid"]] = message
        log.info("%s/%s unschedulable: %s", meta["namespace"], meta["name"], message)


def _add_into(total: Resources, more: Resources) -> None:
    for name, value in more.items():
        total[name] = total.get(name, Decimal(0)) + value
