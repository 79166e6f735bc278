"""A real Prometheus (Debian's package, 2.42) scraping targets on loopback, for the metrics tests.

    with Prometheus(work_dir, ["127.0.0.1:8080"]) as prom:
        prom.query('hpo_trials{phase="Running"}')

`install-prometheus.sh` installs the package when it is missing (apt, without starting its
service); each Prometheus here has its own config, data folder and free port.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from cluster.control_plane import free_port

HERE = Path(__file__).resolve().parent
INSTALL = HERE / "install-prometheus.sh"


class PrometheusError(RuntimeError):
    """Prometheus refused a query; the message is Prometheus' own."""


def binary() -> str:
    found = subprocess.run(["bash", str(INSTALL)], capture_output=True, text=True, check=False)
    if found.returncode != 0:
        raise RuntimeError(f"installing prometheus failed:\n{found.stderr}")
    return found.stdout.strip().splitlines()[-1]


class Prometheus:
    def __init__(self, work: Path, targets: list[str], interval: str = "1s") -> None:
        self.work, self.targets, self.interval = work, targets, interval
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Prometheus:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        config = {
            "global": {"scrape_interval": self.interval, "evaluation_interval": self.interval},
            "scrape_configs": [
                {"job_name": "hpo-operator", "static_configs": [{"targets": self.targets}]}
            ],
        }
        (self.work / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
        log = (self.work / "prometheus.log").open("wb")
        self.proc = subprocess.Popen(
            [binary(), f"--config.file={self.work / 'prometheus.yml'}",
             f"--storage.tsdb.path={self.work / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + 60
        while not self._ready():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"prometheus did not start:\n{self.log()[-3000:]}")
            time.sleep(0.2)

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as answer:
                return bool(answer.status == 200)
        except (urllib.error.URLError, ConnectionError):
            return False

    def log(self) -> str:
        path = self.work / "prometheus.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
            self.proc = None

    def api(self, path: str, **params: Any) -> Any:
        """GET /api/v1/<path>; the answer's `data`, or PrometheusError with its `error`."""
        pairs = [(k, v) for k, vs in params.items() for v in (vs if isinstance(vs, list) else [vs])]
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(pairs)}"
        try:
            with urllib.request.urlopen(url, timeout=30) as answer:
                body = json.load(answer)
        except urllib.error.HTTPError as exc:
            body = json.load(exc)
        if body.get("status") != "success":
            raise PrometheusError(f"{body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query now: [{"metric": {...}, "value": [t, "v"]}, ...]."""
        data = self.api("query", query=expr)
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        return list(data["result"])

    def query_range(self, expr: str, seconds: float, step: float = 2) -> list[dict[str, Any]]:
        """The last `seconds`: [{"metric": {...}, "values": [[t, "v"], ...]}, ...]."""
        end = time.time()
        data = self.api("query_range", query=expr, start=end - seconds, end=end, step=step)
        return list(data["result"])
