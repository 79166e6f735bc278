"""The operator's settings: one frozen dataclass read from HPO_* environment variables once,
at start-up, and validated there (a bad value stops the operator with a message naming it)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_OPERATOR_IMAGE = "ghcr.io/hpo-operator/hpo-operator:0.1.0"


class SettingsError(ValueError):
    """An HPO_* variable with a value that cannot be used."""


@dataclass(frozen=True)
class Settings:
    operator_image: str = DEFAULT_OPERATOR_IMAGE
    """HPO_OPERATOR_IMAGE: the image whose launcher the trial pods' init container copies."""
    reconcile_seconds: float = 5.0
    """HPO_RECONCILE_SECONDS: how often each experiment is reconciled."""
    unschedulable_seconds: float = 600.0
    """HPO_UNSCHEDULABLE_SECONDS: a trial pod unschedulable this long fails its trial."""
    gpu_resource_name: str | None = None
    """HPO_GPU_RESOURCE_NAME: overrides spec.trialResources.gpuResourceName (e.g. MIG)."""
    trainer_python: str = "python3"
    """HPO_TRAINER_PYTHON: the interpreter in trainer images that runs the launcher."""
    metrics_port: int = 8080
    """HPO_METRICS_PORT: the port of the Prometheus endpoint /metrics; 0 turns it off."""
    metrics_address: str = "0.0.0.0"
    """HPO_METRICS_ADDRESS: the address /metrics listens on (127.0.0.1: this machine only)."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Each variable that is set, else the field's default above."""
        env = os.environ if environ is None else environ
        d = cls()
        return cls(
            operator_image=env.get("HPO_OPERATOR_IMAGE", d.operator_image),
            reconcile_seconds=_positive(env, "HPO_RECONCILE_SECONDS", d.reconcile_seconds),
            unschedulable_seconds=_positive(
                env, "HPO_UNSCHEDULABLE_SECONDS", d.unschedulable_seconds
            ),
            gpu_resource_name=env.get("HPO_GPU_RESOURCE_NAME") or d.gpu_resource_name,
            trainer_python=env.get("HPO_TRAINER_PYTHON", d.trainer_python),
            metrics_port=_port(env, "HPO_METRICS_PORT", d.metrics_port),
            metrics_address=env.get("HPO_METRICS_ADDRESS") or d.metrics_address,
        )


def _positive(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r}: expected a number of seconds") from None
    if value <= 0:
        raise SettingsError(f"{name}={raw!r}: must be > 0")
    return value


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or int(raw) > 65535:
        raise SettingsError(f"{name}={raw!r}: expected a port number 0-65535 (0: off)")
    return int(raw)
