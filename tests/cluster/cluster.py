"""`make cluster-up` / `make cluster-down`: a local Kubernetes for trying the operator by hand.

    python tests/cluster/cluster.py up   [--dir .cluster] [--node NAME:cpu=8,nvidia.com/gpu=2 ...]
    python tests/cluster/cluster.py down [--dir .cluster]

`up` builds the control plane the first time (cached), starts etcd, kube-apiserver,
kube-controller-manager and the node simulator, writes `DIR/kubeconfig`, and prints how to use
it. `down` stops exactly the processes `up` recorded in `DIR/pids.json`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from cluster.control_plane import ControlPlane, stop_pids  # noqa: E402

DEFAULT_NODE = "sim-0:cpu=8,memory=32Gi,nvidia.com/gpu=2"
NODE_WAIT_SECONDS = 30.0


def up(state: Path, nodes: list[str]) -> int:
    if (state / "pids.json").exists():
        print(f"{state} already runs a cluster; `make cluster-down` first", file=sys.stderr)
        return 2
    plane = ControlPlane(state.resolve())
    plane.start()
    simulator = [
        sys.executable,
        str(HERE / "node_simulator.py"),
        f"--kubeconfig={plane.kubeconfig}",
        f"--work-dir={plane.state / 'nodes'}",
        *(f"--node={n}" for n in nodes),
    ]
    with (plane.state / "logs" / "node-simulator.log").open("ab") as log:
        proc = subprocess.Popen(
            simulator, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    pids = json.loads(plane.pids_file.read_text())
    pids["node-simulator"] = proc.pid
    plane.pids_file.write_text(json.dumps(pids, indent=1))
    names = [n.split(":", 1)[0] for n in nodes]
    if not _nodes_ready(plane.kubeconfig, names):
        print(f"nodes {names} not Ready; see {plane.state / 'logs'}", file=sys.stderr)
        return 1
    print(f"Cluster up: API server {plane.server}, nodes {', '.join(names)}.")
    print(f"  export KUBECONFIG={plane.kubeconfig}")
    columns = "NAME:.metadata.name,GPUS:.status.capacity.nvidia\\.com/gpu"
    print(f"  .venv/bin/kubectl get nodes -o custom-columns={columns}")
    print(f"Logs in {plane.state / 'logs'}; stop with `make cluster-down`.")
    return 0


def _nodes_ready(kubeconfig: Path, names: list[str]) -> bool:
    from kubernetes.client import CoreV1Api
    from kubernetes.config import new_client_from_config

    core = CoreV1Api(new_client_from_config(config_file=str(kubeconfig)))
    deadline = time.monotonic() + NODE_WAIT_SECONDS
    while time.monotonic() < deadline:
        ready = {
            n.metadata.name
            for n in core.list_node().items
            if any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or [])
        }
        if set(names) <= ready:
            return True
        time.sleep(0.5)
    return False


def down(state: Path) -> int:
    stopped = stop_pids(state / "pids.json")
    print(f"stopped {', '.join(stopped)}" if stopped else f"nothing running in {state}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("up", help="build (first time) and start the cluster")
    start.add_argument("--dir", default=".cluster", help="state folder (default: %(default)s)")
    start.add_argument(
        "--node",
        action="append",
        help=f"a simulated node NAME:RESOURCE=QTY,... (default: {DEFAULT_NODE}); repeatable",
    )
    stop = sub.add_parser("down", help="stop what `up` started")
    stop.add_argument("--dir", default=".cluster", help="state folder (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.command == "up":
        return up(Path(args.dir), args.node or [DEFAULT_NODE])
    return down(Path(args.dir))


if __name__ == "__main__":
    sys.exit(main())
