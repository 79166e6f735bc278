"""The HPOExperiment spec: raw manifest dict -> frozen dataclasses.

`parse_experiment` checks everything the CRD schema checks and what a schema cannot say
(min < max, unique names, a grid that is finite). It reports every error at once, each naming
its field path (`spec.parameters[1].int.min`) and what would be accepted.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ._fields import Errors, boolean, integer, mapping, number, string, unknown
from .parameters import (
    MAX_GRID_SIZE,
    ChoiceParam,
    FloatParam,
    IntParam,
    Parameter,
    Scalar,
    check_grid,
    grid_size,
    parse_parameters,
)

__all__ = [
    "MAX_GRID_SIZE",
    "ChoiceParam",
    "ExperimentSpec",
    "FloatParam",
    "IntParam",
    "Parameter",
    "Scalar",
    "SpecError",
    "grid_size",
    "parse_experiment",
]

API_VERSION = "hpo.dev/v1alpha1"
KIND = "HPOExperiment"
ALGORITHMS = ("grid", "random", "tpe", "cmaes", "qmc")
DIRECTIONS = ("maximize", "minimize")
AGGREGATES = ("best", "last")
DEFAULT_ALGORITHM = "tpe"
DEFAULT_PARALLELISM = 1
DEFAULT_MAX_FAILED_TRIALS = 3
DEFAULT_MAX_TRIALS = 20  # for non-grid algorithms; grid defaults to the size of its grid
DEFAULT_STEP_KEY = "steps"
DEFAULT_GPU_RESOURCE = "nvidia.com/gpu"
MAX_NAME_LENGTH = 45  # leaves room for "-t<index>" within Kubernetes' 63-character labels
NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class SpecError(ValueError):
    """One or more problems in a manifest; each names its field path."""

    def __init__(self, errors: Sequence[tuple[str, str]]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(f"{path}: {message}" for path, message in self.errors))


@dataclass(frozen=True)
class Objective:
    metric: str
    direction: Literal["maximize", "minimize"]
    target: float | None = None
    aggregate: Literal["best", "last"] = "best"
    step_key: str = DEFAULT_STEP_KEY

    def better(self, a: float, b: float) -> bool:
        """True when objective value `a` is strictly better than `b`."""
        return a > b if self.direction == "maximize" else a < b

    def reached(self, value: float) -> bool:
        if self.target is None:
            return False
        return value >= self.target if self.direction == "maximize" else value <= self.target


@dataclass(frozen=True)
class Algorithm:
    name: str
    seed: int


@dataclass(frozen=True)
class TrialResources:
    gpus: int = 0
    gpu_resource_name: str = DEFAULT_GPU_RESOURCE


@dataclass(frozen=True)
class ExperimentSpec:
    name: str
    objective: Objective
    algorithm: Algorithm
    parameters: tuple[Parameter, ...]
    max_trials: int
    parallelism: int
    max_failed_trials: int
    trial_template: Mapping[str, Any]
    trial_resources: TrialResources = field(default_factory=TrialResources)
    results: Mapping[str, Any] = field(default_factory=dict)
    queue_name: str | None = None  # a Kueue LocalQueue; trial Jobs are then created suspended

    @property
    def container(self) -> Mapping[str, Any]:
        """The trainer container: the first container of the trial template."""
        containers: list[Mapping[str, Any]] = self.trial_template["spec"]["containers"]
        return containers[0]


def default_seed(name: str) -> int:
    """The seed used when spec.algorithm.seed is absent: stable for an experiment's name."""
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


def _parse_objective(raw: object, errs: Errors) -> Objective | None:
    path = "spec.objective"
    if raw is None:
        errs.add(path, "is required: {metric: NAME, direction: maximize|minimize}")
        return None
    data = mapping(raw, path, errs)
    if not isinstance(raw, Mapping):
        return None
    unknown(data, ("metric", "direction", "target", "aggregate", "stepKey"), path, errs)
    metric = string(data.get("metric"), f"{path}.metric", errs)
    direction = string(data.get("direction"), f"{path}.direction", errs, choices=DIRECTIONS)
    target = number(data.get("target"), f"{path}.target", errs, required=False)
    aggregate = string(
        data.get("aggregate"), f"{path}.aggregate", errs, default="best", choices=AGGREGATES
    )
    step_key = string(data.get("stepKey"), f"{path}.stepKey", errs, default=DEFAULT_STEP_KEY)
    if metric is None or direction is None or aggregate is None or step_key is None:
        return None
    if metric == step_key:
        errs.add(f"{path}.metric", f"must differ from the step key {step_key!r}")
        return None
    return Objective(metric, direction, target, aggregate, step_key)  # type: ignore[arg-type]


def _parse_algorithm(raw: object, name: str, errs: Errors) -> Algorithm | None:
    path = "spec.algorithm"
    data = mapping(raw, path, errs, required=False)
    unknown(data, ("name", "seed"), path, errs)
    algo = string(data.get("name"), f"{path}.name", errs, DEFAULT_ALGORITHM, ALGORITHMS)
    seed = integer(data.get("seed"), f"{path}.seed", errs, minimum=0, default=default_seed(name))
    if algo is None or seed is None:
        return None
    return Algorithm(algo, seed)


def _parse_template(raw: object, errs: Errors) -> Mapping[str, Any]:
    path = "spec.trialTemplate"
    if raw is None:
        errs.add(path, "is required: a pod template with spec.containers")
        return {}
    data = mapping(raw, path, errs)
    if not isinstance(raw, Mapping):
        return {}
    pod_raw = data.get("spec")
    if pod_raw is None:
        errs.add(f"{path}.spec", "is required: a pod spec with containers")
        return {}
    pod = mapping(pod_raw, f"{path}.spec", errs)
    if not isinstance(pod_raw, Mapping):
        return {}
    containers = pod.get("containers")
    cpath = f"{path}.spec.containers"
    if not isinstance(containers, list) or not containers:
        errs.add(cpath, "must be a non-empty list of containers (the first is the trainer)")
        return {}
    for i, container in enumerate(containers):
        c = mapping(container, f"{cpath}[{i}]", errs)
        if not isinstance(container, Mapping):
            continue
        string(c.get("name"), f"{cpath}[{i}].name", errs)
        string(c.get("image"), f"{cpath}[{i}].image", errs)
        for key in ("command", "args"):
            value = c.get(key)
            if value is not None and (
                not isinstance(value, list) or not all(isinstance(v, str) for v in value)
            ):
                errs.add(f"{cpath}[{i}].{key}", "must be a list of strings")
    trainer = containers[0] if isinstance(containers[0], Mapping) else {}
    if not trainer.get("command"):
        errs.add(
            f"{cpath}[0].command",
            "is required: the trainer's command runs through the HPO launcher, "
            "which cannot read an image's entrypoint",
        )
    return data


def _parse_resources(raw: object, errs: Errors) -> TrialResources:
    path = "spec.trialResources"
    data = mapping(raw, path, errs, required=False)
    unknown(data, ("gpus", "gpuResourceName"), path, errs)
    gpus = integer(data.get("gpus"), f"{path}.gpus", errs, minimum=0, default=0)
    name = string(
        data.get("gpuResourceName"), f"{path}.gpuResourceName", errs, DEFAULT_GPU_RESOURCE
    )
    return TrialResources(gpus or 0, name or DEFAULT_GPU_RESOURCE)


def _parse_results(raw: object, errs: Errors) -> Mapping[str, Any]:
    path = "spec.results"
    data = mapping(raw, path, errs, required=False)
    allowed = ("size", "storageClassName", "accessModes", "claimName", "retain")
    unknown(data, allowed, path, errs)
    for key in ("size", "storageClassName", "claimName"):
        if key in data:
            string(data[key], f"{path}.{key}", errs)
    if "claimName" in data and "size" in data:
        errs.add(path, "give either claimName (an existing claim) or size (a new one), not both")
    if "retain" in data:
        boolean(data["retain"], f"{path}.retain", errs)
    modes = data.get("accessModes")
    if modes is not None and (not isinstance(modes, list) or not modes):
        errs.add(f"{path}.accessModes", "must be a non-empty list such as [ReadWriteOnce]")
    return data


SPEC_FIELDS = (
    "objective",
    "algorithm",
    "parameters",
    "maxTrials",
    "parallelism",
    "maxFailedTrials",
    "trialResources",
    "results",
    "queueName",
    "trialTemplate",
)


def parse_experiment(manifest: object) -> ExperimentSpec:
    """A whole HPOExperiment manifest -> ExperimentSpec, or SpecError listing every problem."""
    errs = Errors()
    doc = mapping(manifest, "(manifest)", errs)
    is_doc = isinstance(manifest, Mapping)
    if is_doc:
        if doc.get("apiVersion") != API_VERSION:
            errs.add("apiVersion", f"must be {API_VERSION}, got {doc.get('apiVersion')!r}")
        if doc.get("kind") != KIND:
            errs.add("kind", f"must be {KIND}, got {doc.get('kind')!r}")
    meta = mapping(doc.get("metadata"), "metadata", errs) if is_doc else {}
    name = string(meta.get("name"), "metadata.name", errs) if is_doc else None
    if name is not None and (not NAME_RE.match(name) or len(name) > MAX_NAME_LENGTH):
        errs.add(
            "metadata.name",
            f"{name!r} must be lower-case letters, digits and '-', start and end with a letter "
            f"or digit, at most {MAX_NAME_LENGTH} characters",
        )
    spec_raw = doc.get("spec") if doc else None
    if is_doc and spec_raw is None:
        errs.add("spec", "is required")
    spec = mapping(spec_raw, "spec", errs) if spec_raw is not None else {}
    is_spec = isinstance(spec_raw, Mapping)
    parsed = _parse_spec(spec, name or "experiment", errs) if is_spec else None
    if errs.items or parsed is None:
        raise SpecError(errs.items or [("spec", "is empty")])
    return parsed


def _parse_spec(spec: Mapping[str, Any], name: str, errs: Errors) -> ExperimentSpec | None:
    unknown(spec, SPEC_FIELDS, "spec", errs)
    objective = _parse_objective(spec.get("objective"), errs)
    algorithm = _parse_algorithm(spec.get("algorithm"), name, errs)
    params = parse_parameters(spec.get("parameters"), errs)
    size = grid_size(params) if params else None
    if algorithm is not None and algorithm.name == "grid" and params:
        check_grid(params, size, errs)
    default_max = size if algorithm is not None and algorithm.name == "grid" and size else None
    max_trials = integer(
        spec.get("maxTrials"),
        "spec.maxTrials",
        errs,
        minimum=1,
        default=default_max or DEFAULT_MAX_TRIALS,
    )
    parallelism = integer(
        spec.get("parallelism"), "spec.parallelism", errs, minimum=1, default=DEFAULT_PARALLELISM
    )
    max_failed = integer(
        spec.get("maxFailedTrials"),
        "spec.maxFailedTrials",
        errs,
        minimum=1,
        default=DEFAULT_MAX_FAILED_TRIALS,
    )
    resources = _parse_resources(spec.get("trialResources"), errs)
    results = _parse_results(spec.get("results"), errs)
    template = _parse_template(spec.get("trialTemplate"), errs)
    queue_name = string(spec["queueName"], "spec.queueName", errs) if "queueName" in spec else None
    if (
        errs.items
        or objective is None
        or algorithm is None
        or max_trials is None
        or parallelism is None
        or max_failed is None
    ):
        return None
    return ExperimentSpec(
        name=name,
        objective=objective,
        algorithm=algorithm,
        parameters=tuple(params),
        max_trials=max_trials,
        parallelism=parallelism,
        max_failed_trials=max_failed,
        trial_template=template,
        trial_resources=resources,
        results=results,
        queue_name=queue_name,
    )
