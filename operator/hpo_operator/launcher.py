"""The trial launcher: runs the trainer inside a trial and writes the trial summary.

    launcher --config PATH --summary PATH --metric NAME --direction maximize|minimize \\
             [--aggregate best|last] [--step-key steps] [--result-dir DIR] [--workdir DIR] \\
             [--poll-seconds 2.0] -- TRAINER_CMD ARGS...

It puts the trial's `config.json` in the working directory, sets `HPO_CONFIG` and `RESULT_DIR`,
runs the trainer as a child (forwarding SIGTERM and SIGINT), watches
`$RESULT_DIR/val_dict_list.json` while it runs, and when it exits writes the compact summary to
`--summary` (in a pod: /dev/termination-log) and exits with the trainer's exit code.

Standard library only, Python 3.8+: `--write-single-file DEST` bundles it with the results core
into one executable zip that an init container copies into any trainer image.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import pkgutil
import signal
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

from hpo_operator.core import results

# Not __name__: that is "__main__" under `python -m` and in the single file.
log = logging.getLogger("hpo_operator.launcher")

CONFIG_FILE = "config.json"
EXIT_USAGE = 2  # bad arguments or config: the trainer never ran
EXIT_NOT_STARTED = 127  # the trainer command could not be started, as a shell says
FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT)
SHEBANG = b"#!/usr/bin/env python3\n"
BUNDLED = (
    "hpo_operator/__init__.py",
    "hpo_operator/core/__init__.py",
    "hpo_operator/core/results.py",
    "hpo_operator/launcher.py",
)
BUNDLE_MAIN = "import sys\n\nfrom hpo_operator.launcher import main\n\nsys.exit(main())\n"
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed, so the same sources give the same bytes


class LaunchError(Exception):
    """The trial cannot start; `reason` says why, for the user."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Options:
    """The parsed command line."""

    config: Path
    summary: Path
    metric: str
    direction: str
    aggregate: str
    step_key: str
    result_dir: Path
    workdir: Path
    poll_seconds: float
    command: tuple[str, ...]


# --- command line ----------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise LaunchError(message)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="hpo-launcher",
        description="Run a trainer as one HPO trial and write its summary.",
        epilog="Everything after -- is the trainer command.",
    )
    parser.add_argument("--config", help="the trial's JSON object of hyperparameter values")
    parser.add_argument("--summary", help="where to write the summary (/dev/termination-log)")
    parser.add_argument("--metric", help="the record key to optimize, e.g. accuracy")
    parser.add_argument("--direction", choices=results.DIRECTIONS)
    parser.add_argument("--aggregate", choices=results.AGGREGATES, default="best")
    parser.add_argument("--step-key", default="steps", help="the record key of the step")
    parser.add_argument("--result-dir", help="default: $RESULT_DIR, else WORKDIR/results")
    parser.add_argument("--workdir", help="the trainer's working directory (default: cwd)")
    parser.add_argument("--poll-seconds", type=float, default=2.0)
    parser.add_argument("--write-single-file", metavar="DEST", help="only bundle the launcher")
    return parser


def parse_args(argv: list[str]) -> Options | str:
    """Options to run a trial, or the destination of `--write-single-file`."""
    own, command = _split_command(argv)
    ns = _parser().parse_args(own)
    if ns.write_single_file:
        return str(ns.write_single_file)
    missing = [f"--{name}" for name in ("config", "summary", "metric", "direction")]
    missing = [flag for flag in missing if getattr(ns, flag[2:]) is None]
    if missing:
        raise LaunchError(f"missing {', '.join(missing)}")
    if not command:
        raise LaunchError("no trainer command: give it after --, e.g. -- python train.py")
    if not ns.poll_seconds > 0:
        raise LaunchError(f"--poll-seconds must be > 0, got {ns.poll_seconds}")
    return _options(ns, command)


def _split_command(argv: list[str]) -> tuple[list[str], list[str]]:
    if "--" not in argv:
        return list(argv), []
    cut = argv.index("--")
    return list(argv[:cut]), list(argv[cut + 1 :])


def _options(ns: argparse.Namespace, command: list[str]) -> Options:
    workdir = Path(os.path.abspath(ns.workdir or os.getcwd()))
    result_dir = ns.result_dir or os.environ.get("RESULT_DIR") or str(workdir / "results")
    return Options(
        config=Path(ns.config),
        summary=Path(ns.summary),
        metric=ns.metric,
        direction=ns.direction,
        aggregate=ns.aggregate,
        step_key=ns.step_key,
        result_dir=Path(os.path.abspath(result_dir)),
        workdir=workdir,
        poll_seconds=ns.poll_seconds,
        command=tuple(command),
    )


def main(argv: list[str] | None = None) -> int:
    """The launcher's command line; returns the exit code."""
    _setup_logging()
    argv = sys.argv[1:] if argv is None else argv
    try:
        opts = parse_args(argv)
    except LaunchError as exc:
        return _usage_failure(argv, exc.reason)
    if isinstance(opts, str):
        build_single_file(opts)
        log.info("wrote %s", opts)
        return 0
    try:
        return run(opts)
    except Exception as exc:  # the summary is the trial's only report: always write one
        log.exception("launcher error")
        return _fail(opts.summary, opts.metric, f"launcher error: {exc}", 1)


def _setup_logging() -> None:
    if log.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("hpo-launcher: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


def _usage_failure(argv: list[str], message: str) -> int:
    """Bad arguments: say so, and still write a failed summary if --summary was given."""
    log.error("%s (see --help)", message)
    own, _ = _split_command(argv)
    summary = _flag_value(own, "--summary")
    if summary:
        _fail(Path(summary), _flag_value(own, "--metric") or "", message, EXIT_USAGE)
    return EXIT_USAGE


def _flag_value(args: list[str], flag: str) -> str | None:
    for i, arg in enumerate(args):
        if arg.startswith(flag + "="):
            return arg[len(flag) + 1 :]
        if arg == flag and i + 1 < len(args):
            return args[i + 1]
    return None


# --- one trial -------------------------------------------------------------------------------


def run(opts: Options) -> int:
    """Run the trainer as one trial; write its summary; return the trainer's exit code."""
    try:
        config_path = _prepare(opts)
    except LaunchError as exc:
        log.error("%s", exc.reason)
        return _fail(opts.summary, opts.metric, exc.reason, EXIT_USAGE)
    env = dict(os.environ, HPO_CONFIG=str(config_path), RESULT_DIR=str(opts.result_dir))
    with _Forwarder() as forwarder:
        try:
            proc = subprocess.Popen(opts.command, cwd=str(opts.workdir), env=env)
        except OSError as exc:
            reason = f"cannot start the trainer {opts.command[0]!r}: {exc.strerror or exc}"
            log.error("%s", reason)
            return _fail(opts.summary, opts.metric, reason, EXIT_NOT_STARTED)
        log.info("started trainer (pid %d): %s", proc.pid, " ".join(opts.command))
        forwarder.attach(proc)
        last_good = _watch(proc, opts, forwarder)
        code = results.normalize_exit_code(proc.returncode)
        _finish(opts, code, last_good)
    return code


def _prepare(opts: Options) -> Path:
    """Install config.json in the workdir and create RESULT_DIR; returns config.json's path."""
    config = _read_config(opts.config)
    try:
        opts.workdir.mkdir(parents=True, exist_ok=True)
        opts.result_dir.mkdir(parents=True, exist_ok=True)
        target = opts.workdir / CONFIG_FILE
        target.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", "utf-8")
    except OSError as exc:
        raise LaunchError(f"cannot prepare the trial: {exc}") from None
    return target


def _read_config(path: Path) -> dict[str, Any]:
    where = f"trial config {path}"
    try:
        data = json.loads(path.read_bytes().decode("utf-8-sig"))
    except OSError as exc:
        raise LaunchError(f"cannot read the {where}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise LaunchError(f"{where} is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        at = f"line {exc.lineno} column {exc.colno}"
        raise LaunchError(f"{where} is not valid JSON: {exc.msg} at {at}") from None
    except RecursionError:
        raise LaunchError(f"{where} is not valid JSON: nested too deeply") from None
    if not isinstance(data, dict):
        raise LaunchError(
            f"{where} must be a JSON object mapping each hyperparameter to its value, "
            f"but it is {results.json_kind(data)}"
        )
    return data


def _watch(
    proc: subprocess.Popen[bytes], opts: Options, forwarder: _Forwarder
) -> list[tuple[float, float]] | None:
    """Poll val_dict_list.json until the trainer exits; returns the last good points."""
    last_good: list[tuple[float, float]] | None = None
    provisional = False
    while not _exited(proc, opts.poll_seconds):
        text = _read_results(opts.result_dir)
        points = results.read_progress(text, opts.metric, opts.step_key)
        if points is not None:
            if last_good is None or len(points) != len(last_good):
                _log_progress(opts.metric, points)
            last_good = points
        if forwarder.received is not None and not provisional:
            provisional = True
            _write_provisional(opts, forwarder.received, last_good)
    return last_good


def _exited(proc: subprocess.Popen[bytes], timeout: float) -> bool:
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return False
    return True


def _read_results(result_dir: Path) -> str | None:
    path = result_dir / results.RESULTS_FILE
    try:
        return path.read_bytes().decode("utf-8-sig", errors="replace")
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("cannot read %s: %s", path, exc)
        return None


def _log_progress(metric: str, points: list[tuple[float, float]]) -> None:
    step, value = points[-1]
    log.info("%d records; %s = %g at step %g", len(points), metric, value, step)


def _write_provisional(
    opts: Options, signum: int, last_good: list[tuple[float, float]] | None
) -> None:
    """On SIGTERM/SIGINT, a summary in case the trainer never exits before SIGKILL."""
    name = signal.Signals(signum).name
    reason = f"stopped by {name}: the trainer had not exited when the summary was written"
    summary = _summary(opts, last_good or [], 128 + signum, reason)
    _write_summary(opts.summary, summary)


def _finish(opts: Options, code: int, last_good: list[tuple[float, float]] | None) -> None:
    summary = results.summarize_file(
        _read_results(opts.result_dir),
        metric=opts.metric,
        direction=opts.direction,
        aggregate=opts.aggregate,
        step_key=opts.step_key,
        exit_code=code,
        last_good=last_good,
    )
    _write_summary(opts.summary, summary)
    if summary["ok"]:
        log.info(
            "trial ok: %s = %g at step %g (%d records)",
            opts.metric,
            summary["objective"],
            summary["step"],
            summary["records"],
        )
    else:
        log.error("trial failed: %s", summary["reason"])


def _summary(
    opts: Options, points: list[tuple[float, float]], code: int, reason: str
) -> dict[str, Any]:
    return results.summarize(
        points,
        metric=opts.metric,
        direction=opts.direction,
        aggregate=opts.aggregate,
        exit_code=code,
        reason=reason,
    )


def _fail(summary_path: Path, metric: str, reason: str, code: int) -> int:
    """Write a summary for a trial whose trainer never ran; returns `code`."""
    summary = results.summarize(
        [], metric=metric, direction="maximize", exit_code=code, reason=reason
    )
    _write_summary(summary_path, summary)
    return code


def _write_summary(path: Path, summary: dict[str, Any]) -> None:
    """Write in place (no rename): /dev/termination-log is a file mounted into the pod."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8") as out:
            out.write(results.summary_json(summary))
    except OSError as exc:
        log.error("cannot write the summary to %s: %s", path, exc)


class _Forwarder:
    """Forwards SIGTERM and SIGINT to the trainer; remembers the first signal received."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _Forwarder:
        for signum in FORWARDED_SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self._previous.items():
            if handler is not None:  # None: not installed from Python; leave ours
                signal.signal(signum, handler)

    def attach(self, proc: subprocess.Popen[bytes]) -> None:
        """Forward to `proc` from now on, and any signal that came before it started."""
        self.proc = proc
        if self.received is not None:
            proc.send_signal(self.received)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is None:
            self.received = signum
        if self.proc is not None:
            self.proc.send_signal(signum)  # a no-op once the trainer has been reaped


# --- the single file -------------------------------------------------------------------------


def build_single_file(dest: str) -> None:
    """Write the launcher and the results core as one executable zip (`python3 DEST ...`)."""
    target = Path(dest)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    with open(partial, "wb") as out:
        out.write(SHEBANG)
        with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as bundle:
            for name in BUNDLED:
                _add_to_zip(bundle, name, _package_source(name))
            _add_to_zip(bundle, "__main__.py", BUNDLE_MAIN.encode("utf-8"))
    os.chmod(partial, 0o755)
    os.replace(partial, target)


def _package_source(name: str) -> bytes:
    """A bundled file's source; works from a checkout, an install and the single file alone."""
    package, _, resource = name.partition("/")
    data = pkgutil.get_data(package, resource)
    if data is None:
        raise LaunchError(f"cannot read {name} to bundle it")
    return data


def _add_to_zip(bundle: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
    info.external_attr = 0o644 << 16
    bundle.writestr(info, data)


if __name__ == "__main__":
    sys.exit(main())
