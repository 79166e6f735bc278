"""One pod on a simulated node: its containers run as local processes, its status goes to the API.

Init containers run one after another, then all containers start together. Each runs in its
own session (process group), with stdout and stderr appended to
`<work_dir>/pods/<ns>_<pod>/<container>.log`. restartPolicy Never: a failed init container fails
the pod; OnFailure (and Always): a failed container is restarted after a short back-off (0.5 s,
doubling, at most 5 s), counting `restartCount`; Always also restarts containers that succeeded.

**Images.** An image that the `ImageMap` does not know cannot be "pulled": its container never
starts and waits with reason `ErrImagePull`, so the pod stays Pending. A real kubelet behaves
the same way for an image it cannot pull (alternating with `ImagePullBackOff`), and this is the
state an operator must classify as "image cannot be pulled".

**Deletion.** When the pod gets a deletionTimestamp, its processes get SIGTERM, then SIGKILL
after `deletionGracePeriodSeconds`; the final status is reported and the pod object deleted
with grace period 0, as the kubelet does.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from cluster.sim_containers import (
    ContainerConfigError,
    Launch,
    plan_launch,
    spawn,
    termination_message,
)
from cluster.sim_images import ImageMap, pull_error
from cluster.sim_kube import Obj, Rest, not_found, now
from cluster.sim_status import ContainerRun, pod_status
from cluster.sim_volumes import PodVolumes, VolumeError

log = logging.getLogger(__name__)

BACKOFF_START, BACKOFF_MAX = 0.5, 5.0
POLL_SECONDS = 0.1
REFRESH_SECONDS = 2.0


@dataclass
class Process:
    popen: subprocess.Popen[bytes]
    run: ContainerRun
    spec: Obj
    plan: Launch
    log_from: int


def _signal_group(popen: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(popen.pid, sig)


class PodWorker(threading.Thread):
    def __init__(self, rest: Rest, images: ImageMap, work_dir: Path, pod: Obj) -> None:
        meta, spec = pod["metadata"], pod["spec"]
        super().__init__(name=f"pod {meta['namespace']}/{meta['name']}", daemon=True)
        self.rest, self.images, self.pod = rest, images, pod
        self.uid, self.namespace, self.pod_name = meta["uid"], meta["namespace"], meta["name"]
        self.dir = work_dir / "pods" / f"{self.namespace}_{self.pod_name}"
        self.policy = spec.get("restartPolicy") or "Always"
        inits = spec.get("initContainers") or []
        first_wait = "PodInitializing" if inits else "ContainerCreating"
        self.init = [ContainerRun(c["name"], c["image"], reason="PodInitializing") for c in inits]
        self.main = [
            ContainerRun(c["name"], c["image"], reason=first_wait) for c in spec["containers"]
        ]
        self.specs = {c["name"]: c for c in [*inits, *spec["containers"]]}
        self.volumes = PodVolumes(rest, pod, self.dir)
        self.procs: dict[str, Process] = {}
        self.start_time = now()
        self._conditions: list[Obj] = pod.get("status", {}).get("conditions") or []
        self._sent: Obj | None = None
        self._dirty = False
        self._retry_at: dict[str, float] = {}
        self._wake = threading.Event()
        self._deletion = threading.Event()
        self._killed = threading.Event()
        self._lock = threading.Lock()
        self._finished = False
        self._grace = 30.0
        self._pod_deleted = False
        self._kill_grace = 0.0
        self.cleanup_volumes = False

    # --- requests from the kubelet dispatcher (other threads) ---------------------------------

    def request_delete(self, grace: float) -> bool:
        """Start graceful deletion; False when the worker has already finished."""
        with self._lock:
            if self._finished:
                return False
            self._grace = grace
            self._deletion.set()
            self._wake.set()
            return True

    def kill(self, grace: float = 0.0, cleanup: bool = False) -> None:
        """Stop without reporting (simulator stopping, or the pod object is gone)."""
        self._kill_grace = grace
        self.cleanup_volumes = cleanup
        self._killed.set()
        self._wake.set()

    # --- the lifecycle ---------------------------------------------------------------------------

    def run(self) -> None:
        try:
            self._lifecycle()
            if self._deletion.is_set() and not self._killed.is_set():
                self._end_processes(self._grace)
                self._report(final=True)
                self._delete_pod()
        except Exception:
            log.exception("pod %s/%s: the simulated kubelet failed", self.namespace, self.pod_name)
        finally:
            self._end_processes(self._kill_grace, record=False)
            with self._lock:
                self._finished = True
                late = self._deletion.is_set() and not self._killed.is_set()
            if late:
                self._delete_pod()  # no-op when done above
            if self.cleanup_volumes:
                self.volumes.cleanup()

    def _interrupted(self) -> bool:
        return self._deletion.is_set() or self._killed.is_set()

    def _pause(self, seconds: float) -> bool:
        """Sleep, waking early for deletion or kill; True when interrupted."""
        self._wake.wait(seconds)
        return self._interrupted()

    def _lifecycle(self) -> None:
        self.volumes.cleanup()  # a fresh start for a pod that reuses an earlier pod's name
        self._report()
        if not self._prepare_volumes():
            return
        for run in self.init:
            if not self._run_init(run):
                self._report(final=True)
                return
        for run in self.main:
            self._start(run)
        self._report()
        self._supervise()
        self._report(final=True)

    def _prepare_volumes(self) -> bool:
        while True:
            try:
                self.volumes.prepare()
                for run in self.init + self.main:
                    run.message = ""
                return True
            except VolumeError as exc:
                for run in self.init + self.main:
                    run.message = f"MountVolume.SetUp failed: {exc}"
                self._report()
            if self._pause(1.0):
                return False

    def _run_init(self, run: ContainerRun) -> bool:
        """Run an init container until it succeeds (restarting failures unless Never)."""
        while True:
            if not self._start(run):
                self._report()
                if self._pause(1.0 if run.reason != "ErrImagePull" else 3600.0):
                    return False
                continue
            self._report()
            process = self.procs.get(run.name)  # None: it could not start (StartError)
            while process is not None and process.popen.poll() is None:
                if self._pause(POLL_SECONDS):
                    return False
            if process is not None:
                self._exited(process)
            if run.succeeded:
                self._report()
                return True
            if self.policy == "Never":
                return False
            self._back_off(run)
            self._report()
            if self._pause(self._retry_at[run.name] - time.monotonic()):
                return False

    def _supervise(self) -> None:
        next_refresh = time.monotonic() + REFRESH_SECONDS
        while not self._interrupted():
            changed = self._dirty
            for process in list(self.procs.values()):
                if process.popen.poll() is not None:
                    self._exited(process)
                    if self._restarts(process.run):
                        self._back_off(process.run)
                    changed = True
            for run in self.main:
                due = self._retry_at.get(run.name)
                if run.state == "waiting" and due is not None and time.monotonic() >= due:
                    self._start(run)
                    changed = True
            if changed:
                self._report()
            if not self.procs and not self._retry_at and not self._pulls_pending():
                return
            if time.monotonic() >= next_refresh:
                self.volumes.refresh()
                next_refresh = time.monotonic() + REFRESH_SECONDS
            self._pause(POLL_SECONDS)

    def _pulls_pending(self) -> bool:
        return any(r.state == "waiting" and r.reason == "ErrImagePull" for r in self.main)

    def _restarts(self, run: ContainerRun) -> bool:
        return self.policy == "Always" or (self.policy == "OnFailure" and run.exit_code != 0)

    def _back_off(self, run: ContainerRun) -> None:
        delay = min(BACKOFF_START * 2**run.restart_count, BACKOFF_MAX)
        run.last_terminated = run.terminated()
        run.state, run.reason = "waiting", "CrashLoopBackOff"
        run.message = f"back-off {delay:g}s restarting failed container={run.name}"
        self._retry_at[run.name] = time.monotonic() + delay

    # --- processes -------------------------------------------------------------------------------

    def _start(self, run: ContainerRun) -> bool:
        """Start a container's process; False (and a waiting reason) when it cannot start."""
        spec = self.specs[run.name]
        restarting = run.last_terminated is not None
        self._retry_at.pop(run.name, None)
        rule = self.images.resolve(run.image)
        if rule is None:
            run.state, run.reason, run.message = "waiting", "ErrImagePull", pull_error(run.image)
            return False
        try:
            plan = plan_launch(self.rest, self.pod, spec, self.volumes, rule.python, self.dir)
        except (ContainerConfigError, VolumeError) as exc:
            run.state, run.reason, run.message = "waiting", "CreateContainerConfigError", str(exc)
            self._retry_at[run.name] = time.monotonic() + 1.0
            return False
        if restarting:
            run.restart_count += 1
        run.container_id = f"sim://{uuid.uuid4().hex}"
        run.started_at, run.message, run.end_reason = now(), "", ""
        try:
            popen, log_from = spawn(plan)
        except OSError as exc:
            run.state, run.exit_code, run.end_reason = "terminated", 128, "StartError"
            run.finished_at, run.message = now(), f"failed to start {plan.argv[0]!r}: {exc}"
            return True
        run.state = "running"
        self.procs[run.name] = Process(popen, run, spec, plan, log_from)
        log.info("%s/%s: started %s: %s", self.namespace, self.pod_name, run.name, plan.argv)
        return True

    def _exited(self, process: Process) -> None:
        code = process.popen.wait()
        _signal_group(process.popen, signal.SIGKILL)  # leftovers of the container's session
        run = process.run
        run.state, run.finished_at = "terminated", now()
        run.exit_code = code if code >= 0 else 128 - code
        policy = process.spec.get("terminationMessagePolicy") or "File"
        plan = process.plan
        run.message = termination_message(
            plan.termination_file, policy, run.exit_code != 0, plan.log, process.log_from
        )
        del self.procs[run.name]
        log.info("%s/%s: %s exited %d", self.namespace, self.pod_name, run.name, run.exit_code)

    def _end_processes(self, grace: float, record: bool = True) -> None:
        """SIGTERM, up to `grace` seconds, SIGKILL; `record`: keep how each process ended."""
        self._retry_at.clear()
        for process in self.procs.values():
            _signal_group(process.popen, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while self.procs and time.monotonic() < deadline:
            if record and self._killed.is_set():
                break  # the simulator is stopping: no more waiting
            for process in list(self.procs.values()):
                if process.popen.poll() is not None:
                    self._ended(process, record)
            time.sleep(0.05)
        for process in list(self.procs.values()):
            _signal_group(process.popen, signal.SIGKILL)
            self._ended(process, record)

    def _ended(self, process: Process, record: bool) -> None:
        if record:
            self._exited(process)
        else:
            process.popen.wait()
            _signal_group(process.popen, signal.SIGKILL)
            del self.procs[process.run.name]

    # --- the API ---------------------------------------------------------------------------------

    def _report(self, final: bool = False) -> None:
        status = pod_status(self.init, self.main, self.policy, self.start_time, self._conditions)
        if status == self._sent or self._killed.is_set():
            return
        path = f"/api/v1/namespaces/{self.namespace}/pods/{self.pod_name}/status"
        body = {"metadata": {"uid": self.uid}, "status": status}
        for attempt in range(5 if final else 1):
            try:
                self.rest.patch(path, body)
            except Exception as exc:
                if not_found(exc):
                    self._killed.set()
                    return
                log.warning("%s/%s: status update failed: %s", self.namespace, self.pod_name, exc)
                time.sleep(0.5 * attempt)
                continue
            self._sent, self._conditions, self._dirty = status, status["conditions"], False
            return
        self._dirty = True

    def _delete_pod(self) -> None:
        if self._pod_deleted:
            return
        self._pod_deleted = True
        path = f"/api/v1/namespaces/{self.namespace}/pods/{self.pod_name}"
        body = {"gracePeriodSeconds": 0, "preconditions": {"uid": self.uid}}
        try:
            self.rest.delete(path, body)
            log.info("%s/%s: deleted", self.namespace, self.pod_name)
        except Exception as exc:
            if not not_found(exc) and getattr(exc, "status", None) != 409:
                log.warning("%s/%s: delete failed: %s", self.namespace, self.pod_name, exc)
