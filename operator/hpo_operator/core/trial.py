"""One trial as the core sees it: the row that history, status and search share."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .spec import Scalar

PENDING = "Pending"
RUNNING = "Running"
SUCCEEDED = "Succeeded"
FAILED = "Failed"
STOPPED = "Stopped"
PHASES = (PENDING, RUNNING, SUCCEEDED, FAILED, STOPPED)
ACTIVE = (PENDING, RUNNING)
FINISHED = (SUCCEEDED, FAILED, STOPPED)


def trial_name(experiment: str, index: int) -> str:
    """Trials are named `<experiment>-t<index>`, in Kubernetes and on disk alike."""
    return f"{experiment}-t{index}"


@dataclass(frozen=True)
class Trial:
    """A trial's parameters and, once it ran, its outcome.

    `sampler_attrs` are the search algorithm's per-trial notes (JSON scalars), kept so a study
    rebuilt from history continues where it was.
    """

    index: int
    name: str
    parameters: Mapping[str, Scalar]
    phase: str = PENDING
    objective: float | None = None
    step: float | None = None
    curve: tuple[tuple[float, float], ...] = ()
    reason: str | None = None
    cause: str | None = None
    """Why it ended, one CamelCase word from a fixed set (for counting; `reason` is for people)."""
    sampler_attrs: Mapping[str, Any] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return self.phase in ACTIVE
