"""`hpo run / show / plot` end to end: real processes, real launcher, real files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
HPO = [sys.executable, "-m", "hpo_operator.cli"]
TOY = Path(__file__).resolve().parent / "trainers" / "toy_trainer.py"


def hpo(
    *args: str, env: dict[str, str] | None = None, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*HPO, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def toy_manifest(tmp: Path, name: str = "toy", **spec: Any) -> Path:
    doc = {
        "apiVersion": "hpo.dev/v1alpha1",
        "kind": "HPOExperiment",
        "metadata": {"name": name},
        "spec": {
            "objective": {"metric": "accuracy", "direction": "maximize"},
            "algorithm": {"name": "tpe", "seed": 5},
            "parameters": [
                {"name": "x", "float": {"min": 0.0, "max": 1.0}},
                {"name": "n", "int": {"min": 1, "max": 4}},
            ],
            "maxTrials": 6,
            "parallelism": 1,
            "trialTemplate": {
                "spec": {
                    "containers": [
                        {"name": "t", "image": "python:3.11", "command": [sys.executable, str(TOY)]}
                    ]
                }
            },
            **spec,
        },
    }
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def status(out: Path) -> dict[str, Any]:
    return yaml.safe_load((out / "status.yaml").read_text())


def trial_params(out: Path) -> list[dict[str, Any]]:
    dirs = sorted((out / "trials").iterdir(), key=lambda d: int(d.name.rsplit("-t", 1)[1]))
    return [json.loads((d / "trial.json").read_text())["parameters"] for d in dirs]


def test_quickstart_runs_shows_and_plots(tmp_path: Path) -> None:
    out = tmp_path / "qs"
    run = hpo("run", str(ROOT / "examples" / "quickstart.yaml"), "--out", str(out))
    assert run.returncode == 0, run.stderr + run.stdout
    st = status(out)
    assert st["phase"] == "Succeeded"
    assert st["trials"]["total"] == 12 and st["trials"]["succeeded"] == 12
    assert st["bestTrial"]["name"].startswith("quickstart-t")
    assert 0.0 < st["bestTrial"]["objective"] < 0.69  # better than guessing: log 2
    for column in ("learning_rate", "how_many_training_steps", "batch_size", "loss"):
        assert column in run.stdout
    assert "Best trial: " + st["bestTrial"]["name"] in run.stdout
    config = json.loads((out / "trials" / "quickstart-t0" / "config.json").read_text())
    assert type(config["how_many_training_steps"]) is int
    assert type(config["learning_rate"]) is float
    assert (out / "trials" / "quickstart-t0" / "results" / "val_dict_list.json").exists()

    show = hpo("show", str(out))
    assert show.returncode == 0
    assert st["bestTrial"]["name"] + " ★" in show.stdout

    png = tmp_path / "x.png"
    plot = hpo("plot", str(out), "-o", str(png))
    assert plot.returncode == 0, plot.stderr
    import matplotlib.image

    pixels = matplotlib.image.imread(str(png))
    assert pixels.shape[0] >= 600 and pixels.shape[1] >= 800
    assert pixels.std() > 0.05  # not a blank canvas


def test_a_relative_out_folder_works_from_any_directory(tmp_path: Path) -> None:
    manifest = toy_manifest(tmp_path, maxTrials=2)
    run = subprocess.run(
        [*HPO, "run", str(manifest), "--out", "runs/rel"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert status(tmp_path / "runs" / "rel")["trials"]["succeeded"] == 2


def test_same_manifest_and_seed_give_identical_trials(tmp_path: Path) -> None:
    manifest = toy_manifest(tmp_path)
    for out in ("a", "b"):
        assert hpo("run", str(manifest), "--out", str(tmp_path / out)).returncode == 0
    assert trial_params(tmp_path / "a") == trial_params(tmp_path / "b")
    assert len(trial_params(tmp_path / "a")) == 6


def test_interrupt_then_resume_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    manifest = toy_manifest(tmp_path)
    slow = {**os.environ, "TOY_SLEEP": "0.25"}
    full = tmp_path / "full"
    assert hpo("run", str(manifest), "--out", str(full)).returncode == 0

    out = tmp_path / "cut"
    proc = subprocess.Popen(
        [*HPO, "run", str(manifest), "--out", str(out)],
        env=slow, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while len(list(out.glob("trials/*/summary.json"))) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # the fourth trial is now running
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr + stdout
    assert "--resume" in stdout
    st = status(out)
    assert st["phase"] == "Stopped"
    finished = {p.parent.name: p.stat().st_mtime_ns for p in out.glob("trials/*/summary.json")}
    assert len(finished) >= 3
    assert st["trials"]["succeeded"] == len(finished)

    resumed = hpo("run", str(manifest), "--out", str(out), "--resume", env={"TOY_SLEEP": "0"})
    assert resumed.returncode == 0, resumed.stderr + resumed.stdout
    assert trial_params(out) == trial_params(full)
    for name, mtime in finished.items():
        summary = out / "trials" / name / "summary.json"
        assert summary.stat().st_mtime_ns == mtime, f"{name} was run again"
        assert (out / "trials" / name / "trainer.log").read_text().count("toy trainer done") == 1
    assert status(out)["phase"] == "Succeeded"
    assert status(out)["trials"]["succeeded"] == 6


def test_bad_manifest_exits_2_with_field_paths_before_any_trial(tmp_path: Path) -> None:
    manifest = toy_manifest(
        tmp_path,
        parallelism=0,
        parameters=[{"name": "x", "int": {"min": 5, "max": 3}}],
    )
    out = tmp_path / "out"
    run = hpo("run", str(manifest), "--out", str(out))
    assert run.returncode == 2
    assert "spec.parallelism: must be >= 1, got 0" in run.stderr
    assert "spec.parameters[0].int: min (5) must be less than max (3)" in run.stderr
    assert not out.exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("kind: [unclosed", "not valid YAML"),
        ("a: 1\n---\nb: 2\n", "expected one HPOExperiment document, found 2"),
    ],
)
def test_unreadable_manifests_exit_2(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(content)
    run = hpo("run", str(path), "--out", str(tmp_path / "o"))
    assert run.returncode == 2 and message in run.stderr
    missing = hpo("run", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2 and "no such file" in missing.stderr


def test_failing_trials_fail_the_experiment_and_keep_results(tmp_path: Path) -> None:
    manifest = toy_manifest(
        tmp_path, maxFailedTrials=2, maxTrials=10, algorithm={"name": "random", "seed": 1}
    )
    out = tmp_path / "out"
    run = hpo("run", str(manifest), "--out", str(out), env={"TOY_FAIL_ABOVE": "0.0"})
    assert run.returncode == 1, run.stderr + run.stdout
    st = status(out)
    assert st["phase"] == "Failed"
    assert st["reason"] == "MaxFailedTrialsReached"
    failed = [r for r in st["results"] if r["phase"] == "Failed"]
    assert len(failed) == 2
    assert all("code 3" in r["reason"] for r in failed)
    assert all(r["curve"] for r in failed)  # the partial curve is kept


def test_target_reached_stops_the_experiment(tmp_path: Path) -> None:
    manifest = toy_manifest(
        tmp_path,
        objective={"metric": "accuracy", "direction": "maximize", "target": 0.5},
        parameters=[{"name": "x", "float": {"min": 0.2, "max": 0.4}}],
        maxTrials=10,
    )
    out = tmp_path / "out"
    run = hpo("run", str(manifest), "--out", str(out))
    assert run.returncode == 0, run.stderr
    st = status(out)
    assert st["reason"] == "TargetReached"
    assert st["trials"]["total"] == 1


def test_existing_folder_needs_resume_and_resume_needs_the_same_space(tmp_path: Path) -> None:
    manifest = toy_manifest(tmp_path, maxTrials=2)
    out = tmp_path / "out"
    assert hpo("run", str(manifest), "--out", str(out)).returncode == 0
    again = hpo("run", str(manifest), "--out", str(out))
    assert again.returncode == 2 and "--resume" in again.stderr
    more = toy_manifest(tmp_path, maxTrials=3)
    grown = hpo("run", str(more), "--out", str(out), "--resume")
    assert grown.returncode == 0 and status(out)["trials"]["total"] == 3
    changed = toy_manifest(tmp_path, parameters=[{"name": "x", "float": {"min": 0.0, "max": 2.0}}])
    refused = hpo("run", str(changed), "--out", str(out), "--resume")
    assert refused.returncode == 2 and "spec.parameters" in refused.stderr


def test_parallelism_bounds_the_trials_running_at_once(tmp_path: Path) -> None:
    manifest = toy_manifest(tmp_path, maxTrials=6, algorithm={"name": "random", "seed": 2})
    out = tmp_path / "out"
    run = hpo(
        "run", str(manifest), "--out", str(out), "--parallelism", "3", env={"TOY_SLEEP": "0.3"}
    )
    assert run.returncode == 0, run.stderr
    spans = [json.loads(p.read_text()) for p in out.glob("trials/*/results/times.json")]
    assert len(spans) == 6
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    running, most = 0, 0
    for _, change in events:
        running += change
        most = max(most, running)
    assert most == 3
