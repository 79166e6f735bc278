"""The HPOExperiment spec: raw manifest dict -> frozen dataclasses.

`parse_experiment` checks everything the CRD schema checks and what a schema cannot say
(min < max, unique names, a grid that is finite). It reports every error at once, each naming
its field path (`spec.parameters[1].int.min`) and what would be accepted.
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

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
MAX_GRID_SIZE = 1_000_000
NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
PARAM_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
MAX_CHOICE_LENGTH = 253

Scalar = bool | int | float | str


class SpecError(ValueError):
    """One or more problems in a manifest; each names its field path."""

    def __init__(self, errors: Sequence[tuple[str, str]]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(f"{path}: {message}" for path, message in self.errors))


@dataclass(frozen=True)
class IntParam:
    name: str
    min: int
    max: int
    step: int = 1
    log: bool = False


@dataclass(frozen=True)
class FloatParam:
    name: str
    min: float
    max: float
    step: float | None = None
    log: bool = False


@dataclass(frozen=True)
class ChoiceParam:
    """`values` (any scalars, e.g. batch sizes) or `categorical` (strings)."""

    name: str
    choices: tuple[Scalar, ...]
    kind: Literal["values", "categorical"] = "values"


Parameter = IntParam | FloatParam | ChoiceParam


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

    @property
    def container(self) -> Mapping[str, Any]:
        """The trainer container: the first container of the trial template."""
        containers: list[Mapping[str, Any]] = self.trial_template["spec"]["containers"]
        return containers[0]


class _Errors:
    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []

    def add(self, path: str, message: str) -> None:
        self.items.append((path, message))


def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _mapping(raw: object, path: str, errs: _Errors, required: bool = True) -> Mapping[str, Any]:
    if raw is None and not required:
        return {}
    if not isinstance(raw, Mapping):
        errs.add(path, f"must be an object, got {_type_name(raw)}")
        return {}
    return raw


def _unknown(raw: Mapping[str, Any], allowed: Sequence[str], path: str, errs: _Errors) -> None:
    for key in raw:
        if key not in allowed:
            errs.add(f"{path}.{key}", f"unknown field; expected one of: {', '.join(allowed)}")


def _int(
    raw: object, path: str, errs: _Errors, minimum: int | None = None, default: int | None = None
) -> int | None:
    if raw is None:
        if default is None:
            errs.add(path, "is required (an integer)")
        return default
    if isinstance(raw, bool) or not isinstance(raw, int):
        errs.add(path, f"must be an integer, got {_type_name(raw)} {raw!r}")
        return default
    if minimum is not None and raw < minimum:
        errs.add(path, f"must be >= {minimum}, got {raw}")
        return default
    return raw


def _number(raw: object, path: str, errs: _Errors, required: bool = True) -> float | None:
    if raw is None:
        if required:
            errs.add(path, "is required (a number)")
        return None
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        errs.add(path, f"must be a number, got {_type_name(raw)} {raw!r}")
        return None
    if not math.isfinite(raw):
        errs.add(path, f"must be a finite number, got {raw}")
        return None
    return float(raw)


def _bool(raw: object, path: str, errs: _Errors) -> bool:
    if raw is None:
        return False
    if not isinstance(raw, bool):
        errs.add(path, f"must be true or false, got {_type_name(raw)} {raw!r}")
        return False
    return raw


def _string(
    raw: object,
    path: str,
    errs: _Errors,
    default: str | None = None,
    choices: Sequence[str] | None = None,
) -> str | None:
    if raw is None:
        if default is None:
            errs.add(path, "is required (a string)")
        return default
    if not isinstance(raw, str) or not raw:
        errs.add(path, f"must be a non-empty string, got {_type_name(raw)} {raw!r}")
        return default
    if choices is not None and raw not in choices:
        errs.add(path, f"must be one of {', '.join(choices)}; got {raw!r}")
        return default
    return raw


PARAM_TYPES = ("int", "float", "values", "categorical")


def _parse_parameter(raw: object, path: str, errs: _Errors) -> Parameter | None:
    data = _mapping(raw, path, errs)
    if not isinstance(raw, Mapping):
        return None
    name = _string(data.get("name"), f"{path}.name", errs)
    if name is not None and not PARAM_NAME_RE.match(name):
        errs.add(
            f"{path}.name",
            f"{name!r} is not a valid parameter name; use letters, digits, '_', '.', '-', "
            "starting with a letter or '_'",
        )
    kinds = [k for k in PARAM_TYPES if k in data]
    _unknown(data, ("name", *PARAM_TYPES), path, errs)
    if len(kinds) != 1:
        found = ", ".join(kinds) if kinds else "none"
        errs.add(path, f"needs exactly one of int, float, values, categorical; found {found}")
        return None
    if name is None:
        return None
    kind = kinds[0]
    sub = f"{path}.{kind}"
    if kind == "int":
        return _parse_int_param(name, data["int"], sub, errs)
    if kind == "float":
        return _parse_float_param(name, data["float"], sub, errs)
    return _parse_choices(name, data[kind], sub, kind, errs)


def _parse_int_param(name: str, raw: object, path: str, errs: _Errors) -> IntParam | None:
    data = _mapping(raw, path, errs)
    if not isinstance(raw, Mapping):
        return None
    _unknown(data, ("min", "max", "step", "log"), path, errs)
    low = _int(data.get("min"), f"{path}.min", errs)
    high = _int(data.get("max"), f"{path}.max", errs)
    step = _int(data.get("step"), f"{path}.step", errs, minimum=1, default=1)
    log = _bool(data.get("log"), f"{path}.log", errs)
    if low is None or high is None or step is None:
        return None
    ok = True
    if low >= high:
        errs.add(path, f"min ({low}) must be less than max ({high})")
        ok = False
    if log and step != 1:
        errs.add(path, f"log: true needs step 1, got step {step}")
        ok = False
    if log and low < 1:
        errs.add(f"{path}.min", f"log: true needs min >= 1, got {low}")
        ok = False
    if ok and (high - low) % step:
        errs.add(
            f"{path}.step",
            f"max - min ({high - low}) must be a multiple of step ({step}) so max is reachable",
        )
        ok = False
    return IntParam(name, low, high, step, log) if ok else None


def _parse_float_param(name: str, raw: object, path: str, errs: _Errors) -> FloatParam | None:
    data = _mapping(raw, path, errs)
    if not isinstance(raw, Mapping):
        return None
    _unknown(data, ("min", "max", "step", "log"), path, errs)
    low = _number(data.get("min"), f"{path}.min", errs)
    high = _number(data.get("max"), f"{path}.max", errs)
    step = _number(data.get("step"), f"{path}.step", errs, required=False)
    log = _bool(data.get("log"), f"{path}.log", errs)
    if low is None or high is None:
        return None
    ok = True
    if low >= high:
        errs.add(path, f"min ({low:g}) must be less than max ({high:g})")
        ok = False
    if log and low <= 0:
        errs.add(f"{path}.min", f"log: true needs min > 0, got {low:g}")
        ok = False
    if step is not None:
        if step <= 0:
            errs.add(f"{path}.step", f"must be > 0, got {step:g}")
            ok = False
        elif log:
            errs.add(path, "step and log: true cannot be combined; drop one of them")
            ok = False
    return FloatParam(name, low, high, step, log) if ok else None


def _parse_choices(
    name: str, raw: object, path: str, kind: str, errs: _Errors
) -> ChoiceParam | None:
    if not isinstance(raw, list) or not raw:
        errs.add(path, f"must be a non-empty list, got {_type_name(raw)} {raw!r}")
        return None
    ok = True
    seen: list[Scalar] = []
    for i, value in enumerate(raw):
        where = f"{path}[{i}]"
        if kind == "categorical" and not isinstance(value, str):
            errs.add(where, f"must be a string, got {_type_name(value)} {value!r}")
            ok = False
        elif not isinstance(value, bool | int | float | str):
            errs.add(where, f"must be a number, string or boolean, got {_type_name(value)}")
            ok = False
        elif isinstance(value, float) and not math.isfinite(value):
            errs.add(where, f"must be finite, got {value}")
            ok = False
        elif isinstance(value, str) and len(value) > MAX_CHOICE_LENGTH:
            errs.add(where, f"is {len(value)} characters; at most {MAX_CHOICE_LENGTH}")
            ok = False
        elif any(value == s for s in seen):
            # 1, 1.0 and true are one choice to the search (Optuna finds choices by ==).
            same = next(s for s in seen if value == s)
            again = "is listed twice" if repr(same) == repr(value) else f"equals {same!r}"
            errs.add(where, f"{value!r} {again}; values must be unique")
            ok = False
        else:
            seen.append(value)
    choice_kind: Literal["values", "categorical"] = (
        "categorical" if kind == "categorical" else "values"
    )
    return ChoiceParam(name, tuple(seen), choice_kind) if ok else None


def grid_size(parameters: Sequence[Parameter]) -> int | None:
    """Number of grid points, or None when a parameter is continuous."""
    size = 1
    for p in parameters:
        if isinstance(p, IntParam):
            size *= (p.max - p.min) // p.step + 1
        elif isinstance(p, FloatParam):
            if p.step is None:
                return None
            size *= math.floor((p.max - p.min) / p.step + 1e-9) + 1
        else:
            size *= len(p.choices)
    return size


def default_seed(name: str) -> int:
    """The seed used when spec.algorithm.seed is absent: stable for an experiment's name."""
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


def _parse_objective(raw: object, errs: _Errors) -> Objective | None:
    path = "spec.objective"
    if raw is None:
        errs.add(path, "is required: {metric: NAME, direction: maximize|minimize}")
        return None
    data = _mapping(raw, path, errs)
    if not isinstance(raw, Mapping):
        return None
    _unknown(data, ("metric", "direction", "target", "aggregate", "stepKey"), path, errs)
    metric = _string(data.get("metric"), f"{path}.metric", errs)
    direction = _string(data.get("direction"), f"{path}.direction", errs, choices=DIRECTIONS)
    target = _number(data.get("target"), f"{path}.target", errs, required=False)
    aggregate = _string(
        data.get("aggregate"), f"{path}.aggregate", errs, default="best", choices=AGGREGATES
    )
    step_key = _string(data.get("stepKey"), f"{path}.stepKey", errs, default=DEFAULT_STEP_KEY)
    if metric is None or direction is None or aggregate is None or step_key is None:
        return None
    if metric == step_key:
        errs.add(f"{path}.metric", f"must differ from the step key {step_key!r}")
        return None
    return Objective(metric, direction, target, aggregate, step_key)  # type: ignore[arg-type]


def _parse_algorithm(raw: object, name: str, errs: _Errors) -> Algorithm | None:
    path = "spec.algorithm"
    data = _mapping(raw, path, errs, required=False)
    _unknown(data, ("name", "seed"), path, errs)
    algo = _string(data.get("name"), f"{path}.name", errs, DEFAULT_ALGORITHM, ALGORITHMS)
    seed = _int(data.get("seed"), f"{path}.seed", errs, minimum=0, default=default_seed(name))
    if algo is None or seed is None:
        return None
    return Algorithm(algo, seed)


def _parse_template(raw: object, errs: _Errors) -> Mapping[str, Any]:
    path = "spec.trialTemplate"
    if raw is None:
        errs.add(path, "is required: a pod template with spec.containers")
        return {}
    data = _mapping(raw, path, errs)
    if not isinstance(raw, Mapping):
        return {}
    pod_raw = data.get("spec")
    if pod_raw is None:
        errs.add(f"{path}.spec", "is required: a pod spec with containers")
        return {}
    pod = _mapping(pod_raw, f"{path}.spec", errs)
    if not isinstance(pod_raw, Mapping):
        return {}
    containers = pod.get("containers")
    cpath = f"{path}.spec.containers"
    if not isinstance(containers, list) or not containers:
        errs.add(cpath, "must be a non-empty list of containers (the first is the trainer)")
        return {}
    for i, container in enumerate(containers):
        c = _mapping(container, f"{cpath}[{i}]", errs)
        if not isinstance(container, Mapping):
            continue
        _string(c.get("name"), f"{cpath}[{i}].name", errs)
        _string(c.get("image"), f"{cpath}[{i}].image", errs)
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


def _parse_resources(raw: object, errs: _Errors) -> TrialResources:
    path = "spec.trialResources"
    data = _mapping(raw, path, errs, required=False)
    _unknown(data, ("gpus", "gpuResourceName"), path, errs)
    gpus = _int(data.get("gpus"), f"{path}.gpus", errs, minimum=0, default=0)
    name = _string(
        data.get("gpuResourceName"), f"{path}.gpuResourceName", errs, DEFAULT_GPU_RESOURCE
    )
    return TrialResources(gpus or 0, name or DEFAULT_GPU_RESOURCE)


def _parse_results(raw: object, errs: _Errors) -> Mapping[str, Any]:
    path = "spec.results"
    data = _mapping(raw, path, errs, required=False)
    allowed = ("size", "storageClassName", "accessModes", "claimName", "retain")
    _unknown(data, allowed, path, errs)
    for key in ("size", "storageClassName", "claimName"):
        if key in data:
            _string(data[key], f"{path}.{key}", errs)
    if "claimName" in data and "size" in data:
        errs.add(path, "give either claimName (an existing claim) or size (a new one), not both")
    if "retain" in data:
        _bool(data["retain"], f"{path}.retain", errs)
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
    "trialTemplate",
)


def parse_experiment(manifest: object) -> ExperimentSpec:
    """A whole HPOExperiment manifest -> ExperimentSpec, or SpecError listing every problem."""
    errs = _Errors()
    doc = _mapping(manifest, "(manifest)", errs)
    is_doc = isinstance(manifest, Mapping)
    if is_doc:
        if doc.get("apiVersion") != API_VERSION:
            errs.add("apiVersion", f"must be {API_VERSION}, got {doc.get('apiVersion')!r}")
        if doc.get("kind") != KIND:
            errs.add("kind", f"must be {KIND}, got {doc.get('kind')!r}")
    meta = _mapping(doc.get("metadata"), "metadata", errs) if is_doc else {}
    name = _string(meta.get("name"), "metadata.name", errs) if is_doc else None
    if name is not None and (not NAME_RE.match(name) or len(name) > MAX_NAME_LENGTH):
        errs.add(
            "metadata.name",
            f"{name!r} must be lower-case letters, digits and '-', start and end with a letter "
            f"or digit, at most {MAX_NAME_LENGTH} characters",
        )
    spec_raw = doc.get("spec") if doc else None
    if is_doc and spec_raw is None:
        errs.add("spec", "is required")
    spec = _mapping(spec_raw, "spec", errs) if spec_raw is not None else {}
    is_spec = isinstance(spec_raw, Mapping)
    parsed = _parse_spec(spec, name or "experiment", errs) if is_spec else None
    if errs.items or parsed is None:
        raise SpecError(errs.items or [("spec", "is empty")])
    return parsed


def _parse_spec(spec: Mapping[str, Any], name: str, errs: _Errors) -> ExperimentSpec | None:
    _unknown(spec, SPEC_FIELDS, "spec", errs)
    objective = _parse_objective(spec.get("objective"), errs)
    algorithm = _parse_algorithm(spec.get("algorithm"), name, errs)
    params = _parse_parameters(spec.get("parameters"), errs)
    size = grid_size(params) if params else None
    if algorithm is not None and algorithm.name == "grid" and params:
        _check_grid(params, size, errs)
    default_max = size if algorithm is not None and algorithm.name == "grid" and size else None
    max_trials = _int(
        spec.get("maxTrials"),
        "spec.maxTrials",
        errs,
        minimum=1,
        default=default_max or DEFAULT_MAX_TRIALS,
    )
    parallelism = _int(
        spec.get("parallelism"), "spec.parallelism", errs, minimum=1, default=DEFAULT_PARALLELISM
    )
    max_failed = _int(
        spec.get("maxFailedTrials"),
        "spec.maxFailedTrials",
        errs,
        minimum=1,
        default=DEFAULT_MAX_FAILED_TRIALS,
    )
    resources = _parse_resources(spec.get("trialResources"), errs)
    results = _parse_results(spec.get("results"), errs)
    template = _parse_template(spec.get("trialTemplate"), errs)
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
    )


def _parse_parameters(raw: object, errs: _Errors) -> list[Parameter]:
    path = "spec.parameters"
    if not isinstance(raw, list) or not raw:
        errs.add(path, f"must be a non-empty list of parameters, got {_type_name(raw)}")
        return []
    params: list[Parameter] = []
    names: dict[str, int] = {}
    for i, item in enumerate(raw):
        param = _parse_parameter(item, f"{path}[{i}]", errs)
        if param is None:
            continue
        if param.name in names:
            errs.add(
                f"{path}[{i}].name",
                f"{param.name!r} is already used by {path}[{names[param.name]}]; "
                "names must be unique",
            )
            continue
        names[param.name] = i
        params.append(param)
    return params if len(params) == len(raw) else []


def _check_grid(params: Sequence[Parameter], size: int | None, errs: _Errors) -> None:
    for i, p in enumerate(params):
        if isinstance(p, FloatParam) and p.step is None:
            errs.add(
                f"spec.parameters[{i}].float",
                "grid search needs a finite set of values: give float.step, or use values: [...]",
            )
    if size is not None and size > MAX_GRID_SIZE:
        errs.add("spec.parameters", f"the grid has {size} points; at most {MAX_GRID_SIZE}")
