"""The operator's metrics, end to end: experiments run on the local control plane, the operator
serves /metrics, a real Prometheus (Debian's package) scrapes it on loopback, and then

- the values on /metrics match the experiments' status (and the trainers' own clocks);
- every PromQL expression and variable of the Grafana dashboard parses and returns data through
  Prometheus' HTTP API, and names only metrics and labels the operator exports;
- a restarted operator serves the same counters again, and Prometheus sees no counter reset;
- a deleted experiment's series go away.
"""

from __future__ import annotations

import json
import math
import re
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client import ApiClient, CoreV1Api, CustomObjectsApi

from cluster.control_plane import ControlPlane
from cluster.prometheus import Prometheus, PrometheusError
from conftest import ROOT, refuse_jobs, wait_for
from test_metrics import parse
from test_metrics import value as one
from test_operator import API, OperatorProcess, create, scope, status_of, toy

DASHBOARD = ROOT / "charts" / "hpo-operator" / "dashboards" / "hpo.json"
RATE_INTERVAL = "1m"  # what Grafana's $__rate_interval stands for in these queries


# --- reading the dashboard and checking one query ------------------------------------------


def panels(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in doc.get("panels", []):
        yield panel
        yield from panels(panel)  # a collapsed row keeps its panels inside


def targets(doc: dict[str, Any]) -> list[tuple[str, str, str, bool]]:
    """(panel title, expr, legendFormat, is a time series) of every target of every panel."""
    return [
        (p["title"], t["expr"], t.get("legendFormat", ""), p["type"] == "timeseries")
        for p in panels(doc)
        for t in p.get("targets", [])
    ]


def variables(doc: dict[str, Any]) -> dict[str, str]:
    """name -> the Prometheus query of each query variable."""
    found = {}
    for var in doc["templating"]["list"]:
        if var["type"] == "query":
            query = var["query"]
            found[var["name"]] = query["query"] if isinstance(query, dict) else query
    return found


def substitute(expr: str, values: dict[str, str]) -> str:
    """The query as Grafana sends it: variables replaced by regexes of the chosen values."""
    expr = expr.replace("$__rate_interval", RATE_INTERVAL)
    for name in sorted(values, key=len, reverse=True):
        expr = expr.replace(f"${{{name}}}", values[name]).replace(f"${name}", values[name])
    assert "$" not in expr, f"an unknown variable is left in {expr}"
    return expr


def finite(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    def ok(row: dict[str, Any]) -> bool:
        points = row["values"] if "values" in row else [row["value"]]
        return any(math.isfinite(float(v)) for _, v in points)

    return [r for r in rows if ok(r)]


def problems(prom: Prometheus, expr: str, legend: str = "", ranged: bool = False) -> list[str]:
    """What is wrong with one dashboard query: it fails to parse, returns no data, names a metric
    the operator does not export or a label its metric lacks, or groups/labels its legend by a
    label the result does not carry."""
    try:
        rows = finite(prom.query(expr))
        spans = finite(prom.query_range(expr, 60)) if ranged else rows
    except PrometheusError as exc:
        return [f"Prometheus refuses it: {exc}"]
    found = []
    if not rows or not spans:
        found.append("returns no data")
    exported = set(prom.api("label/__name__/values"))
    for name in sorted(set(re.findall(r"\bhpo_[a-z_]+\b", expr)) - exported):
        found.append(f"metric {name} is not exported")
    for name, matchers in re.findall(r"\b(hpo_[a-z_]+)\{([^}]*)\}", expr):
        series = prom.api("series", **{"match[]": name})
        labels = {k for s in series for k in s}
        unquoted = re.sub(r'"[^"]*"', '""', matchers)
        for label in re.findall(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)", unquoted):
            if label not in labels:
                found.append(f"label {label} is not on {name}")
    grouped = [g.strip() for by in re.findall(r"\bby\s*\(([^)]*)\)", expr) for g in by.split(",")]
    shown = re.findall(r"\{\{\s*(\w+)\s*\}\}", legend)
    for label in sorted({g for g in grouped + shown if g and g != "le"}):
        if any(not r["metric"].get(label) for r in rows):
            found.append(f"results lack the label {label}")
    return found


# --- the cluster side -------------------------------------------------------------------------


def scrape(port: int) -> dict[str, list[Any]]:
    """GET /metrics, as `curl localhost:<port>/metrics` would: sample name -> samples."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        return parse(answer.read().decode())


def total(samples: dict[str, list[Any]], name: str, **labels: str) -> float:
    return sum(s.value for s in samples.get(name, []) if labels.items() <= s.labels.items())


@pytest.fixture
def quota_namespace(kube: ApiClient) -> Iterator[str]:
    """A namespace whose ResourceQuota allows no Job: creating a trial is refused with 403."""
    name = f"q-{uuid.uuid4().hex[:10]}"
    core = CoreV1Api(kube)
    core.create_namespace({"metadata": {"name": name}})
    refuse_jobs(kube, name)
    yield name
    core.delete_namespace(name)


def named(doc: dict[str, Any], name: str) -> dict[str, Any]:
    doc["metadata"]["name"] = name
    return doc


def test_metrics_match_the_status_and_every_dashboard_query_returns_data(
    control_plane: ControlPlane,
    kube: ApiClient,
    namespace: str,
    quota_namespace: str,
    sim: Any,
    tmp_path: Path,
) -> None:
    operator = OperatorProcess(
        control_plane.kubeconfig, tmp_path / "operator.log", scope(namespace, quota_namespace)
    )
    operator.start()
    prom = Prometheus(tmp_path / "prometheus", [f"127.0.0.1:{operator.metrics_port}"])
    prom.start()
    try:
        check_a_whole_run(kube, namespace, quota_namespace, operator, prom, sim)
    finally:
        operator.stop()
        prom.stop()
        print(operator.log.read_text()[-4000:])
        print(prom.log()[-2000:])


def check_a_whole_run(
    kube: ApiClient,
    namespace: str,
    quota_namespace: str,
    operator: OperatorProcess,
    prom: Prometheus,
    sim: Any,
) -> None:
    # "toy": one GPU per trial, x=0.9 exits 3 after its first evaluation; ends Succeeded.
    create(kube, namespace, toy(
        env={"TOY_SLEEP": "1", "TOY_FAIL_ABOVE": "0.8"},
        parameters=[{"name": "x", "values": [0.1, 0.5, 0.9, 0.2]}],
        trialResources={"gpus": 1}, maxFailedTrials=3,
    ))  # fmt: skip
    # "broken": its image cannot be pulled; ends Failed at maxFailedTrials 1.
    create(kube, namespace, named(toy(image="registry.example/nope:1", maxFailedTrials=1,
                                      parallelism=1), "broken"))  # fmt: skip
    # "blocked": the namespace's quota refuses its Jobs (403 on create).
    create(kube, quota_namespace, named(toy(), "blocked"))

    ended = ("Succeeded", "Failed")
    for name in ("toy", "broken"):
        phase = lambda n=name: status_of(kube, namespace, n).get("phase")  # noqa: E731
        wait_for(f"{name} to end", lambda p=phase: p() in ended, timeout=120, state=phase)
    port = operator.metrics_port

    def settled() -> dict[str, list[Any]] | None:
        got = scrape(port)
        refused = total(got, "hpo_kubernetes_api_errors_total", verb="create", code="403")
        done = total(got, "hpo_trials_finished_total", experiment="toy")
        return got if refused >= 1 and done == 4 else None

    got = wait_for("the operator to export both experiments' ends", settled, timeout=90)

    # /metrics says what the status says.
    toy_status, broken_status = (
        status_of(kube, namespace, "toy"),
        status_of(kube, namespace, "broken"),
    )
    assert (toy_status["phase"], broken_status["phase"]) == ("Succeeded", "Failed")
    ours = {"namespace": namespace}
    for status, name in ((toy_status, "toy"), (broken_status, "broken")):
        for phase in ("Pending", "Running", "Succeeded", "Failed", "Stopped"):
            count = status["trials"][phase.lower()]
            assert one(got, "hpo_trials", **ours, experiment=name, phase=phase) == count
            if phase in ended:
                assert total(got, "hpo_trials_finished_total", **ours, experiment=name,
                             phase=phase) == count  # fmt: skip
    assert one(got, "hpo_experiments", **ours, phase="Succeeded") == 1
    assert one(got, "hpo_experiments", **ours, phase="Failed") == 1
    # maxTrials is 20, but the grid has 4 points: 4 of 4 done.
    assert toy_status["progress"] == "4/4"
    assert one(got, "hpo_experiment_max_trials", experiment="toy") == 4
    assert one(got, "hpo_best_objective", experiment="toy", metric="accuracy",
               direction="maximize") == toy_status["bestTrial"]["objective"]  # fmt: skip
    objectives = {r.get("objective") for r in toy_status["results"]}
    assert one(got, "hpo_latest_objective", experiment="toy") in objectives
    assert one(got, "hpo_trials_finished_total", experiment="toy", phase="Failed",
               reason="TrainerError") == 1  # fmt: skip
    assert one(got, "hpo_trials_finished_total", experiment="broken", phase="Failed",
               reason="ImagePullFailed") == 1  # fmt: skip
    assert one(got, "hpo_trial_duration_seconds_count", experiment="toy") == 4
    assert one(got, "hpo_trial_pending_seconds_count", experiment="toy") == 4
    # GPU-seconds against the trainers' own clocks: every succeeded trial held its GPU at least
    # as long as it ran (less 2 s of whole-second timestamps), and the four trials' pods held it
    # for little more than their runs: the launcher's install and interpreter start-ups, a few
    # seconds per trial even on a busy machine (seen here: 3 to 5 s for all four together).
    spans = [json.loads(p.read_text()) for p in sim.work_dir.glob("volumes/*/toy/*/times.json")]
    ran = sum(end - start for start, end in spans)
    gpu = one(got, "hpo_gpu_seconds_total", experiment="toy")
    print(f"trainers ran {ran:.1f} s; GPU-seconds {gpu}")
    assert len(spans) == 3 and ran - 2 * 3 <= gpu <= ran + 4 * 6 + 2, (ran, gpu)
    assert one(got, "hpo_running_gpu_seconds", experiment="toy") == 0
    assert one(got, "hpo_gpu_seconds_total", experiment="broken") == 0
    # "blocked" waits, Pending with no trial, and says why (its status has the quota's words).
    blocked = status_of(kube, quota_namespace, "blocked")
    assert (blocked["phase"], blocked["reason"]) == ("Pending", "TrialCreateRefused"), blocked
    assert one(got, "hpo_experiments", namespace=quota_namespace, phase="Pending") == 1
    assert total(got, "hpo_trials", namespace=quota_namespace, experiment="blocked") == 0

    # Prometheus has scraped the ends, a few times over.
    wait_for("Prometheus to see the ends", lambda: finite(prom.query(
        f'sum(hpo_trials_finished_total{{namespace="{namespace}", experiment="toy"}}) == 4'
    )), timeout=60, state=prom.log)  # fmt: skip
    time.sleep(3)
    check_the_dashboard(prom, namespace)

    # A restarted operator serves the same counters; Prometheus sees no reset.
    counters = {name: sorted((tuple(sorted(s.labels.items())), s.value) for s in got[name])
                for name in ("hpo_trials_finished_total", "hpo_gpu_seconds_total",
                             "hpo_trial_duration_seconds_count")}  # fmt: skip
    operator.kill()
    operator.start()

    def again() -> dict[str, list[Any]] | None:
        try:
            now = scrape(port)
        except OSError:
            return None
        return now if total(now, "hpo_trials_finished_total", experiment="broken") else None

    after = wait_for("the restarted operator to export again", again, timeout=60)

    def all_three(s: dict[str, list[Any]]) -> bool:
        seen = {x.labels.get("experiment") for x in s.get("hpo_gpu_seconds_total", [])}
        return seen == {"toy", "broken", "blocked"} and total(
            s, "hpo_trials_finished_total", experiment="toy") == 4  # fmt: skip

    after = wait_for("all three experiments again",
                     lambda: (s := scrape(port)) and all_three(s) and s, timeout=30)  # fmt: skip
    for name, before in counters.items():
        assert sorted((tuple(sorted(s.labels.items())), s.value) for s in after[name]) == before
    restarted = time.time()
    wait_for("Prometheus to scrape the new operator", lambda: finite(prom.query(
        f'timestamp(hpo_gpu_seconds_total{{experiment="toy"}}) > {restarted + 1}'
    )), timeout=30)  # fmt: skip
    for name in ("hpo_trials_finished_total", "hpo_gpu_seconds_total",
                 "hpo_trial_duration_seconds_count"):  # fmt: skip
        resets = prom.query(f'resets({name}{{namespace="{namespace}"}}[10m])')
        assert resets and all(float(r["value"][1]) == 0 for r in resets), (name, resets)

    # Deleting an experiment takes its series away.
    CustomObjectsApi(kube).delete_namespaced_custom_object(
        *API, namespace, "hpoexperiments", "broken"
    )
    wait_for("broken's series to go", lambda: "broken" not in {
        s.labels.get("experiment") for samples in scrape(port).values() for s in samples
    }, timeout=30)  # fmt: skip
    assert one(scrape(port), "hpo_trials", experiment="toy", phase="Succeeded") == 3


def check_the_dashboard(prom: Prometheus, namespace: str) -> None:
    doc = json.loads(DASHBOARD.read_text())
    queries = targets(doc)
    assert len(queries) >= 12
    # The variables: label_values(metric, label) is Grafana's call of /api/v1/label/.../values.
    chosen = {"namespace": namespace, "experiment": "toy"}
    for name, query in variables(doc).items():
        call = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query)
        assert call, query
        selector = substitute(call.group(1), {"namespace": ".*", "experiment": ".*"})
        values = prom.api(f"label/{call.group(2)}/values", **{"match[]": selector})
        assert chosen[name] in values, (name, query, values)
    # Every query, with every namespace and experiment ("All") and with one of each chosen.
    for values in ({"namespace": ".*", "experiment": ".*"}, chosen):
        found = {
            f"{title}: {expr}": problems(prom, substitute(expr, values), legend, ranged)
            for title, expr, legend, ranged in queries
        }
        assert {q: p for q, p in found.items() if p} == {}, values
    # The check itself catches what it is for: a misspelt metric, a label the metric lacks,
    # a legend or grouping by a label the result does not carry.
    assert "returns no data" in problems(prom, "sum(hpo_trial_durations_seconds_sum)")
    assert "metric hpo_trial_durations_seconds_sum is not exported" in problems(
        prom, "sum(hpo_trial_durations_seconds_sum) or vector(1)"
    )
    assert "label experimnt is not on hpo_trials" in problems(
        prom, 'sum(hpo_trials{experimnt=~".*"})'
    )
    assert "results lack the label phase" in problems(
        prom, "sum by (experiment) (hpo_trials)", legend="{{phase}}"
    )
    assert "results lack the label pod" in problems(prom, "sum by (pod) (hpo_trials)")
    assert problems(prom, "sum by (phase) (hpo_trials{") != []
