"""A real Kubernetes control plane on loopback: etcd, kube-apiserver, kube-controller-manager.

The binaries come from `build-control-plane.sh` (Debian's kubernetes 1.20.2 source, built once
and cached). Everything else is made here, in a state folder: a CA and a serving certificate,
a service-account key, an admin token (group system:masters), free loopback ports, and an admin
kubeconfig. What was started is recorded in `pids.json`, so `stop` (or `cluster.py down` from
another process) stops exactly that, by process id.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
BUILD_SCRIPT = HERE / "build-control-plane.sh"
CRDS = HERE.parent.parent / "crds"  # installed before the controllers start
ETCD = "/usr/bin/etcd"
READY_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def binaries_dir() -> Path:
    """Build (first time) or find the cached kube-apiserver and kube-controller-manager."""
    out = subprocess.run(["bash", str(BUILD_SCRIPT)], check=True, stdout=subprocess.PIPE, text=True)
    return Path(out.stdout.strip().splitlines()[-1])


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_certificates(pki: Path) -> None:
    """A CA, a serving certificate for 127.0.0.1/localhost, and a service-account key."""
    pki.mkdir(parents=True, exist_ok=True)
    _openssl("genrsa", "-out", "ca.key", "2048", cwd=pki)
    _openssl("req", "-x509", "-new", "-key", "ca.key", "-subj", "/CN=hpo-test-ca",
             "-days", "30", "-out", "ca.crt", cwd=pki)  # fmt: skip
    _openssl("genrsa", "-out", "apiserver.key", "2048", cwd=pki)
    (pki / "san.cnf").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc\n"
    )
    _openssl("req", "-new", "-key", "apiserver.key", "-subj", "/CN=kube-apiserver",
             "-out", "apiserver.csr", cwd=pki)  # fmt: skip
    _openssl("x509", "-req", "-in", "apiserver.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-days", "30", "-extfile", "san.cnf", "-out", "apiserver.crt",
             cwd=pki)  # fmt: skip
    _openssl("genrsa", "-out", "sa.key", "2048", cwd=pki)


def write_kubeconfig(path: Path, server: str, ca: Path, token: str) -> None:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "hpo-local",
                "cluster": {
                    "server": server,
                    "certificate-authority-data": base64.b64encode(ca.read_bytes()).decode(),
                },
            }
        ],
        "users": [{"name": "admin", "user": {"token": token}}],
        "contexts": [{"name": "hpo-local", "context": {"cluster": "hpo-local", "user": "admin"}}],
        "current-context": "hpo-local",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)


@dataclass
class ControlPlane:
    state: Path
    server: str = ""
    token: str = ""
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def kubeconfig(self) -> Path:
        return self.state / "kubeconfig"

    @property
    def pids_file(self) -> Path:
        return self.state / "pids.json"

    def start(self) -> None:
        """Start etcd, kube-apiserver and kube-controller-manager; wait until ready."""
        bins = binaries_dir()
        self.state.mkdir(parents=True, exist_ok=True)
        pki = self.state / "pki"
        make_certificates(pki)
        self.token = secrets.token_hex(16)
        (pki / "tokens.csv").write_text(f'{self.token},admin,admin,"system:masters"\n')
        etcd_port, peer_port, api_port = free_port(), free_port(), free_port()
        self.server = f"https://127.0.0.1:{api_port}"
        write_kubeconfig(self.kubeconfig, self.server, pki / "ca.crt", self.token)
        logs = self.state / "logs"
        logs.mkdir(exist_ok=True)
        pids: dict[str, int] = {}
        try:
            pids["etcd"] = self._spawn("etcd", _etcd_args(self.state, etcd_port, peer_port), logs)
            apiserver = _apiserver_args(pki, etcd_port, api_port)
            pids["kube-apiserver"] = self._spawn(str(bins / "kube-apiserver"), apiserver, logs)
            self._write_pids(pids)
            self._wait_ready(pki / "ca.crt")
            # The garbage collector learns new kinds only on its 30 s discovery resync: install
            # the project's CRDs before it starts, so owner references to them cascade at once.
            install_crds(self.kubeconfig, sorted(CRDS.glob("*.yaml")))
            manager = _controller_manager_args(self.kubeconfig, pki)
            pids["kube-controller-manager"] = self._spawn(
                str(bins / "kube-controller-manager"), manager, logs
            )
        finally:
            self._write_pids(pids)

    def _spawn(self, program: str, args: list[str], logs: Path) -> int:
        name = Path(program).name
        with (logs / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen(
                [program, *args], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.processes.append(proc)
        return proc.pid

    def _write_pids(self, pids: dict[str, int]) -> None:
        self.pids_file.write_text(json.dumps(pids, indent=1))

    def _wait_ready(self, ca: Path) -> None:
        context = ssl.create_default_context(cafile=str(ca))
        request = urllib.request.Request(
            f"{self.server}/readyz", headers={"Authorization": f"Bearer {self.token}"}
        )
        deadline = time.monotonic() + READY_TIMEOUT
        last = "no answer"
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(request, context=context, timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError as exc:
                last = str(exc)
            time.sleep(0.25)
        logs = self.state / "logs" / "kube-apiserver.log"
        raise RuntimeError(
            f"kube-apiserver not ready after {READY_TIMEOUT:.0f} s ({last}); see {logs}"
        )

    def stop(self) -> None:
        stop_pids(self.pids_file)
        for proc in self.processes:
            proc.wait()  # reap them; stop_pids made sure they are gone


def stop_pids(pids_file: Path, grace: float = 10.0) -> list[str]:
    """Stop what a state folder records as started, last started first, one at a time (the
    API server exits promptly only while etcd is still there): SIGTERM, then SIGKILL after
    `grace` seconds."""
    if not pids_file.exists():
        return []
    pids: dict[str, int] = json.loads(pids_file.read_text())
    for pid in reversed(list(pids.values())):
        _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        _signal(pid, signal.SIGKILL)
    pids_file.unlink()
    return list(pids)


def install_crds(kubeconfig: Path, files: list[Path], timeout: float = 30.0) -> None:
    """Create the CustomResourceDefinitions in `files` and wait until they are Established."""
    from kubernetes.client import ApiextensionsV1Api
    from kubernetes.config import new_client_from_config

    with new_client_from_config(config_file=str(kubeconfig)) as client:
        api = ApiextensionsV1Api(client)
        names = []
        for path in files:
            crd = yaml.safe_load(path.read_text())
            api.create_custom_resource_definition(crd)
            names.append(crd["metadata"]["name"])
        deadline = time.monotonic() + timeout
        for name in names:
            while not _established(api.read_custom_resource_definition(name)):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"CRD {name} not Established after {timeout:.0f} s")
                time.sleep(0.1)


def _established(crd: Any) -> bool:
    conditions = crd.status.conditions or [] if crd.status else []
    return any(c.type == "Established" and c.status == "True" for c in conditions)


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)  # each was started in its own session: its group is its pid


def _alive(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
        if waited == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _etcd_args(state: Path, port: int, peer: int) -> list[str]:
    return [
        "--name=hpo-test",
        f"--data-dir={state / 'etcd'}",
        f"--listen-client-urls=http://127.0.0.1:{port}",
        f"--advertise-client-urls=http://127.0.0.1:{port}",
        f"--listen-peer-urls=http://127.0.0.1:{peer}",
        f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
        f"--initial-cluster=hpo-test=http://127.0.0.1:{peer}",
        "--log-level=warn",
    ]


def _apiserver_args(pki: Path, etcd_port: int, port: int) -> list[str]:
    return [
        f"--etcd-servers=http://127.0.0.1:{etcd_port}",
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        f"--secure-port={port}",
        f"--cert-dir={pki}",
        f"--tls-cert-file={pki / 'apiserver.crt'}",
        f"--tls-private-key-file={pki / 'apiserver.key'}",
        f"--token-auth-file={pki / 'tokens.csv'}",
        "--authorization-mode=RBAC",
        "--service-account-issuer=https://kubernetes.default.svc",
        f"--service-account-key-file={pki / 'sa.key'}",
        f"--service-account-signing-key-file={pki / 'sa.key'}",
        "--service-cluster-ip-range=10.96.0.0/16",
        "--max-requests-inflight=1000",
        "--max-mutating-requests-inflight=500",
        "--v=1",
    ]


def _controller_manager_args(kubeconfig: Path, pki: Path) -> list[str]:
    return [
        f"--kubeconfig={kubeconfig}",
        "--leader-elect=false",
        f"--service-account-private-key-file={pki / 'sa.key'}",
        f"--root-ca-file={pki / 'ca.crt'}",
        "--controllers=*",
        "--kube-api-qps=300",
        "--kube-api-burst=600",
        "--port=0",
        "--secure-port=0",
        "--v=1",
    ]
