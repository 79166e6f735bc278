"""The `hpo` command: run an HPOExperiment on this machine, show and plot its results.

Exit status: 0 the experiment succeeded; 1 it failed (too many failed trials, or none
succeeded); 2 bad manifest, bad folder or bad usage; 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
import yaml
from rich.console import Console

from .core.results import read_progress
from .core.spec import ExperimentSpec, SpecError, parse_experiment
from .core.trial import STOPPED, SUCCEEDED, Trial
from .local.runner import LocalRunner
from .local.store import Store
from .report import LiveReporter, best_line, results_table

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
DEFAULT_OUT = "hpo-runs/<metadata.name>"


class UsageError(Exception):
    """Bad input from the user: printed without a traceback, exit status 2."""


def load_manifest(path: Path) -> Any:
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except yaml.YAMLError as exc:
        raise UsageError(f"{path}: not valid YAML: {exc}") from None
    if len(docs) != 1:
        raise UsageError(f"{path}: expected one HPOExperiment document, found {len(docs)}")
    return docs[0]


def parse_file(path: Path, manifest: Any) -> ExperimentSpec:
    try:
        return parse_experiment(manifest)
    except SpecError as exc:
        lines = "\n".join(f"  {p}: {m}" for p, m in exc.errors)
        raise UsageError(f"{path}: {len(exc.errors)} error(s) in the manifest:\n{lines}") from None


def _same_space(old: ExperimentSpec, new: ExperimentSpec) -> list[str]:
    changed = [
        f"spec.{f}" for f in ("parameters", "algorithm") if getattr(old, f) != getattr(new, f)
    ]
    # The target may move; metric, direction and aggregation may not.
    if dataclasses.replace(old.objective, target=None) != dataclasses.replace(
        new.objective, target=None
    ):
        changed.append("spec.objective")
    return changed


def _console() -> Console:
    return Console(width=None if sys.stdout.isatty() else 160, highlight=False)


def cmd_run(args: argparse.Namespace) -> int:
    path = Path(args.file)
    manifest = load_manifest(path)
    spec = parse_file(path, manifest)
    if args.parallelism is not None:
        if args.parallelism < 1:
            raise UsageError(f"--parallelism must be >= 1, got {args.parallelism}")
        spec = dataclasses.replace(spec, parallelism=args.parallelism)
    if spec.container.get("workingDir") and spec.parallelism > 1:
        raise UsageError(
            f"{path}: spec.trialTemplate.spec.containers[0].workingDir: trials running in "
            "parallel here would share config.json in that folder; drop workingDir (each trial "
            "then runs in its own folder) or run with --parallelism 1"
        )
    store = Store(Path(args.out) if args.out else Path("hpo-runs") / spec.name)
    _prepare(store, path, manifest, spec, args.resume)
    console = _console()
    console.print(f"Running {spec.name}: results in {store.root}/", highlight=False)
    with LiveReporter(console, spec) as reporter:
        phase = LocalRunner(spec, path.resolve().parent, store, reporter).run()
    trials = store.load_trials()
    console.print(results_table(spec, trials))
    console.print(best_line(spec, trials), highlight=False)
    status = store.load_status()
    console.print(f"{phase}: {status.get('message')}  (status: {store.status_path})")
    if phase == STOPPED:
        console.print(f"Continue with: hpo run {path} --out {store.root} --resume")
        return EXIT_INTERRUPTED
    return EXIT_OK if phase == SUCCEEDED else EXIT_FAILED


def _prepare(store: Store, path: Path, manifest: Any, spec: ExperimentSpec, resume: bool) -> None:
    if not resume:
        if store.holds_experiment():
            raise UsageError(
                f"{store.root} already holds an experiment; add --resume to continue it, "
                "or choose another --out"
            )
        store.save_manifest(manifest)
        return
    if not store.manifest_path.exists():
        raise UsageError(f"--resume: {store.manifest_path} not found; nothing to resume")
    old = parse_file(store.manifest_path, store.load_manifest())
    changed = _same_space(old, spec)
    if old.name != spec.name:
        changed.insert(0, "metadata.name")
    if changed:
        raise UsageError(
            f"--resume: {path} differs from the experiment in {store.root} in "
            f"{', '.join(changed)}; a started experiment keeps its name, parameter space, "
            "algorithm and objective (maxTrials, parallelism, maxFailedTrials and target "
            "may change)"
        )
    store.clear_interrupted()
    store.save_manifest(manifest)


def _open_folder(folder: str) -> tuple[Store, ExperimentSpec, list[Trial]]:
    store = Store(Path(folder))
    if not store.manifest_path.exists():
        raise UsageError(f"{folder}: not a folder written by `hpo run` (no experiment.yaml)")
    spec = parse_file(store.manifest_path, store.load_manifest())
    return store, spec, store.load_trials()


def cmd_show(args: argparse.Namespace) -> int:
    store, spec, trials = _open_folder(args.dir)
    console = _console()
    console.print(results_table(spec, trials))
    console.print(best_line(spec, trials), highlight=False)
    if store.status_path.exists():
        status = store.load_status()
        console.print(f"{status.get('phase')}: {status.get('message')}", highlight=False)
    return EXIT_OK


def cmd_plot(args: argparse.Namespace) -> int:
    from .plot import plot_experiment  # matplotlib is slow to import; only `plot` needs it

    store, spec, trials = _open_folder(args.dir)

    def full_curve(trial: Trial) -> list[tuple[float, float]] | None:
        path = store.trial_dir(trial.name) / "results" / "val_dict_list.json"
        if not path.exists():
            return None
        return read_progress(path.read_text(), spec.objective.metric, spec.objective.step_key)

    out = Path(args.output)
    plot_experiment(spec, trials, out, full_curve)
    print(f"wrote {out}")
    return EXIT_OK


def cmd_validate(args: argparse.Namespace) -> int:
    for name in args.files:
        spec = parse_file(Path(name), load_manifest(Path(name)))
        print(f"{name}: valid ({spec.algorithm.name}, {len(spec.parameters)} parameters)")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hpo",
        description="Run an HPOExperiment manifest on this machine and inspect its results.",
        epilog=__doc__.split("\n\n", 1)[1] if __doc__ else None,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the experiment's trials as local processes")
    run.add_argument("file", help="the HPOExperiment manifest (YAML)")
    run.add_argument("--out", help=f"results folder (default: {DEFAULT_OUT})")
    run.add_argument(
        "--parallelism", type=int, help="trials at once (default: the manifest's parallelism)"
    )
    run.add_argument(
        "--resume",
        action="store_true",
        help="continue the experiment in --out: finished trials are kept, interrupted ones rerun",
    )
    run.set_defaults(func=cmd_run)
    show = sub.add_parser("show", help="print the results table of a run folder")
    show.add_argument("dir", help="a folder written by `hpo run`")
    show.set_defaults(func=cmd_show)
    plot = sub.add_parser("plot", help="plot objective vs parameters and the learning curves")
    plot.add_argument("dir", help="a folder written by `hpo run`")
    plot.add_argument(
        "-o", "--output", default="results.png", help="PNG file (default: %(default)s)"
    )
    plot.set_defaults(func=cmd_plot)
    validate = sub.add_parser("validate", help="check manifests without running anything")
    validate.add_argument("files", nargs="+", help="HPOExperiment manifests (YAML)")
    validate.set_defaults(func=cmd_validate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        code: int = args.func(args)
    except UsageError as exc:
        print(f"hpo: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return code


if __name__ == "__main__":
    sys.exit(main())
