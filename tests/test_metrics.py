"""The operator's metrics from trial rows and times alone: what each series says, that counters
never go down, and that names and labels keep Prometheus' conventions and a bounded cardinality.
(The same metrics scraped by a real Prometheus from a real operator: test_metrics_prometheus.py.)
"""

from __future__ import annotations

import json
import math
import re
import urllib.request
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from cluster.control_plane import free_port
from conftest import ROOT, manifest
from hpo_operator.core.spec import parse_experiment
from hpo_operator.core.trial import FAILED, PENDING, RUNNING, STOPPED, SUCCEEDED, Trial
from hpo_operator.k8s.observe import COMPLETED, IMAGE_PULL_FAILED, TRAINER_ERROR, Timing
from hpo_operator.metrics import UNKNOWN, Metrics, sample
from hpo_operator.settings import Settings, SettingsError

NOW = 10_000.0
EXPORTED = {  # family name -> type; the README's "Metrics and Grafana" lists each
    "hpo_experiments": "gauge", "hpo_trials": "gauge", "hpo_trials_finished": "counter",
    "hpo_experiment_max_trials": "gauge", "hpo_best_objective": "gauge",
    "hpo_latest_objective": "gauge", "hpo_trial_duration_seconds": "histogram",
    "hpo_trial_pending_seconds": "histogram", "hpo_gpu_seconds": "counter",
    "hpo_running_gpu_seconds": "gauge", "hpo_reconcile_duration_seconds": "histogram",
    "hpo_kubernetes_api_errors": "counter",
}  # fmt: skip
ALLOWED_LABELS = {"namespace", "experiment", "phase", "reason", "metric", "direction", "le",
                  "verb", "code"}  # fmt: skip


def spec(**fields: Any) -> Any:
    base = {"maxTrials": 8, "trialResources": {"gpus": 2}}
    return parse_experiment(manifest(**{**base, **fields}))


def trial(
    index: int, phase: str, objective: float | None = None, cause: str | None = None
) -> Trial:
    return Trial(index, f"exp-t{index}", {}, phase, objective, cause=cause)


TRIALS = [
    trial(0, SUCCEEDED, 0.8, COMPLETED),
    trial(1, FAILED, None, TRAINER_ERROR),
    trial(2, SUCCEEDED, 0.9, COMPLETED),  # the best (maximize)
    trial(3, SUCCEEDED, 0.7, COMPLETED),  # ended last: the latest objective
    trial(4, RUNNING),
    trial(5, PENDING),
    trial(6, FAILED, None, IMAGE_PULL_FAILED),  # on a node, never started
]
TIMES = {
    "exp-t0": Timing(created=0, on_node=10, started=12, ended=72),  # ran 60 s, held GPUs 62 s
    "exp-t1": Timing(created=0, on_node=20, started=25, ended=30),  # ran 5 s, held 10 s
    "exp-t2": Timing(created=100, on_node=150, started=160, ended=400),  # ran 240 s, held 250 s
    "exp-t3": Timing(created=100, on_node=110, started=111, ended=9000),  # ran 8889 s
    "exp-t4": Timing(created=9000, on_node=9900, started=9901),  # running: 100 s on the node
    "exp-t5": Timing(created=9500),
    "exp-t6": Timing(created=9000, on_node=9100, ended=9400),  # held 300 s pulling the image
}


def test_a_sample_counts_trials_and_reads_their_times() -> None:
    s = sample("ns", "exp", RUNNING, spec(), TRIALS, TIMES, NOW)
    assert s.trials == {PENDING: 1, RUNNING: 1, SUCCEEDED: 3, FAILED: 2, STOPPED: 0}
    assert s.finished == {
        (SUCCEEDED, COMPLETED): 3, (FAILED, TRAINER_ERROR): 1, (FAILED, IMAGE_PULL_FAILED): 1,
    }  # fmt: skip
    assert (s.best, s.latest, s.max_trials) == (0.9, 0.7, 8)
    assert s.objective == ("accuracy", "maximize")
    # Two GPUs per trial: 2 x (62 + 10 + 250 + 8890 + 300) for the ended trials, 2 x 100 running.
    assert s.gpu_seconds == 2 * (62 + 10 + 250 + 8890 + 300)
    assert s.running_gpu_seconds == 2 * 100
    # Durations 60, 5, 240, 8889: the histogram's cumulative counts and sum.
    counts = dict(zip(s.duration.bounds, s.duration.counts, strict=True))
    assert (counts[1], counts[5], counts[60], counts[300], counts[7200]) == (0, 1, 2, 3, 3)
    assert counts[math.inf] == 4 and s.duration.total == 60 + 5 + 240 + 8889
    # Pending (created -> trainer started): 12, 25, 60, 11, 901; t5, t6 never started.
    assert s.pending.count == 5 and s.pending.total == 12 + 25 + 60 + 11 + 901


def test_minimize_picks_the_lowest_best_objective() -> None:
    s = sample("ns", "exp", RUNNING, spec(objective={"metric": "loss", "direction": "minimize"}),
               TRIALS, TIMES, NOW)  # fmt: skip
    assert (s.best, s.latest, s.objective) == (0.7, 0.7, ("loss", "minimize"))


def test_no_gpus_means_no_gpu_seconds_and_a_refused_spec_only_a_phase() -> None:
    s = sample("ns", "exp", RUNNING, spec(trialResources={"gpus": 0}), TRIALS, TIMES, NOW)
    assert s.gpu_seconds == 0 and s.running_gpu_seconds == 0
    refused = sample("ns", "bad", FAILED, None)
    assert refused.phase == FAILED and set(refused.trials.values()) == {0}
    assert refused.objective is None and refused.finished == {}


def parse(text: str) -> dict[str, list[Any]]:
    """Sample name -> samples, as Prometheus would parse the exposition `text`."""
    out: dict[str, list[Any]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append(s)
    return out


def scrape(metrics: Metrics) -> dict[str, list[Any]]:
    return parse(generate_latest(metrics.registry).decode())


def value(samples: dict[str, list[Any]], name: str, **labels: str) -> float:
    found = [s.value for s in samples.get(name, []) if labels.items() <= s.labels.items()]
    assert len(found) == 1, (name, labels, samples.get(name))
    return float(found[0])


def test_the_exposition_says_what_the_sample_says() -> None:
    metrics = Metrics()
    metrics.record(sample("ns", "exp", RUNNING, spec(), TRIALS, TIMES, NOW))
    metrics.record(sample("ns", "bad", FAILED, None))
    metrics.record(sample("other", "x", SUCCEEDED, spec(), TRIALS[:1], TIMES, NOW))
    got = scrape(metrics)
    assert value(got, "hpo_experiments", namespace="ns", phase=RUNNING) == 1
    assert value(got, "hpo_experiments", namespace="ns", phase=FAILED) == 1
    assert value(got, "hpo_experiments", namespace="ns", phase=SUCCEEDED) == 0
    assert value(got, "hpo_experiments", namespace="other", phase=SUCCEEDED) == 1
    assert value(got, "hpo_trials", experiment="exp", phase=SUCCEEDED) == 3
    assert value(got, "hpo_trials", experiment="bad", phase=PENDING) == 0
    assert value(got, "hpo_trials_finished_total", experiment="exp", phase=FAILED,
                 reason=IMAGE_PULL_FAILED) == 1  # fmt: skip
    assert value(got, "hpo_best_objective", experiment="exp", metric="accuracy",
                 direction="maximize") == 0.9  # fmt: skip
    assert value(got, "hpo_latest_objective", experiment="exp") == 0.7
    assert value(got, "hpo_experiment_max_trials", experiment="exp") == 8
    assert value(got, "hpo_gpu_seconds_total", experiment="exp") == 2 * 9512
    assert value(got, "hpo_running_gpu_seconds", experiment="exp") == 200
    assert value(got, "hpo_trial_duration_seconds_bucket", experiment="exp", le="60.0") == 2
    assert value(got, "hpo_trial_duration_seconds_count", experiment="exp") == 4
    assert value(got, "hpo_trial_pending_seconds_sum", experiment="exp") == 1009
    # A refused spec has no objective, and so no objective or histogram series.
    assert not [
        s for s in got["hpo_trial_duration_seconds_count"] if s.labels["experiment"] == "bad"
    ]


def test_names_and_labels_follow_prometheus_conventions() -> None:
    metrics = Metrics()
    metrics.record(sample("ns", "exp", RUNNING, spec(), TRIALS, TIMES, NOW))
    metrics.api_error("create", 403)
    metrics.reconcile_duration.observe(0.02)
    text = generate_latest(metrics.registry).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    ours = {n: f for n, f in families.items() if n.startswith("hpo_")}
    assert sorted(ours) == sorted(EXPORTED), sorted(ours)
    for name, family in ours.items():
        assert family.documentation and family.type == EXPORTED[name], name
        if family.type == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in family.samples), name
        if family.type == "histogram" or "seconds" in name:
            assert "_seconds" in name, name
        labels = {k for s in family.samples for k in s.labels}
        assert labels <= ALLOWED_LABELS, (name, labels - ALLOWED_LABELS)
    # No series per trial: a thousand more trials add no series.
    many = [trial(i, SUCCEEDED, 0.5, COMPLETED) for i in range(1000)]
    before = sum(len(f.samples) for f in ours.values())
    metrics.record(sample("ns", "exp", RUNNING, spec(), many, {}, NOW))
    after = text_string_to_metric_families(generate_latest(metrics.registry).decode())
    assert sum(len(f.samples) for f in after if f.name.startswith("hpo_")) <= before


def test_counters_never_go_down_and_a_deleted_experiment_is_forgotten() -> None:
    metrics = Metrics()
    metrics.record(sample("ns", "exp", RUNNING, spec(), TRIALS, TIMES, NOW))
    # The pods of two trials are gone (deleted by hand): their times and t1 are no longer seen.
    fewer = {k: v for k, v in TIMES.items() if k not in ("exp-t0", "exp-t2")}
    metrics.record(sample("ns", "exp", RUNNING, spec(), [t for t in TRIALS if t.index != 1],
                          fewer, NOW + 10))  # fmt: skip
    got = scrape(metrics)
    assert value(got, "hpo_gpu_seconds_total", experiment="exp") == 2 * 9512
    assert value(got, "hpo_trials_finished_total", reason=TRAINER_ERROR) == 1
    assert value(got, "hpo_trial_duration_seconds_count", experiment="exp") == 4
    # Gauges say what is seen now.
    assert value(got, "hpo_trials", experiment="exp", phase=FAILED) == 1
    assert value(got, "hpo_running_gpu_seconds", experiment="exp") == 2 * 110
    metrics.forget("ns", "exp")
    got = scrape(metrics)
    assert not [s for samples in got.values() for s in samples if s.labels.get("experiment")]
    assert "hpo_experiments" not in got  # no namespace has experiments left


def test_an_unrecorded_cause_is_counted_as_unknown() -> None:
    s = sample("ns", "exp", RUNNING, spec(), [trial(0, STOPPED)], {}, NOW)
    assert s.finished == {(STOPPED, UNKNOWN): 1}


def test_api_errors_and_reconcile_latency() -> None:
    metrics = Metrics()
    for code in (403, 403, 500):
        metrics.api_error("create", code)
    metrics.api_error("list", 0)
    with metrics.reconcile_duration.time():
        pass
    got = scrape(metrics)
    assert value(got, "hpo_kubernetes_api_errors_total", verb="create", code="403") == 2
    assert value(got, "hpo_kubernetes_api_errors_total", verb="list", code="0") == 1
    assert value(got, "hpo_reconcile_duration_seconds_count") == 1


def test_the_server_serves_metrics_over_http() -> None:
    metrics = Metrics()
    metrics.record(sample("ns", "exp", RUNNING, spec(), TRIALS, TIMES, NOW))
    port = free_port()
    metrics.serve(port, "127.0.0.1")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
            text = answer.read().decode()
    finally:
        metrics.close()
    assert 'hpo_trials{experiment="exp",namespace="ns",phase="Succeeded"} 3.0' in text


@pytest.mark.parametrize(
    ("env", "error"),
    [
        ({"HPO_METRICS_PORT": "eighty"}, "HPO_METRICS_PORT='eighty': expected a port number"),
        ({"HPO_METRICS_PORT": "70000"}, "HPO_METRICS_PORT='70000'"),
        ({"HPO_METRICS_PORT": "-1"}, "HPO_METRICS_PORT='-1'"),
    ],
)
def test_a_bad_metrics_port_is_refused_by_name(env: dict[str, str], error: str) -> None:
    with pytest.raises(SettingsError, match=error):
        Settings.from_env(env)


def test_metrics_settings_default_to_port_8080_on_every_address() -> None:
    settings = Settings.from_env({})
    assert (settings.metrics_port, settings.metrics_address) == (8080, "0.0.0.0")
    off = Settings.from_env({"HPO_METRICS_PORT": "0", "HPO_METRICS_ADDRESS": "127.0.0.1"})
    assert (off.metrics_port, off.metrics_address) == (0, "127.0.0.1")


def test_the_readme_lists_every_metric_with_its_meaning() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Metrics and Grafana", 1)[1].split("\n## ", 1)[0]
    rows = {
        m.group(1): m.group(2)
        for m in re.finditer(r"^\| `(hpo_\w+)` \| (\w+) \|", section, flags=re.MULTILINE)
    }
    exposed = {f"{n}_total" if kind == "counter" else n: kind for n, kind in EXPORTED.items()}
    assert rows == exposed


def test_the_dashboard_is_well_formed_for_grafana() -> None:
    doc = json.loads((ROOT / "charts" / "hpo-operator" / "dashboards" / "hpo.json").read_text())
    assert doc["uid"] == "hpo-operator" and doc["title"]
    names = [v["name"] for v in doc["templating"]["list"]]
    assert names == ["datasource", "namespace", "experiment"]
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids))
    for panel in doc["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24 and grid["h"] > 0, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["description"] and panel["targets"], panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)) and all(t["expr"] for t in panel["targets"])
    # Panels do not overlap: each grid cell belongs to one panel.
    cells: dict[tuple[int, int], str] = {}
    for panel in doc["panels"]:
        g = panel["gridPos"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, (panel["title"], cells.get((x, y)))
                cells[(x, y)] = panel["title"]
