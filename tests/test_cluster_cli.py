"""`make cluster-up` / `make cluster-down` (tests/cluster/cluster.py): a second, separate
control plane with the node simulator, seen through kubectl as a user would."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

CLUSTER = [sys.executable, str(ROOT / "tests" / "cluster" / "cluster.py")]
KUBECTL = str(Path(sys.executable).parent / "kubectl")


def test_cluster_up_prints_a_kubeconfig_that_shows_gpu_nodes_and_down_stops_it(
    tmp_path: Path,
) -> None:
    state = tmp_path / "cluster"
    nodes = ["--node", "gpu-a:nvidia.com/gpu=4", "--node", "cpu-b:cpu=4"]
    up = subprocess.run(
        [*CLUSTER, "up", "--dir", str(state), *nodes], capture_output=True, text=True, timeout=600
    )
    pids = json.loads((state / "pids.json").read_text())
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        exported = re.search(r"export KUBECONFIG=(\S+)", up.stdout)
        assert exported, up.stdout
        env = {**os.environ, "KUBECONFIG": exported.group(1)}
        nodes = subprocess.run(
            [KUBECTL, "get", "nodes", "-o", "json"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert nodes.returncode == 0, nodes.stderr
        capacity = {
            n["metadata"]["name"]: n["status"]["capacity"]
            for n in json.loads(nodes.stdout)["items"]
        }
        assert capacity["gpu-a"]["nvidia.com/gpu"] == "4"
        assert "nvidia.com/gpu" not in capacity["cpu-b"] and capacity["cpu-b"]["cpu"] == "4"
        again = subprocess.run(
            [*CLUSTER, "up", "--dir", str(state)], capture_output=True, text=True, timeout=60
        )
        assert again.returncode == 2 and "cluster-down" in again.stderr
    finally:
        down = subprocess.run(
            [*CLUSTER, "down", "--dir", str(state)], capture_output=True, text=True, timeout=120
        )
    assert down.returncode == 0, down.stderr
    assert set(pids) == {"etcd", "kube-apiserver", "kube-controller-manager", "node-simulator"}
    for pid in pids.values():
        assert (
            not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
        )
    assert not (state / "pids.json").exists()
