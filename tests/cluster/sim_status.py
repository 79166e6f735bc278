"""Pod status as the kubelet reports it, built from the simulator's record of each container.

The phase follows the kubelet's rules (1.20 `getPhase`): Pending while an init container has
not succeeded or a container waits without having run; Failed when an init container failed
under restartPolicy Never; then Running while a container runs (or waits to be restarted), and
once all have ended Succeeded if every exit code was 0, else Failed (Never) or Running
(OnFailure/Always: they will be restarted).
"""

from __future__ import annotations

from dataclasses import dataclass

from cluster.sim_kube import Obj, now


@dataclass
class ContainerRun:
    """What the simulator knows about one (init) container of a pod."""

    name: str
    image: str
    state: str = "waiting"  # waiting | running | terminated
    reason: str = "ContainerCreating"
    message: str = ""
    container_id: str = ""
    started_at: str = ""
    finished_at: str = ""
    exit_code: int = 0
    restart_count: int = 0
    last_terminated: Obj | None = None
    end_reason: str = ""  # overrides Completed/Error, e.g. StartError

    @property
    def succeeded(self) -> bool:
        return self.state == "terminated" and self.exit_code == 0

    def terminated(self) -> Obj:
        return {
            "exitCode": self.exit_code,
            "reason": self.end_reason or ("Completed" if self.exit_code == 0 else "Error"),
            "message": self.message or None,
            "startedAt": self.started_at or None,
            "finishedAt": self.finished_at,
            "containerID": self.container_id or None,
        }

    def status(self) -> Obj:
        if self.state == "running":
            state: Obj = {"running": {"startedAt": self.started_at}}
        elif self.state == "terminated":
            state = {"terminated": self.terminated()}
        else:
            waiting = {"reason": self.reason}
            if self.message:
                waiting["message"] = self.message
            state = {"waiting": waiting}
        out = {
            "name": self.name,
            "image": self.image,
            "imageID": f"sim://{self.image}" if self.container_id else "",
            "ready": self.state == "running",
            "started": self.state == "running",
            "restartCount": self.restart_count,
            "state": state,
            "lastState": {"terminated": self.last_terminated} if self.last_terminated else {},
        }
        if self.container_id:
            out["containerID"] = self.container_id
        return out


def phase(init: list[ContainerRun], main: list[ContainerRun], restart_policy: str) -> str:
    for run in init:
        if run.succeeded:
            continue
        if run.state == "terminated" and restart_policy == "Never":
            return "Failed"
        return "Pending"
    if any(r.state == "waiting" and not r.last_terminated for r in main):
        return "Pending"
    if any(r.state in ("running", "waiting") for r in main):
        return "Running"
    if all(r.succeeded for r in main):
        return "Succeeded"
    return "Failed" if restart_policy == "Never" else "Running"


def _condition(kind: str, ok: bool, reason: str, message: str, previous: dict[str, Obj]) -> Obj:
    status = "True" if ok else "False"
    before = previous.get(kind, {})
    since = before.get("lastTransitionTime") if before.get("status") == status else None
    condition: Obj = {
        "type": kind,
        "status": status,
        "lastProbeTime": None,
        "lastTransitionTime": since or now(),
    }
    if not ok:
        condition.update(reason=reason, message=message)
    return condition


def conditions(
    init: list[ContainerRun], main: list[ContainerRun], pod_phase: str, previous: list[Obj]
) -> list[Obj]:
    before = {c["type"]: c for c in previous}
    done = pod_phase in ("Succeeded", "Failed")
    waiting_init = [r.name for r in init if not r.succeeded]
    unready = [r.name for r in main if r.state != "running"]
    why = "PodCompleted" if done else "ContainersNotReady"
    unready_message = "" if done else f"containers with unready status: [{' '.join(unready)}]"
    init_reason = "PodCompleted" if done else "ContainersNotInitialized"
    init_message = "" if done else f"containers with incomplete status: [{' '.join(waiting_init)}]"
    return [
        _condition("Initialized", not waiting_init, init_reason, init_message, before),
        _condition("Ready", not unready, why, unready_message, before),
        _condition("ContainersReady", not unready, why, unready_message, before),
        _condition("PodScheduled", True, "", "", before),
    ]


def pod_status(
    init: list[ContainerRun],
    main: list[ContainerRun],
    restart_policy: str,
    start_time: str,
    previous: list[Obj],
) -> Obj:
    pod_phase = phase(init, main, restart_policy)
    status: Obj = {
        "phase": pod_phase,
        "conditions": conditions(init, main, pod_phase, previous),
        "hostIP": "127.0.0.1",
        "podIP": "127.0.0.1",
        "podIPs": [{"ip": "127.0.0.1"}],
        "startTime": start_time,
        "containerStatuses": [r.status() for r in main],
    }
    if init:
        status["initContainerStatuses"] = [r.status() for r in init]
    return status
