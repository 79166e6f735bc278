"""The kubelet half of the node simulator: one `PodWorker` per pod bound to a simulated node.

It reacts to pod events from the simulator's pod watch: a new bound pod gets a worker; a
deletionTimestamp starts graceful termination (or, for a pod that has nothing running any more,
the final delete with grace period 0); a pod object that is gone has its processes killed and
its emptyDir/configMap folders removed (logs stay under `<work_dir>/pods/`).

A pod bound to one of our nodes that shows containers as started, but that no worker of this
simulator runs, was run by an earlier simulator process: its processes are gone, so it is
reported Failed (running containers as terminated with exit code 137), as a node that lost
them would.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from cluster.sim_images import ImageMap
from cluster.sim_kube import Obj, Rest, not_found, now
from cluster.sim_pod import PodWorker
from cluster.sim_volumes import PodVolumes

log = logging.getLogger(__name__)

TERMINAL = ("Succeeded", "Failed")
LOST_MESSAGE = "the node simulator process that ran this container stopped"


def _statuses(pod: Obj) -> list[Obj]:
    status = pod.get("status", {})
    return (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or [])


def orphaned(pod: Obj) -> bool:
    return any(
        "running" in s.get("state", {}) or "terminated" in s.get("state", {})
        for s in _statuses(pod)
    )


def lost_status(pod: Obj) -> Obj:
    """The pod's status with its running containers ended: exit code 137, phase Failed."""
    status = pod.get("status", {})

    def end(container: Obj) -> Obj:
        state = container.get("state", {})
        if "running" not in state:
            return container
        terminated = {
            "exitCode": 137,
            "reason": "Error",
            "message": LOST_MESSAGE,
            "startedAt": state["running"].get("startedAt"),
            "finishedAt": now(),
            "containerID": container.get("containerID"),
        }
        return {**container, "ready": False, "started": False, "state": {"terminated": terminated}}

    out: Obj = {"phase": "Failed"}
    for field in ("initContainerStatuses", "containerStatuses"):
        if status.get(field):
            out[field] = [end(c) for c in status[field]]
    return out


class Kubelet:
    def __init__(self, rest: Rest, images: ImageMap, work_dir: Path, nodes: set[str]) -> None:
        self.rest, self.images, self.work_dir, self.nodes = rest, images, work_dir, nodes
        self.workers: dict[str, PodWorker] = {}
        self._deleting: set[str] = set()
        self._lock = threading.Lock()
        self._stopped = False

    def on_pod(self, event: str, pod: Obj) -> None:
        """Called from the pod watch thread for every pod event."""
        if pod["spec"].get("nodeName") not in self.nodes:
            return
        with self._lock:
            if self._stopped:
                return
            uid = pod["metadata"]["uid"]
            worker = self.workers.get(uid)
            if event == "DELETED":
                self._forget(uid, pod, worker)
            elif pod["metadata"].get("deletionTimestamp"):
                grace = float(pod["metadata"].get("deletionGracePeriodSeconds") or 0)
                if worker is None or not worker.request_delete(grace):
                    self._delete_now(pod)
            elif worker is None and pod.get("status", {}).get("phase") not in TERMINAL:
                if orphaned(pod):
                    self._report_lost(pod)
                else:
                    worker = PodWorker(self.rest, self.images, self.work_dir, pod)
                    self.workers[uid] = worker
                    worker.start()

    def _forget(self, uid: str, pod: Obj, worker: PodWorker | None) -> None:
        self._deleting.discard(uid)
        self.workers.pop(uid, None)
        if worker is not None and worker.is_alive():
            worker.kill(cleanup=True)
            return
        meta = pod["metadata"]
        PodVolumes(
            self.rest, pod, self.work_dir / "pods" / f"{meta['namespace']}_{meta['name']}"
        ).cleanup()

    def _delete_now(self, pod: Obj) -> None:
        meta = pod["metadata"]
        if meta["uid"] in self._deleting:
            return
        self._deleting.add(meta["uid"])
        body = {"gracePeriodSeconds": 0, "preconditions": {"uid": meta["uid"]}}
        try:
            self.rest.delete(f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}", body)
        except Exception as exc:
            if not not_found(exc):
                log.warning("deleting pod %s/%s failed: %s", meta["namespace"], meta["name"], exc)
                self._deleting.discard(meta["uid"])

    def _report_lost(self, pod: Obj) -> None:
        meta = pod["metadata"]
        path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/status"
        log.info(
            "pod %s/%s was run by an earlier simulator: failing it", meta["namespace"], meta["name"]
        )
        try:
            self.rest.patch(path, {"metadata": {"uid": meta["uid"]}, "status": lost_status(pod)})
        except Exception as exc:
            if not not_found(exc):
                log.warning("failing lost pod %s/%s: %s", meta["namespace"], meta["name"], exc)

    def stop(self, grace: float = 2.0) -> None:
        """Kill every process this kubelet started (SIGTERM, then SIGKILL after `grace` s)."""
        with self._lock:
            self._stopped = True
            workers = list(self.workers.values())
        for worker in workers:
            worker.kill(grace)
        for worker in workers:
            worker.join(grace + 10)
            if worker.is_alive():
                log.warning("pod worker %s did not stop", worker.name)
