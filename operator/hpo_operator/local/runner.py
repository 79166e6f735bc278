"""Run an experiment's trials as local processes, each through the launcher.

The loop is the operator's reconcile with processes instead of Jobs: load trials from the
folder, ask `core.plan.decide` what to do, start or stop processes, write the status document.
Everything it needs to continue lives in the folder, so `--resume` picks up where it was.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Protocol

from ..core import search
from ..core.plan import TERMINAL_PHASES, Decision, decide
from ..core.spec import ExperimentSpec
from ..core.status import build_status
from ..core.trial import PENDING, RUNNING, Trial
from .store import Store

POLL_SECONDS = 0.1
STOP_GRACE_SECONDS = 10.0
_VAR_RE = re.compile(r"\$\$|\$\(([^)]*)\)")


class Reporter(Protocol):
    def trial_started(self, trial: Trial) -> None: ...
    def trial_finished(self, trial: Trial) -> None: ...
    def status_changed(self, status: Mapping[str, Any]) -> None: ...


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion in command and args: `$$` is a literal `$`,
    a reference to an undefined variable stays as written."""

    def sub(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return _VAR_RE.sub(sub, text)


def container_env(container: Mapping[str, Any], base: Mapping[str, str]) -> dict[str, str]:
    """The process environment: ours, then the container's `env` entries with a `value`."""
    env = dict(base)
    for item in container.get("env") or []:
        if "value" in item:
            env[str(item["name"])] = expand(str(item["value"]), env)
    return env


@dataclass
class _Running:
    trial: Trial
    process: subprocess.Popen[bytes]
    log: IO[bytes]
    stop_reason: str | None = None


class LocalRunner:
    def __init__(
        self, spec: ExperimentSpec, manifest_dir: Path, store: Store, reporter: Reporter
    ) -> None:
        self.spec = spec
        self.manifest_dir = manifest_dir
        self.store = store
        self.reporter = reporter
        self.running: dict[str, _Running] = {}
        self.status: dict[str, Any] = {}

    def run(self) -> str:
        """Run until a stop rule holds; returns the final phase. Ctrl-C stops cleanly."""
        previous = signal.signal(signal.SIGTERM, _raise_interrupt)
        try:
            return self._loop()
        except KeyboardInterrupt:
            self._stop_all(interrupted=True)
            self._write_status(interrupted=True)
            return str(self.status["phase"])
        finally:
            signal.signal(signal.SIGTERM, previous)

    def _loop(self) -> str:
        while True:
            self._reap()
            trials = self._trials()
            decision = decide(self.spec, trials, search.exhausted(self.spec, trials))
            for name in decision.stop:
                self._stop(name, f"stopped: {decision.message}")
            self._start_pending(trials, decision)
            self._write_status()
            if self.status["phase"] in TERMINAL_PHASES and not self.running:
                return str(self.status["phase"])
            time.sleep(POLL_SECONDS)

    def _trials(self) -> list[Trial]:
        trials = self.store.load_trials()
        return [
            replace(t, phase=RUNNING) if t.name in self.running and t.phase == PENDING else t
            for t in trials
        ]

    def _start_pending(self, trials: Sequence[Trial], decision: Decision) -> None:
        if decision.stop or decision.phase in TERMINAL_PHASES:
            return
        slots = self.spec.parallelism - len(self.running)
        waiting = [t for t in trials if t.phase == PENDING and t.name not in self.running]
        for trial in waiting[:slots]:
            self._start(trial)
        slots -= min(slots, len(waiting))
        if decision.create and slots > 0:
            history = self._trials()
            for trial in search.suggest(self.spec, history, min(slots, decision.create)).trials:
                self.store.create(trial)
                self._start(trial)

    def _start(self, trial: Trial) -> None:
        d = self.store.trial_dir(trial.name).resolve()  # the launcher runs inside it
        container = self.spec.container
        env = container_env(container, {**os.environ, "HPO_MANIFEST_DIR": str(self.manifest_dir)})
        workdir = d
        if container.get("workingDir"):
            workdir = self.manifest_dir / str(container["workingDir"])
        trainer = [expand(a, env) for a in [*container["command"], *container.get("args", [])]]
        objective = self.spec.objective
        command = [
            sys.executable, "-m", "hpo_operator.launcher",
            "--config", str(d / "parameters.json"),
            "--summary", str(d / "summary.json"),
            "--metric", objective.metric,
            "--direction", objective.direction,
            "--aggregate", objective.aggregate,
            "--step-key", objective.step_key,
            "--result-dir", str(d / "results"),
            "--workdir", str(workdir),
            "--", *trainer,
        ]  # fmt: skip
        log = (d / "trainer.log").open("ab")
        process = subprocess.Popen(
            command, cwd=d, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.running[trial.name] = _Running(replace(trial, phase=RUNNING), process, log)
        self.reporter.trial_started(trial)

    def _reap(self) -> None:
        for name, run in list(self.running.items()):
            if run.process.poll() is None:
                continue
            run.log.close()
            del self.running[name]
            if run.stop_reason is not None:
                self.store.mark(name, stopped=run.stop_reason)
            elif not (self.store.trial_dir(name) / "summary.json").exists():
                code = run.process.returncode
                log = self.store.trial_dir(name) / "trainer.log"
                self.store.mark(
                    name, failed=f"launcher exited with code {code} and no summary; see {log}"
                )
            self.reporter.trial_finished(self.store.load_trial(self.store.trial_dir(name)))

    def _stop(self, name: str, reason: str) -> None:
        run = self.running.get(name)
        if run is not None and run.stop_reason is None and run.process.poll() is None:
            run.stop_reason = reason
            run.process.send_signal(signal.SIGTERM)

    def _stop_all(self, interrupted: bool) -> None:
        for name in list(self.running):
            self._stop(name, "interrupted")
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for run in self.running.values():
            try:
                run.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                run.process.kill()
                run.process.wait()
        for name, run in list(self.running.items()):
            run.log.close()
            if run.stop_reason is not None and interrupted:
                self.store.forget_outcome(name)
                self.store.mark(name, interrupted=True)
        self.running.clear()

    def _write_status(self, interrupted: bool = False) -> None:
        trials = self._trials()
        decision = decide(
            self.spec, trials, search.exhausted(self.spec, trials), interrupted=interrupted
        )
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        status = build_status(self.spec, trials, decision, now=now, previous=self.status)
        if _without_times(status) != _without_times(self.status):
            self.store.save_status(status)
            self.status = status
            self.reporter.status_changed(status)


def _without_times(status: Mapping[str, Any]) -> Any:
    conditions = [
        {k: v for k, v in c.items() if k != "lastTransitionTime"}
        for c in status.get("conditions", [])
    ]
    return {**status, "conditions": conditions}


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
