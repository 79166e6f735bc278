"""The launcher, run as a real process around small real trainers (no mocks)."""

from __future__ import annotations

import ast
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest

from hpo_operator import launcher

CONFIG = {"how_many_training_steps": 700, "learning_rate": 0.01, "optimizer": "adam", "aug": True}

# Writes records one by one, and what it saw of the contract to seen.json.
GOOD_TRAINER = """
import json, os, time
cfg = json.load(open("config.json"))
result_dir = os.environ["RESULT_DIR"]
seen = {"cwd": os.getcwd(), "config": cfg, "types": {k: type(v).__name__ for k, v in cfg.items()},
        "HPO_CONFIG": os.environ["HPO_CONFIG"], "RESULT_DIR": result_dir,
        "hpo_config_same": json.load(open(os.environ["HPO_CONFIG"])) == cfg}
json.dump(seen, open(os.path.join(result_dir, "seen.json"), "w"))
records = []
for step in range(100, cfg["how_many_training_steps"] + 1, 100):
    records.append({"steps": step, "accuracy": 1 - 100 / (step + 100), "loss": 100 / step})
    json.dump(records, open(os.path.join(result_dir, "val_dict_list.json"), "w"))
    time.sleep(0.05)
"""

PARTIAL_THEN_EXIT_3 = """
import json, os, sys
records = [{"steps": 100, "accuracy": 0.4}, {"steps": 200, "accuracy": 0.6}]
json.dump(records, open(os.path.join(os.environ["RESULT_DIR"], "val_dict_list.json"), "w"))
sys.exit(3)
"""

NO_RESULTS = "print('trained, but wrote nothing')\n"

GOOD_THEN_GARBAGE = """
import json, os, time
path = os.path.join(os.environ["RESULT_DIR"], "val_dict_list.json")
json.dump([{"steps": 100, "accuracy": 0.55}], open(path, "w"))
time.sleep(1.0)
open(path, "w").write('[{"steps": 100, "accuracy": 0.55}, {"steps": 2')
"""

# Installs its SIGTERM handling, then says it is ready and waits to be stopped.
SIGNAL_TRAINER = """
import json, os, signal, sys, time
mode = sys.argv[1]
def on_term(signum, frame):
    open("marker", "w").write(signal.Signals(signum).name)
    sys.exit(128 + signum)
if mode == "trap":
    signal.signal(signal.SIGTERM, on_term)
elif mode == "ignore":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
path = os.path.join(os.environ["RESULT_DIR"], "val_dict_list.json")
json.dump([{"steps": 100, "accuracy": 0.3}], open(path, "w"))
open("pid", "w").write(str(os.getpid()))
open("ready", "w").close()
time.sleep(60)
"""


def _python38() -> str:
    """A working Python 3.8 if this machine has one (a pyenv shim may exist but not run)."""
    pyenv = os.path.expanduser("~/.pyenv/versions/3.8*/bin/python3.8")
    for candidate in [shutil.which("python3.8"), *sorted(glob.glob(pyenv))]:
        if candidate and _runs_python38(candidate):
            return candidate
    return sys.executable


def _runs_python38(python: str) -> bool:
    check = "import sys; sys.exit(sys.version_info[:2] != (3, 8))"
    done = subprocess.run([python, "-I", "-c", check], capture_output=True, timeout=30)
    return done.returncode == 0


def _env(**changes: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RESULT_DIR", "HPO_CONFIG")}
    env.update(changes)
    return env


class Trial:
    """One launcher run's paths: config in, workdir, summary out."""

    def __init__(self, tmp_path: Path, trainer: str, config: Any = CONFIG) -> None:
        self.root = tmp_path
        self.workdir = tmp_path / "work"
        self.summary_path = tmp_path / "out" / "termination-log"
        self.config_path = tmp_path / "trial-config.json"
        self.config_path.write_text(json.dumps(config) if not isinstance(config, str) else config)
        self.trainer = tmp_path / "trainer.py"
        self.trainer.write_text(textwrap.dedent(trainer))

    def argv(self, *trainer_args: str, launcher_cmd: list[str] | None = None) -> list[str]:
        cmd = launcher_cmd or [sys.executable, "-m", "hpo_operator.launcher"]
        own = ["--config", str(self.config_path), "--summary", str(self.summary_path)]
        own += ["--metric", "accuracy", "--direction", "maximize"]
        own += ["--workdir", str(self.workdir), "--poll-seconds", "0.1"]
        return [*cmd, *own, "--", sys.executable, str(self.trainer), *trainer_args]

    def run(self, *trainer_args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        env = kwargs.pop("env", _env())
        argv = self.argv(*trainer_args, **kwargs)
        return subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)

    def summary(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.summary_path.read_text())
        return data


def test_success(tmp_path: Path) -> None:
    trial = Trial(tmp_path, GOOD_TRAINER)
    done = trial.run()
    assert done.returncode == 0, done.stderr
    summary = trial.summary()
    assert summary["ok"] is True and summary["reason"] is None and summary["exitCode"] == 0
    assert summary["records"] == 7 and summary["step"] == 700
    assert summary["objective"] == pytest.approx(1 - 100 / 800)
    assert [step for step, _ in summary["curve"]] == list(range(100, 701, 100))
    config_json = trial.workdir / "config.json"
    assert json.loads(config_json.read_text()) == CONFIG
    seen = json.loads((trial.workdir / "results" / "seen.json").read_text())
    assert seen["cwd"] == str(trial.workdir)
    assert seen["types"] == {
        "how_many_training_steps": "int",
        "learning_rate": "float",
        "optimizer": "str",
        "aug": "bool",
    }
    assert seen["HPO_CONFIG"] == str(config_json) and seen["hpo_config_same"] is True
    assert seen["RESULT_DIR"] == str(trial.workdir / "results")
    lines = done.stderr.splitlines()
    assert lines and all(line.startswith("hpo-launcher: ") for line in lines)
    assert "trial ok: accuracy = 0.875 at step 700 (7 records)" in done.stderr


@pytest.mark.parametrize("how", ["flag", "env"])
def test_result_dir_from_flag_or_env(tmp_path: Path, how: str) -> None:
    trial = Trial(tmp_path, GOOD_TRAINER, config={"how_many_training_steps": 100})
    result_dir = tmp_path / "pvc" / "exp" / "t0"
    if how == "flag":
        argv = trial.argv()
        argv[argv.index("--") : argv.index("--")] = ["--result-dir", str(result_dir)]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=_env())
    else:
        done = trial.run(env=_env(RESULT_DIR=str(result_dir)))
    assert done.returncode == 0, done.stderr
    assert json.loads((result_dir / "seen.json").read_text())["RESULT_DIR"] == str(result_dir)
    assert trial.summary()["records"] == 1


def test_trainer_exit_code_3_keeps_partial_curve(tmp_path: Path) -> None:
    trial = Trial(tmp_path, PARTIAL_THEN_EXIT_3)
    done = trial.run()
    assert done.returncode == 3
    summary = trial.summary()
    assert summary["ok"] is False and summary["exitCode"] == 3
    assert summary["reason"] == "trainer exited with code 3"
    assert summary["curve"] == [[100, 0.4], [200, 0.6]] and summary["objective"] == 0.6
    assert "trial failed: trainer exited with code 3" in done.stderr


def test_missing_results_file(tmp_path: Path) -> None:
    trial = Trial(tmp_path, NO_RESULTS)
    done = trial.run()
    assert done.returncode == 0
    summary = trial.summary()
    assert summary["ok"] is False and summary["records"] == 0
    assert summary["reason"] == (
        "no results file: the trainer did not write $RESULT_DIR/val_dict_list.json"
    )


def test_invalid_json_at_exit_keeps_what_was_seen(tmp_path: Path) -> None:
    trial = Trial(tmp_path, GOOD_THEN_GARBAGE)
    done = trial.run()
    assert done.returncode == 0
    summary = trial.summary()
    assert summary["ok"] is False
    assert summary["reason"] == (
        "val_dict_list.json is not valid JSON: Expecting ',' delimiter at line 1 column 47"
    )
    assert summary["curve"] == [[100, 0.55]], "the points read while it ran are kept"


def _start_and_wait_ready(trial: Trial, mode: str) -> subprocess.Popen[str]:
    argv = trial.argv(mode)
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, env=_env())
    deadline = time.monotonic() + 60
    while not (trial.workdir / "ready").exists():
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "the trainer never got ready"
        time.sleep(0.05)
    time.sleep(0.3)  # let the launcher poll the first record
    return proc


@pytest.mark.parametrize(
    ("mode", "marker"), [("trap", "SIGTERM"), ("default", None)], ids=["trapped", "default"]
)
def test_sigterm_is_forwarded_and_summary_written(
    tmp_path: Path, mode: str, marker: str | None
) -> None:
    trial = Trial(tmp_path, SIGNAL_TRAINER)
    proc = _start_and_wait_ready(trial, mode)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    marker_path = trial.workdir / "marker"
    assert (marker_path.read_text() if marker_path.exists() else None) == marker
    summary = trial.summary()
    assert summary["ok"] is False and summary["exitCode"] == 143
    assert summary["reason"] == "trainer was killed by signal SIGTERM (exit code 143)"
    assert summary["curve"] == [[100, 0.3]]


def test_sigterm_ignored_by_trainer_leaves_a_provisional_summary(tmp_path: Path) -> None:
    trial = Trial(tmp_path, SIGNAL_TRAINER)
    proc = _start_and_wait_ready(trial, "ignore")
    trainer_pid = int((trial.workdir / "pid").read_text())
    try:
        proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        while not trial.summary_path.exists():
            assert time.monotonic() < deadline, "no provisional summary"
            time.sleep(0.05)
        time.sleep(0.2)
        assert proc.poll() is None, "the launcher waits for the trainer"
        summary = trial.summary()
    finally:
        proc.kill()  # as the kubelet does after the grace period
        os.kill(trainer_pid, signal.SIGKILL)
        proc.communicate(timeout=60)
    assert summary["ok"] is False and summary["exitCode"] == 143
    assert summary["reason"].startswith("stopped by SIGTERM: the trainer had not exited")
    assert summary["curve"] == [[100, 0.3]]


@pytest.mark.parametrize("kind", ["missing", "not-executable"])
def test_trainer_that_cannot_start_gives_127(tmp_path: Path, kind: str) -> None:
    trial = Trial(tmp_path, NO_RESULTS)
    trainer = tmp_path / "bin" / "train"
    if kind == "not-executable":
        trainer.parent.mkdir()
        trainer.write_text("#!/bin/sh\nexit 0\n")
        trainer.chmod(0o644)
    argv = trial.argv()
    argv[argv.index("--") + 1 :] = [str(trainer), "--epochs=3"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=_env())
    assert done.returncode == 127
    summary = trial.summary()
    assert summary["ok"] is False and summary["exitCode"] == 127
    error = "No such file or directory" if kind == "missing" else "Permission denied"
    assert summary["reason"] == f"cannot start the trainer {str(trainer)!r}: {error}"


@pytest.mark.parametrize(
    ("config", "reason"),
    [
        ('{"steps": 1,', "is not valid JSON: Expecting property name enclosed in double quotes"),
        (
            "[1, 2]",
            "must be a JSON object mapping each hyperparameter to its value, but it is a list",
        ),
        (None, "cannot read the trial config"),
    ],
)
def test_bad_config_fails_before_the_trainer_runs(
    tmp_path: Path, config: str | None, reason: str
) -> None:
    trial = Trial(tmp_path, GOOD_TRAINER, config=config or "{}")
    if config is None:
        trial.config_path.unlink()
    done = trial.run()
    assert done.returncode == 2
    summary = trial.summary()
    assert summary["ok"] is False and summary["exitCode"] == 2
    assert reason in summary["reason"] and str(trial.config_path) in summary["reason"]
    assert not (trial.workdir / "results" / "seen.json").exists()


@pytest.mark.parametrize(
    ("drop", "reason"),
    [
        ("--metric", "missing --metric"),
        ("--", "no trainer command: give it after --"),
        ("--direction", "missing --direction"),
    ],
)
def test_usage_errors_still_write_a_summary(tmp_path: Path, drop: str, reason: str) -> None:
    trial = Trial(tmp_path, GOOD_TRAINER)
    argv = trial.argv()
    cut = argv.index(drop)
    argv = argv[:cut] if drop == "--" else argv[:cut] + argv[cut + 2 :]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=_env())
    assert done.returncode == 2
    assert reason in done.stderr
    assert reason in trial.summary()["reason"]


def test_summary_is_written_in_place(tmp_path: Path) -> None:
    trial = Trial(tmp_path, PARTIAL_THEN_EXIT_3)
    trial.summary_path.parent.mkdir()
    trial.summary_path.write_text("x" * 10_000)  # the kubelet's mounted file: keep its inode
    inode = trial.summary_path.stat().st_ino
    trial.run()
    assert trial.summary_path.stat().st_ino == inode
    assert trial.summary()["exitCode"] == 3


# --- the single file -------------------------------------------------------------------------


def test_single_file_runs_alone_on_a_bare_python(tmp_path: Path) -> None:
    built = tmp_path / "build" / "launcher.pyz"
    launcher.build_single_file(str(built))
    assert built.read_bytes().startswith(b"#!/usr/bin/env python3\n")
    assert os.access(built, os.X_OK)
    with zipfile.ZipFile(built) as bundle:
        assert sorted(bundle.namelist()) == sorted([*launcher.BUNDLED, "__main__.py"])
    alone = tmp_path / "hpo" / "launcher.pyz"
    alone.parent.mkdir()
    shutil.copy2(built, alone)
    python = _python38()
    (tmp_path / "trial").mkdir()
    trial = Trial(tmp_path / "trial", GOOD_TRAINER)
    done = trial.run(launcher_cmd=[python, "-I", str(alone)])
    assert done.returncode == 0, done.stderr
    summary = trial.summary()
    assert summary["ok"] is True and summary["records"] == 7 and summary["step"] == 700
    rebuilt = tmp_path / "rebuilt.pyz"
    again = subprocess.run(
        [python, "-I", str(alone), "--write-single-file", str(rebuilt)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 0, again.stderr
    assert rebuilt.read_bytes() == built.read_bytes(), "the bundle rebuilds itself, byte for byte"


def test_launcher_is_stdlib_only_and_python38_syntax() -> None:
    tree = ast.parse(Path(launcher.__file__).read_text(), feature_version=(3, 8))
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    assert imported - set(sys.stdlib_module_names) == {"hpo_operator"}
