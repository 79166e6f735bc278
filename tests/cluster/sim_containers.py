"""From a container spec to a local process: environment, `$(VAR)` expansion, host paths.

**The path rule.** Containers run as processes on the host filesystem, so the paths a container
is told about are translated to the host folders behind its mounts. In `command`, `args`, `env`
values and `workingDir`, every occurrence of a volumeMount's `mountPath` used as a path (at the
start of the string or after a character that cannot be part of a path, such as a space, quote,
`=`, `:` or `,`; and followed by `/`, the end, or such a character) is replaced by the host
folder backing that mount; the longest mountPath wins. The container's
`terminationMessagePath` (default `/dev/termination-log`) is translated the same way to a
per-container file, `<pod dir>/<container>.termination-log`. So
`python3 -c "open('/dev/termination-log','w').write('ok')"` and `--out=/data/run` (with a
volume at `/data`) work unchanged; a path built at run time from pieces (`'/da' + 'ta'`) is
not translated. Paths outside every mount are left alone and refer to the host.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cluster.sim_kube import Obj, Rest, not_found
from cluster.sim_volumes import PodVolumes, VolumeError, field_value, object_data
from hpo_operator.local.runner import expand  # Kubernetes' $(VAR) rules, one implementation

TERMINATION_LOG = "/dev/termination-log"
MESSAGE_BYTES = 4096
FALLBACK_LINES = 80
PASSED_THROUGH = ("HOME", "LANG", "LC_ALL", "TMPDIR", "TZ")
_PATH_CHAR = r"[\w.~+@%-]"


class ContainerConfigError(Exception):
    """A referenced ConfigMap/Secret key is missing: the kubelet's CreateContainerConfigError."""


class PathRewriter:
    """Container paths -> host paths, by the rule in this module's docstring."""

    def __init__(self, mounts: list[tuple[str, Path]]) -> None:
        self.mounts = {container: str(host) for container, host in mounts}
        ordered = sorted(self.mounts, key=len, reverse=True)
        if ordered:
            alternatives = "|".join(re.escape(p) for p in ordered)
            pattern = rf"(?<!{_PATH_CHAR})(?<!/)({alternatives})(?=/|$|(?!{_PATH_CHAR}))"
            self._pattern: re.Pattern[str] | None = re.compile(pattern)
        else:
            self._pattern = None

    def __call__(self, text: str) -> str:
        if self._pattern is None:
            return text
        return self._pattern.sub(lambda m: self.mounts[m.group(1)], text)


def _lookup(rest: Rest, namespace: str, plural: str, ref: Obj) -> dict[str, bytes] | None:
    try:
        obj = rest.get(f"/api/v1/namespaces/{namespace}/{plural}/{ref['name']}")
    except Exception as exc:
        if not not_found(exc):
            raise
        if ref.get("optional"):
            return None
        raise ContainerConfigError(f'{plural[:-1]} "{ref["name"]}" not found') from exc
    return object_data(obj, plural)


def _value_from(rest: Rest, pod: Obj, source: Obj) -> str | None:
    if "fieldRef" in source:
        try:
            return field_value(pod, source["fieldRef"]["fieldPath"])
        except VolumeError as exc:
            raise ContainerConfigError(str(exc)) from exc
    for field, plural in (("configMapKeyRef", "configmaps"), ("secretKeyRef", "secrets")):
        if field in source:
            ref = source[field]
            data = _lookup(rest, pod["metadata"]["namespace"], plural, ref)
            if data is None or (ref["key"] not in data and ref.get("optional")):
                return None
            if ref["key"] not in data:
                raise ContainerConfigError(
                    f"couldn't find key {ref['key']} in {plural[:-1]} {ref['name']}"
                )
            return data[ref["key"]].decode("utf-8", "replace")
    if "resourceFieldRef" in source:
        return "0"  # the simulator enforces no resource limits
    raise ContainerConfigError(f"env valueFrom {sorted(source)} is not supported")


def container_env(rest: Rest, pod: Obj, container: Obj) -> dict[str, str]:
    """The container's own environment: envFrom, then env (later entries see earlier ones)."""
    env: dict[str, str] = {}
    namespace = pod["metadata"]["namespace"]
    for source in container.get("envFrom") or []:
        for field, plural in (("configMapRef", "configmaps"), ("secretRef", "secrets")):
            if field in source:
                data = _lookup(rest, namespace, plural, source[field]) or {}
                prefix = source.get("prefix") or ""
                env.update({prefix + k: v.decode("utf-8", "replace") for k, v in data.items()})
    for var in container.get("env") or []:
        if "valueFrom" in var:
            value = _value_from(rest, pod, var["valueFrom"])
            if value is not None:
                env[var["name"]] = value
        else:
            env[var["name"]] = expand(var.get("value") or "", env)
    return env


@dataclass(frozen=True)
class Launch:
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    log: Path
    termination_file: Path


def python_shims(bin_dir: Path, interpreter: str) -> None:
    """`python` and `python3` in `bin_dir` start `interpreter` (a wrapper, not a symlink, so a
    virtualenv's interpreter still finds its pyvenv.cfg)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name in ("python", "python3"):
        shim = bin_dir / name
        shim.write_text(f'#!/bin/sh\nexec "{interpreter}" "$@"\n')
        shim.chmod(0o755)


def plan_launch(
    rest: Rest, pod: Obj, container: Obj, volumes: PodVolumes, python: str, pod_dir: Path
) -> Launch:
    """What to run: `command` + `args` ($(VAR)-expanded, paths rewritten), in `workingDir`
    (default: `<pod dir>/workdir/<container>`). Without `command` the args run on their own
    (the python images have no ENTRYPOINT); without either, `python3` runs (their CMD)."""
    name = container["name"]
    env = container_env(rest, pod, container)
    mounts = volumes.mounts(container, lambda text: expand(text, env))
    termination_file = pod_dir / f"{name}.termination-log"
    termination_path = container.get("terminationMessagePath") or TERMINATION_LOG
    rewrite = PathRewriter([*mounts, (termination_path, termination_file)])
    bin_dir = pod_dir / "bin" / name
    python_shims(bin_dir, python)
    command = [expand(x, env) for x in container.get("command") or []]
    args = [expand(x, env) for x in container.get("args") or []]
    argv = [rewrite(x) for x in (command + args or ["python3"])]
    process_env = {k: os.environ[k] for k in PASSED_THROUGH if k in os.environ}
    process_env["PATH"] = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', os.defpath)}"
    process_env["HOSTNAME"] = pod["metadata"]["name"]
    process_env.update({k: rewrite(v) for k, v in env.items()})
    working_dir = container.get("workingDir")
    cwd = Path(rewrite(working_dir)) if working_dir else pod_dir / "workdir" / name
    if working_dir and not cwd.is_dir():
        raise ContainerConfigError(
            f"workingDir {working_dir} is not under a volume mount and is no folder on the host"
        )
    cwd.mkdir(parents=True, exist_ok=True)
    return Launch(argv, process_env, cwd, pod_dir / f"{name}.log", termination_file)


def spawn(plan: Launch) -> tuple[subprocess.Popen[bytes], int]:
    """Start the process in its own session, output appended to the log; returns the process
    and the log offset where this run's output starts."""
    plan.termination_file.write_bytes(b"")
    with plan.log.open("ab") as log:
        log_from = log.tell()
        popen = subprocess.Popen(
            plan.argv,
            env=plan.env,
            cwd=plan.cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return popen, log_from


def termination_message(path: Path, policy: str, failed: bool, log: Path, log_from: int) -> str:
    """The file's first 4096 bytes; with FallbackToLogsOnError and an empty file on failure,
    the end of this run's log (at most 80 lines and 4096 bytes)."""
    message = path.read_bytes()[:MESSAGE_BYTES] if path.exists() else b""
    if not message.strip() and failed and policy == "FallbackToLogsOnError" and log.exists():
        with log.open("rb") as handle:
            handle.seek(log_from)
            lines = handle.read().splitlines(keepends=True)[-FALLBACK_LINES:]
        message = b"".join(lines)[-MESSAGE_BYTES:]
    return message.decode("utf-8", "replace")
