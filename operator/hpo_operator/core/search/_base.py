"""The small interface every search algorithm module implements."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..spec import ExperimentSpec, Scalar
from ..trial import Trial


@dataclass(frozen=True)
class Suggestion:
    parameters: Mapping[str, Scalar]
    sampler_attrs: Mapping[str, Any] = field(default_factory=dict)


class Algorithm(Protocol):
    def ask(self, spec: ExperimentSpec, history: Sequence[Trial], index: int) -> Suggestion | None:
        """The parameters for trial `index` given all earlier trials; None when exhausted."""
