"""What the shared feature cache saves: the digits grid (examples/digits-steps.yaml) with one
feature cache shared by all trials vs. features recomputed in every trial.

Runs each trial of the grid as the trainer runs in a trial (a fresh `python -m
hpo_trainer.retrain` process with its own config.json), one after another, and prints wall time
and CPU time per trial and for the whole grid. Prints figures; asserts nothing.

    python bench/trainer_bench.py --fixtures out/fixtures [--steps 100,500,1000] [--image-size 32]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GRID = list(range(100, 2001, 100))


def run_trial(
    work: Path, fixtures: Path, cache: Path, steps: int, size: int
) -> tuple[float, float]:
    """One trial in a fresh process; returns (wall seconds, CPU seconds of the process)."""
    work.mkdir(parents=True)
    (work / "config.json").write_text(json.dumps({"how_many_training_steps": steps}))
    args = [
        f"--image_dir={fixtures / 'digits'}",
        f"--tfhub_module={fixtures / 'module'}",
        f"--image_size={size}",
        f"--bottleneck_dir={cache}",
        "--learning_rate=0.01",
        "--eval_step_interval=100",
        "--seed=1",
    ]
    env = {**os.environ, "RESULT_DIR": str(work / "results")}
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "hpo_trainer.retrain", *args],
        cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"trial with {steps} steps failed: {proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
    return wall, usage.ru_utime + usage.ru_stime


def run_grid(
    root: Path, fixtures: Path, steps: list[int], size: int, shared: bool
) -> list[tuple[float, float]]:
    figures = []
    for n in steps:
        cache = root / "shared-cache" if shared else root / f"cache-{n}"
        figures.append(run_trial(root / f"trial-{n}", fixtures, cache, n, size))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--fixtures", required=True, help="output of python -m hpo_trainer.fixtures"
    )
    parser.add_argument(
        "--steps",
        default=",".join(map(str, GRID)),
        help="grid of training steps (default: 100..2000 by 100)",
    )
    parser.add_argument(
        "--image-size", type=int, default=32, help="module input size (default: %(default)s)"
    )
    args = parser.parse_args()
    fixtures = Path(args.fixtures).resolve()
    steps = [int(s) for s in args.steps.split(",")]
    size = args.image_size
    print(
        f"digits grid: {len(steps)} trials ({steps[0]}..{steps[-1]} steps), 1797 images at "
        f"{size}x{size}, trials run one after another"
    )
    header = ("feature cache", "wall/trial", "cpu/trial", "first trial", "grid wall", "grid cpu")
    print("{:<24}{:>12}{:>12}{:>13}{:>11}{:>10}".format(*header))
    results = {}
    for label, shared in (("shared by all trials", True), ("recomputed per trial", False)):
        with tempfile.TemporaryDirectory() as tmp:
            figures = run_grid(Path(tmp), fixtures, steps, size, shared)
        wall = sum(w for w, _ in figures)
        cpu = sum(c for _, c in figures)
        results[label] = (wall, cpu)
        cells = (wall / len(figures), cpu / len(figures), figures[0][0], wall, cpu)
        print("{:<24}{:>11.2f}s{:>11.2f}s{:>12.2f}s{:>10.1f}s{:>9.1f}s".format(label, *cells))
    (sw, sc), (rw, rc) = results.values()
    print(
        f"shared cache saves {rw - sw:.1f} s wall ({(rw - sw) / rw:.0%}) and "
        f"{rc - sc:.1f} s CPU ({(rc - sc) / rc:.0%}) over the grid"
    )


if __name__ == "__main__":
    main()
