"""A node simulator: a test double for the kubelet and the scheduler, on a real API server.

There is no scheduler and no kubelet in the test control plane (`control_plane.py`), so pods
would stay Pending. `NodeSimulator` plays both parts for one or more simulated Nodes:

- registers the Nodes and keeps them alive (Lease + Ready heartbeat), `sim_nodes`;
- binds Pending pods to a node that fits their requests, nodeSelector/affinity, tolerations and
  whose claims are bound, or marks them `PodScheduled=False/Unschedulable`, `sim_scheduler`;
- provisions a hostPath PersistentVolume (a folder) for each unbound claim, `sim_volumes`;
- runs the pods bound to its nodes: their containers as local processes, with an image ->
  interpreter map (`sim_images`), volumes as host folders and container paths translated to
  them (`sim_containers`), status reported through the API (`sim_pod`, `sim_status`).

What it is not: there is no isolation (processes run as this user on this filesystem), no
resource enforcement (requests only decide placement), no probes, no pod-level
activeDeadlineSeconds (Job-level deadlines work: the Job controller deletes the pods), no
networking beyond 127.0.0.1, no image content (the image name only picks an interpreter), and
paths are translated only where the pod spec spells them (see `sim_containers`).

Command line (runs until SIGTERM or Ctrl-C, then kills what it runs and removes its Nodes)::

    python tests/cluster/node_simulator.py --kubeconfig .cluster/kubeconfig \\
        --work-dir .cluster/sim [--node NAME:cpu=8,memory=32Gi,nvidia.com/gpu=2]... \\
        [--image-map FILE.yaml]

Run one simulator per cluster, as there is one default scheduler: two would both bind pods
and overwrite each other's Unschedulable messages.

Without --node: one node `sim-0` with cpu=8, memory=32Gi, nvidia.com/gpu=2. A --node without
some of cpu/memory/pods gets cpu=8, memory=32Gi, pods=110 for them (no GPUs unless given).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the `cluster` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import logging
import signal
import threading
import time
from types import TracebackType

from kubernetes.client import ApiClient

from cluster.sim_images import ImageMap, ImageMapError, ImageRule
from cluster.sim_kube import Obj, Rest, Watcher, wait_for
from cluster.sim_kubelet import Kubelet
from cluster.sim_nodes import DEFAULT_CAPACITY, SIMULATED_LABEL, NodeKeeper, NodeSpec, is_ready
from cluster.sim_scheduler import Scheduler
from cluster.sim_volumes import Provisioner

__all__ = ["ImageMap", "ImageMapError", "ImageRule", "NodeSimulator", "NodeSpec", "main"]

log = logging.getLogger(__name__)

SYNC_TIMEOUT = 30.0


class NodeSimulator:
    """Simulated nodes on the API server behind `api_client`; see the module docstring.

    `work_dir` receives `pods/<ns>_<pod>/` (container logs, termination-message files,
    emptyDir and configMap folders) and `volumes/<pv-name>/` (provisioned volumes).
    """

    def __init__(
        self,
        api_client: ApiClient,
        nodes: list[NodeSpec],
        work_dir: Path,
        image_map: ImageMap | None = None,
    ) -> None:
        if not nodes:
            raise ValueError("NodeSimulator needs at least one NodeSpec")
        self.nodes = list(nodes)
        self.work_dir = Path(work_dir).resolve()
        self.images = image_map or ImageMap.default()
        self.rest = Rest(api_client)
        names = {n.name for n in self.nodes}
        self.keeper = NodeKeeper(self.rest, self.nodes)
        self.kubelet = Kubelet(self.rest, self.images, self.work_dir, names)
        self.provisioner = Provisioner(self.rest, self.work_dir)
        self.node_watch = Watcher(
            self.rest, "/api/v1/nodes", self._on_node, {"labelSelector": f"{SIMULATED_LABEL}=true"}
        )
        self.pod_watch = Watcher(self.rest, "/api/v1/pods", self._on_pod)
        self.claim_watch = Watcher(self.rest, "/api/v1/persistentvolumeclaims", self._on_claim)
        self.volume_watch = Watcher(
            self.rest, "/api/v1/persistentvolumes", self.provisioner.on_volume
        )
        self.scheduler = Scheduler(
            self.rest, self.pod_watch.snapshot, self._own_nodes, self.claim_watch.get
        )
        self._started = False

    def _own_nodes(self) -> list[Obj]:
        names = {n.name for n in self.nodes}
        return [n for n in self.node_watch.snapshot() if n["metadata"]["name"] in names]

    def _on_node(self, event: str, node: Obj) -> None:
        self.scheduler.wake()

    def _on_pod(self, event: str, pod: Obj) -> None:
        self.kubelet.on_pod(event, pod)
        self.scheduler.wake()

    def _on_claim(self, event: str, claim: Obj) -> None:
        self.provisioner.on_claim(event, claim)
        self.scheduler.wake()

    @property
    def _watches(self) -> list[Watcher]:
        return [self.node_watch, self.claim_watch, self.volume_watch, self.pod_watch]

    def start(self) -> None:
        """Register the nodes, start watching and running; returns once the caches are synced."""
        (self.work_dir / "pods").mkdir(parents=True, exist_ok=True)
        (self.work_dir / "volumes").mkdir(parents=True, exist_ok=True)
        self._started = True
        self.keeper.register()
        self.keeper.start()
        for watch in self._watches:
            watch.start()
        for watch in self._watches:
            if not watch.synced.wait(SYNC_TIMEOUT):
                raise TimeoutError(f"no first listing of {watch.path} in {SYNC_TIMEOUT:.0f} s")
        self.scheduler.start()
        log.info("node simulator started: %s", ", ".join(n.name for n in self.nodes))

    def ready(self) -> bool:
        """All nodes are Ready and free of the start-up not-ready taint."""
        nodes = self._own_nodes()
        return len(nodes) == len(self.nodes) and all(is_ready(n) for n in nodes)

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Wait until the node lifecycle controller has accepted the nodes as Ready."""
        if not wait_for(self.ready, timeout, 0.1):
            seen = [(n["metadata"]["name"], n["spec"].get("taints")) for n in self._own_nodes()]
            raise TimeoutError(
                f"simulated nodes not Ready (or still tainted not-ready) after {timeout:.0f} s: "
                f"{seen} (name, taints)"
            )

    def stop(self) -> None:
        """Kill every process it started, stop its threads, delete its Nodes and Leases."""
        if not self._started:
            return
        self._started = False
        self.scheduler.stop()
        self.kubelet.stop()
        self.keeper.stop()
        for watch in self._watches:
            watch.stop()
        for thread in [self.scheduler, self.keeper, *self._watches]:
            if thread.is_alive():
                thread.join(10)
        self.keeper.unregister()
        log.info("node simulator stopped")

    def __enter__(self) -> NodeSimulator:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


# --- command line ---------------------------------------------------------------------------------


def parse_node(text: str) -> NodeSpec:
    """`NAME` or `NAME:cpu=8,memory=32Gi,nvidia.com/gpu=2` (missing cpu/memory/pods: defaults)."""
    name, _, rest = text.partition(":")
    capacity = dict(DEFAULT_CAPACITY)
    for item in filter(None, rest.split(",")):
        resource, sep, amount = item.partition("=")
        if not sep or not resource or not amount:
            raise argparse.ArgumentTypeError(
                f"--node {text}: expected RESOURCE=AMOUNT, got {item!r}"
            )
        capacity[resource.strip()] = amount.strip()
    if not name:
        raise argparse.ArgumentTypeError(f"--node {text}: the node needs a name")
    return NodeSpec(name=name, capacity=capacity)


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kubeconfig", required=True, type=Path)
    parser.add_argument("--work-dir", required=True, type=Path)
    parser.add_argument(
        "--node",
        action="append",
        type=parse_node,
        default=[],
        help="NAME[:RESOURCE=AMOUNT,...]; repeatable",
    )
    parser.add_argument("--image-map", type=Path, help="YAML list of {image: GLOB, python: PATH}")
    parser.add_argument("--ready-timeout", type=float, default=60.0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("urllib3").setLevel(logging.ERROR)  # retries while the API server stops
    nodes = args.node or [parse_node("sim-0:cpu=8,memory=32Gi,nvidia.com/gpu=2")]
    try:
        images = ImageMap.from_yaml(args.image_map) if args.image_map else ImageMap.default()
    except (OSError, ImageMapError) as exc:
        print(f"node simulator: {exc}", file=sys.stderr)
        return 2
    from kubernetes.config import new_client_from_config

    client = new_client_from_config(config_file=str(args.kubeconfig))
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    simulator = NodeSimulator(client, nodes, args.work_dir, images)
    try:
        simulator.start()
        started = time.monotonic()
        while not done.is_set() and not simulator.ready():
            if time.monotonic() - started > args.ready_timeout:
                print("node simulator: nodes not Ready in time", file=sys.stderr)
                return 1
            done.wait(0.2)
        print(f"node simulator: nodes {[n.name for n in nodes]} ready", flush=True)
        done.wait()
    finally:
        simulator.stop()
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
