"""The on-disk layout of a local run; every file is written atomically.

DIR/experiment.yaml              the manifest the run was started with
DIR/status.yaml                  the status document (as the operator writes it)
DIR/trials/<name>/trial.json     index, parameters, sampler notes, stop marks
DIR/trials/<name>/parameters.json  the trial's values; the launcher copies it to config.json
DIR/trials/<name>/config.json    what the trainer reads (its working directory is here)
DIR/trials/<name>/summary.json   the launcher's summary, once the trainer has exited
DIR/trials/<name>/trainer.log    the trainer's stdout and stderr
DIR/trials/<name>/results/       RESULT_DIR: val_dict_list.json and whatever else it writes
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from ..core.results import ResultsError, parse_summary
from ..core.trial import FAILED, PENDING, STOPPED, SUCCEEDED, Trial

INTERRUPTED_REASON = "interrupted by the user; `hpo run --resume` runs it again"


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text())


class Store:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.trials_dir = root / "trials"

    @property
    def manifest_path(self) -> Path:
        return self.root / "experiment.yaml"

    @property
    def status_path(self) -> Path:
        return self.root / "status.yaml"

    def holds_experiment(self) -> bool:
        return self.manifest_path.exists() or self.trials_dir.exists()

    def save_manifest(self, manifest: Mapping[str, Any]) -> None:
        write_atomic(self.manifest_path, yaml.safe_dump(dict(manifest), sort_keys=False))

    def load_manifest(self) -> Any:
        return yaml.safe_load(self.manifest_path.read_text())

    def save_status(self, status: Mapping[str, Any]) -> None:
        write_atomic(self.status_path, yaml.safe_dump(dict(status), sort_keys=False))

    def load_status(self) -> Any:
        return yaml.safe_load(self.status_path.read_text())

    def trial_dir(self, name: str) -> Path:
        return self.trials_dir / name

    def create(self, trial: Trial) -> None:
        """Record a new trial before it starts, so a restart knows its parameters."""
        d = self.trial_dir(trial.name)
        record = {
            "index": trial.index,
            "name": trial.name,
            "parameters": dict(trial.parameters),
            "samplerAttrs": dict(trial.sampler_attrs),
        }
        write_atomic(d / "parameters.json", json.dumps(dict(trial.parameters), indent=1))
        write_atomic(d / "trial.json", json.dumps(record, indent=1))

    def mark(self, name: str, **fields: Any) -> None:
        """Add marks such as stopped=REASON or interrupted=True to a trial's record."""
        path = self.trial_dir(name) / "trial.json"
        record = _read_json(path)
        record.update(fields)
        write_atomic(path, json.dumps(record, indent=1))

    def forget_outcome(self, name: str) -> None:
        """Drop an interrupted trial's summary and partial curve so that a resumed run starts
        it again and cannot mistake the old curve for the new run's."""
        (self.trial_dir(name) / "summary.json").unlink(missing_ok=True)
        (self.trial_dir(name) / "results" / "val_dict_list.json").unlink(missing_ok=True)

    def clear_interrupted(self) -> list[str]:
        names = []
        for trial in self.load_trials():
            if trial.reason == INTERRUPTED_REASON:
                self.forget_outcome(trial.name)
                self.mark(trial.name, interrupted=False)
                names.append(trial.name)
        return names

    def load_trials(self) -> list[Trial]:
        if not self.trials_dir.exists():
            return []
        trials = [self.load_trial(d) for d in self.trials_dir.iterdir() if d.is_dir()]
        return sorted(trials, key=lambda t: t.index)

    def load_trial(self, d: Path) -> Trial:
        record = _read_json(d / "trial.json")
        trial = Trial(
            index=int(record["index"]),
            name=str(record["name"]),
            parameters=record["parameters"],
            sampler_attrs=record.get("samplerAttrs", {}),
        )
        return _with_outcome(trial, record, d / "summary.json")


def _with_outcome(trial: Trial, record: Mapping[str, Any], summary_path: Path) -> Trial:
    if record.get("interrupted"):
        return replace(trial, phase=STOPPED, reason=INTERRUPTED_REASON)
    stopped = record.get("stopped")
    if record.get("failed") and not summary_path.exists():
        return replace(trial, phase=FAILED, reason=str(record["failed"]))
    if not summary_path.exists():
        return replace(trial, phase=STOPPED if stopped else PENDING, reason=stopped)
    try:
        summary = parse_summary(summary_path.read_text())
    except ResultsError as exc:
        return replace(trial, phase=FAILED, reason=f"{summary_path}: {exc.reason}")
    phase = STOPPED if stopped else SUCCEEDED if summary.ok else FAILED
    return replace(
        trial,
        phase=phase,
        objective=summary.objective,
        step=summary.step,
        curve=summary.curve,
        reason=stopped or summary.reason,
    )
