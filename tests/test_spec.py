"""The spec parser: manifest dicts in, frozen dataclasses or field-path errors out. No mocks."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from hpo_operator.core.parameters import MAX_CHOICE_LENGTH
from hpo_operator.core.spec import (
    DEFAULT_ALGORITHM,
    DEFAULT_GPU_RESOURCE,
    DEFAULT_MAX_FAILED_TRIALS,
    DEFAULT_MAX_TRIALS,
    DEFAULT_PARALLELISM,
    DEFAULT_STEP_KEY,
    MAX_GRID_SIZE,
    MAX_NAME_LENGTH,
    Algorithm,
    ChoiceParam,
    ExperimentSpec,
    FloatParam,
    IntParam,
    Objective,
    SpecError,
    TrialResources,
    default_seed,
    grid_size,
    parse_experiment,
)

TRAINER = {"name": "trainer", "image": "registry.example/trainer:0.1", "command": ["train"]}
STEPS = {"name": "steps", "int": {"min": 100, "max": 500, "step": 100}}
RATE = {"name": "learning_rate", "float": {"min": 0.001, "max": 0.1, "log": True}}


def manifest(*params: dict[str, Any], name: str = "demo", **spec: Any) -> dict[str, Any]:
    """A valid manifest with `params` (default: one int parameter) and `spec` overrides."""
    body: dict[str, Any] = {
        "objective": {"metric": "accuracy", "direction": "maximize"},
        "parameters": [copy.deepcopy(p) for p in params] or [copy.deepcopy(STEPS)],
        "trialTemplate": {"spec": {"containers": [dict(TRAINER)]}},
    }
    body.update(spec)
    return {
        "apiVersion": "hpo.dev/v1alpha1",
        "kind": "HPOExperiment",
        "metadata": {"name": name},
        "spec": body,
    }


def errors_of(doc: object) -> list[tuple[str, str]]:
    with pytest.raises(SpecError) as caught:
        parse_experiment(doc)
    return caught.value.errors


def only_error(doc: object) -> tuple[str, str]:
    errors = errors_of(doc)
    assert len(errors) == 1, errors
    return errors[0]


# --- parameters parse, types kept ----------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (STEPS, IntParam("steps", 100, 500, 100)),
        ({"name": "layers", "int": {"min": 1, "max": 8}}, IntParam("layers", 1, 8)),
        (
            {"name": "units", "int": {"min": 8, "max": 1024, "log": True}},
            IntParam("units", 8, 1024, 1, True),
        ),
        (RATE, FloatParam("learning_rate", 0.001, 0.1, None, True)),
        (
            {"name": "dropout", "float": {"min": 0, "max": 0.5, "step": 0.1}},
            FloatParam("dropout", 0.0, 0.5, 0.1),
        ),
        (
            {"name": "batch_size", "values": [16, 32, 64]},
            ChoiceParam("batch_size", (16, 32, 64), "values"),
        ),
        (
            {"name": "mixed", "values": [0.5, "auto", True, 3]},
            ChoiceParam("mixed", (0.5, "auto", True, 3), "values"),
        ),
        (
            {"name": "optimizer", "categorical": ["sgd", "adam"]},
            ChoiceParam("optimizer", ("sgd", "adam"), "categorical"),
        ),
        ({"name": "a.b-c_d", "values": [1]}, ChoiceParam("a.b-c_d", (1,), "values")),
    ],
    ids=["int-step", "int", "int-log", "float-log", "float-step", "values", "mixed", "cat", "name"],
)
def test_parameter_parses(raw: dict[str, Any], expected: object) -> None:
    (param,) = parse_experiment(manifest(raw)).parameters
    assert param == expected


def test_parameter_types_are_kept() -> None:
    params = parse_experiment(
        manifest(
            STEPS,
            {"name": "dropout", "float": {"min": 0, "max": 1}},
            {"name": "mixed", "values": [1, 2.5, "x", False]},
        )
    ).parameters
    steps, dropout, mixed = params
    assert isinstance(steps, IntParam)
    assert type(steps.min) is int and type(steps.max) is int and type(steps.step) is int
    assert isinstance(dropout, FloatParam)
    assert type(dropout.min) is float and type(dropout.max) is float
    assert isinstance(mixed, ChoiceParam)
    assert [type(v) for v in mixed.choices] == [int, float, str, bool]


def test_parameters_keep_their_order() -> None:
    names = [p.name for p in parse_experiment(manifest(RATE, STEPS)).parameters]
    assert names == ["learning_rate", "steps"]


# --- defaults ------------------------------------------------------------------------------


def test_defaults() -> None:
    spec = parse_experiment(manifest(RATE, name="flowers"))
    assert spec == ExperimentSpec(
        name="flowers",
        objective=Objective("accuracy", "maximize", None, "best", DEFAULT_STEP_KEY),
        algorithm=Algorithm(DEFAULT_ALGORITHM, default_seed("flowers")),
        parameters=(FloatParam("learning_rate", 0.001, 0.1, None, True),),
        max_trials=DEFAULT_MAX_TRIALS,
        parallelism=DEFAULT_PARALLELISM,
        max_failed_trials=DEFAULT_MAX_FAILED_TRIALS,
        trial_template={"spec": {"containers": [TRAINER]}},
        trial_resources=TrialResources(0, DEFAULT_GPU_RESOURCE),
        results={},
    )
    assert (DEFAULT_ALGORITHM, DEFAULT_MAX_TRIALS, DEFAULT_PARALLELISM) == ("tpe", 20, 1)
    assert (DEFAULT_MAX_FAILED_TRIALS, DEFAULT_GPU_RESOURCE) == (3, "nvidia.com/gpu")


@pytest.mark.parametrize(
    ("params", "size"),
    [
        ([STEPS], 5),
        ([STEPS, {"name": "opt", "categorical": ["sgd", "adam"]}], 10),
        ([{"name": "d", "float": {"min": 0, "max": 0.5, "step": 0.1}}], 6),
        ([{"name": "d", "float": {"min": 0, "max": 1, "step": 0.3}}], 4),
        ([{"name": "b", "values": [1, 2, 3]}, {"name": "c", "int": {"min": 0, "max": 3}}], 12),
    ],
)
def test_grid_max_trials_defaults_to_grid_size(params: list[dict[str, Any]], size: int) -> None:
    spec = parse_experiment(manifest(*params, algorithm={"name": "grid"}))
    assert spec.max_trials == size
    assert grid_size(spec.parameters) == size


@pytest.mark.parametrize("algorithm", ["random", "tpe", "cmaes", "qmc"])
def test_other_algorithms_default_to_20_trials(algorithm: str) -> None:
    spec = parse_experiment(manifest(STEPS, algorithm={"name": algorithm}))
    assert spec.max_trials == DEFAULT_MAX_TRIALS


def test_explicit_max_trials_wins_over_grid_size() -> None:
    spec = parse_experiment(manifest(STEPS, algorithm={"name": "grid"}, maxTrials=3))
    assert spec.max_trials == 3


def test_grid_size_is_none_for_a_continuous_float() -> None:
    assert grid_size((FloatParam("lr", 0.001, 0.1),)) is None


def test_default_seed_is_stable_and_depends_on_the_name() -> None:
    assert default_seed("quickstart") == 245870761  # crc32: the same in every process and release
    assert default_seed("quickstart") != default_seed("quickstart-2")
    assert all(0 <= default_seed(n) < 2**31 for n in ("a", "flowers", "x" * 45))
    spec = parse_experiment(manifest(name="quickstart"))
    assert spec.algorithm.seed == default_seed("quickstart")


def test_explicit_seed_and_zero_seed() -> None:
    assert parse_experiment(manifest(algorithm={"seed": 0})).algorithm == Algorithm("tpe", 0)
    assert parse_experiment(manifest(algorithm={"name": "qmc", "seed": 7})).algorithm == (
        Algorithm("qmc", 7)
    )


def test_every_field_set() -> None:
    spec = parse_experiment(
        manifest(
            objective={
                "metric": "loss",
                "direction": "minimize",
                "target": 0.05,
                "aggregate": "last",
                "stepKey": "epoch",
            },
            maxTrials=7,
            parallelism=3,
            maxFailedTrials=1,
            trialResources={"gpus": 2, "gpuResourceName": "nvidia.com/mig-1g.5gb"},
            results={"claimName": "shared", "retain": True},
        )
    )
    assert spec.objective == Objective("loss", "minimize", 0.05, "last", "epoch")
    assert (spec.max_trials, spec.parallelism, spec.max_failed_trials) == (7, 3, 1)
    assert spec.trial_resources == TrialResources(2, "nvidia.com/mig-1g.5gb")
    assert spec.results == {"claimName": "shared", "retain": True}


def test_container_is_the_first_container() -> None:
    sidecar = {"name": "sidecar", "image": "busybox"}
    doc = manifest(trialTemplate={"spec": {"containers": [TRAINER, sidecar]}})
    assert parse_experiment(doc).container == TRAINER


@pytest.mark.parametrize(
    ("direction", "a", "b", "better"),
    [("maximize", 0.9, 0.8, True), ("maximize", 0.8, 0.9, False), ("minimize", 0.1, 0.2, True)],
)
def test_objective_better(direction: str, a: float, b: float, better: bool) -> None:
    objective = Objective("m", direction, None)  # type: ignore[arg-type]
    assert objective.better(a, b) is better
    assert objective.better(a, a) is False


@pytest.mark.parametrize(
    ("direction", "target", "value", "reached"),
    [
        ("maximize", 0.9, 0.9, True),
        ("maximize", 0.9, 0.89, False),
        ("minimize", 0.1, 0.1, True),
        ("minimize", 0.1, 0.11, False),
        ("maximize", None, 1e9, False),
    ],
)
def test_objective_reached(
    direction: str, target: float | None, value: float, reached: bool
) -> None:
    assert Objective("m", direction, target).reached(value) is reached  # type: ignore[arg-type]


# --- one mistake, one error, with its field path -------------------------------------------


def _spec(**changes: Any) -> dict[str, Any]:
    return manifest(**changes)


def _param(param: Any, *others: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return manifest(*others, param, **spec) if others else manifest(param, **spec)


ERROR_CASES = [
    # objective
    (
        _spec(objective={"metric": "accuracy", "direction": "up"}),
        "spec.objective.direction",
        "must be one of maximize, minimize; got 'up'",
    ),
    (
        _spec(objective={"direction": "maximize"}),
        "spec.objective.metric",
        "is required (a string)",
    ),
    (
        _spec(objective={"metric": "", "direction": "maximize"}),
        "spec.objective.metric",
        "must be a non-empty string, got str ''",
    ),
    (
        _spec(objective={"metric": "a", "direction": "maximize", "aggregate": "mean"}),
        "spec.objective.aggregate",
        "must be one of best, last; got 'mean'",
    ),
    (
        _spec(objective={"metric": "a", "direction": "maximize", "target": "high"}),
        "spec.objective.target",
        "must be a number, got str 'high'",
    ),
    (
        _spec(objective={"metric": "steps", "direction": "maximize"}),
        "spec.objective.metric",
        "must differ from the step key 'steps'",
    ),
    (
        _spec(objective="accuracy"),
        "spec.objective",
        "must be an object, got str",
    ),
    # algorithm
    (
        _spec(algorithm={"name": "bayes"}),
        "spec.algorithm.name",
        "must be one of grid, random, tpe, cmaes, qmc; got 'bayes'",
    ),
    (_spec(algorithm={"seed": -1}), "spec.algorithm.seed", "must be >= 0, got -1"),
    (_spec(algorithm={"seed": 1.5}), "spec.algorithm.seed", "must be an integer, got float 1.5"),
    # int
    (
        _param({"name": "n", "int": {"min": 5, "max": 3}}, RATE),
        "spec.parameters[1].int",
        "min (5) must be less than max (3)",
    ),
    (
        _param({"name": "n", "int": {"min": 3, "max": 3}}),
        "spec.parameters[0].int",
        "min (3) must be less than max (3)",
    ),
    (
        _param({"name": "n", "int": {"min": 0, "max": 10, "step": 3}}),
        "spec.parameters[0].int.step",
        "max - min (10) must be a multiple of step (3) so max is reachable",
    ),
    (
        _param({"name": "n", "int": {"min": 0, "max": 10, "step": 0}}),
        "spec.parameters[0].int.step",
        "must be >= 1, got 0",
    ),
    (
        _param({"name": "n", "int": {"min": 0, "max": 64, "log": True}}),
        "spec.parameters[0].int.min",
        "log: true needs min >= 1, got 0",
    ),
    (
        _param({"name": "n", "int": {"min": 1, "max": 101, "step": 10, "log": True}}),
        "spec.parameters[0].int",
        "log: true needs step 1, got step 10",
    ),
    (
        _param({"name": "n", "int": {"min": 0.5, "max": 10}}),
        "spec.parameters[0].int.min",
        "must be an integer, got float 0.5",
    ),
    (
        _param({"name": "n", "int": {"max": 10}}),
        "spec.parameters[0].int.min",
        "is required (an integer)",
    ),
    (
        _param({"name": "n", "int": {"min": 0, "max": 10, "log": "yes"}}),
        "spec.parameters[0].int.log",
        "must be true or false, got str 'yes'",
    ),
    (
        _param({"name": "n", "int": 5}),
        "spec.parameters[0].int",
        "must be an object, got int",
    ),
    # float
    (
        _param({"name": "x", "float": {"min": 1, "max": 0.5}}),
        "spec.parameters[0].float",
        "min (1) must be less than max (0.5)",
    ),
    (
        _param({"name": "x", "float": {"min": 0, "max": 1, "log": True}}),
        "spec.parameters[0].float.min",
        "log: true needs min > 0, got 0",
    ),
    (
        _param({"name": "x", "float": {"min": -1, "max": 1, "log": True}}),
        "spec.parameters[0].float.min",
        "log: true needs min > 0, got -1",
    ),
    (
        _param({"name": "x", "float": {"min": 0, "max": 1, "step": 0}}),
        "spec.parameters[0].float.step",
        "must be > 0, got 0",
    ),
    (
        _param({"name": "x", "float": {"min": 0.1, "max": 1, "step": 0.1, "log": True}}),
        "spec.parameters[0].float",
        "step and log: true cannot be combined; drop one of them",
    ),
    (
        _param({"name": "x", "float": {"min": float("nan"), "max": 1}}),
        "spec.parameters[0].float.min",
        "must be a finite number, got nan",
    ),
    (
        _param({"name": "x", "float": {"min": 0, "max": True}}),
        "spec.parameters[0].float.max",
        "must be a number, got bool True",
    ),
    # values / categorical
    (
        _param({"name": "b", "values": []}),
        "spec.parameters[0].values",
        "must be a non-empty list, got list []",
    ),
    (
        _param({"name": "b", "values": 16}),
        "spec.parameters[0].values",
        "must be a non-empty list, got int 16",
    ),
    (
        _param({"name": "b", "values": [16, {"x": 1}]}),
        "spec.parameters[0].values[1]",
        "must be a number, string or boolean, got dict",
    ),
    (
        _param({"name": "b", "values": [16, None]}),
        "spec.parameters[0].values[1]",
        "must be a number, string or boolean, got null",
    ),
    (
        _param({"name": "b", "values": [1.0, float("inf")]}),
        "spec.parameters[0].values[1]",
        "must be finite, got inf",
    ),
    (
        _param({"name": "b", "values": [16, 32, 16]}),
        "spec.parameters[0].values[2]",
        "16 is listed twice; values must be unique",
    ),
    (
        _param({"name": "b", "values": [1, 1.0]}),
        "spec.parameters[0].values[1]",
        "1.0 equals 1; values must be unique",
    ),
    (
        _param({"name": "b", "values": [1, True]}),
        "spec.parameters[0].values[1]",
        "True equals 1; values must be unique",
    ),
    (
        _param({"name": "o", "categorical": ["sgd", 1]}, RATE),
        "spec.parameters[1].categorical[1]",
        "must be a string, got int 1",
    ),
    (
        _param({"name": "o", "categorical": ["x" * (MAX_CHOICE_LENGTH + 1)]}),
        "spec.parameters[0].categorical[0]",
        f"is {MAX_CHOICE_LENGTH + 1} characters; at most {MAX_CHOICE_LENGTH}",
    ),
    # parameter itself
    (
        _param({"name": "b", "int": {"min": 1, "max": 2}, "values": [1, 2]}),
        "spec.parameters[0]",
        "needs exactly one of int, float, values, categorical; found int, values",
    ),
    (
        _param({"name": "b"}),
        "spec.parameters[0]",
        "needs exactly one of int, float, values, categorical; found none",
    ),
    (
        _param({"int": {"min": 1, "max": 2}}),
        "spec.parameters[0].name",
        "is required (a string)",
    ),
    (
        _param({"name": "9lives", "values": [1]}),
        "spec.parameters[0].name",
        "'9lives' is not a valid parameter name; use letters, digits, '_', '.', '-', "
        "starting with a letter or '_'",
    ),
    (
        _param({"name": "a b", "values": [1]}),
        "spec.parameters[0].name",
        "'a b' is not a valid parameter name; use letters, digits, '_', '.', '-', "
        "starting with a letter or '_'",
    ),
    (
        _param({"name": "lr", "values": [1]}, {"name": "lr", "values": [2]}),
        "spec.parameters[1].name",
        "'lr' is already used by spec.parameters[0]; names must be unique",
    ),
    (
        _param("steps"),
        "spec.parameters[0]",
        "must be an object, got str",
    ),
    (
        _spec(parameters=[]),
        "spec.parameters",
        "must be a non-empty list of parameters, got list",
    ),
    # counts
    (_spec(maxTrials=0), "spec.maxTrials", "must be >= 1, got 0"),
    (_spec(maxTrials="20"), "spec.maxTrials", "must be an integer, got str '20'"),
    (_spec(maxTrials=True), "spec.maxTrials", "must be an integer, got bool True"),
    (_spec(parallelism=0), "spec.parallelism", "must be >= 1, got 0"),
    (_spec(maxFailedTrials=0), "spec.maxFailedTrials", "must be >= 1, got 0"),
    # resources and results
    (_spec(trialResources={"gpus": -1}), "spec.trialResources.gpus", "must be >= 0, got -1"),
    (
        _spec(trialResources={"gpuResourceName": ""}),
        "spec.trialResources.gpuResourceName",
        "must be a non-empty string, got str ''",
    ),
    (
        _spec(results={"size": "5Gi", "claimName": "c"}),
        "spec.results",
        "give either claimName (an existing claim) or size (a new one), not both",
    ),
    (
        _spec(results={"accessModes": []}),
        "spec.results.accessModes",
        "must be a non-empty list such as [ReadWriteOnce]",
    ),
    (
        _spec(results={"retain": "no"}),
        "spec.results.retain",
        "must be true or false, got str 'no'",
    ),
    (_spec(results={"size": 5}), "spec.results.size", "must be a non-empty string, got int 5"),
    # trial template
    (
        _spec(trialTemplate={"spec": {"containers": [{"name": "t", "image": "i"}]}}),
        "spec.trialTemplate.spec.containers[0].command",
        "is required: the trainer's command runs through the HPO launcher, "
        "which cannot read an image's entrypoint",
    ),
    (
        _spec(trialTemplate={"spec": {"containers": [{**TRAINER, "command": "python t.py"}]}}),
        "spec.trialTemplate.spec.containers[0].command",
        "must be a list of strings",
    ),
    (
        _spec(trialTemplate={"spec": {"containers": [{**TRAINER, "args": ["--n", 3]}]}}),
        "spec.trialTemplate.spec.containers[0].args",
        "must be a list of strings",
    ),
    (
        _spec(trialTemplate={"spec": {"containers": [TRAINER, {"name": "side"}]}}),
        "spec.trialTemplate.spec.containers[1].image",
        "is required (a string)",
    ),
    (
        _spec(trialTemplate={"spec": {"containers": []}}),
        "spec.trialTemplate.spec.containers",
        "must be a non-empty list of containers (the first is the trainer)",
    ),
    (
        _spec(trialTemplate={"spec": {}}),
        "spec.trialTemplate.spec.containers",
        "must be a non-empty list of containers (the first is the trainer)",
    ),
    (
        _spec(trialTemplate={"metadata": {"labels": {"a": "b"}}}),
        "spec.trialTemplate.spec",
        "is required: a pod spec with containers",
    ),
    (
        _spec(trialTemplate={"spec": "pod"}),
        "spec.trialTemplate.spec",
        "must be an object, got str",
    ),
    # unknown fields, at every level
    (
        _spec(maxTrial=5),
        "spec.maxTrial",
        "unknown field; expected one of: objective, algorithm, parameters, maxTrials, "
        "parallelism, maxFailedTrials, trialResources, results, queueName, trialTemplate",
    ),
    (
        _spec(objective={"metric": "a", "direction": "maximize", "goal": 1}),
        "spec.objective.goal",
        "unknown field; expected one of: metric, direction, target, aggregate, stepKey",
    ),
    (
        _spec(algorithm={"name": "tpe", "trials": 3}),
        "spec.algorithm.trials",
        "unknown field; expected one of: name, seed",
    ),
    (
        _param({"name": "n", "int": {"min": 1, "max": 2}, "type": "int"}),
        "spec.parameters[0].type",
        "unknown field; expected one of: name, int, float, values, categorical",
    ),
    (
        _param({"name": "n", "int": {"min": 1, "max": 2, "maximum": 3}}),
        "spec.parameters[0].int.maximum",
        "unknown field; expected one of: min, max, step, log",
    ),
    (
        _param({"name": "n", "float": {"min": 1, "max": 2, "scale": "log"}}),
        "spec.parameters[0].float.scale",
        "unknown field; expected one of: min, max, step, log",
    ),
    (
        _spec(trialResources={"gpu": 1}),
        "spec.trialResources.gpu",
        "unknown field; expected one of: gpus, gpuResourceName",
    ),
    (
        _spec(results={"pvc": "x"}),
        "spec.results.pvc",
        "unknown field; expected one of: size, storageClassName, accessModes, claimName, retain",
    ),
]


@pytest.mark.parametrize(
    ("doc", "path", "message"),
    ERROR_CASES,
    ids=[f"{p}-{i}" for i, (_, p, _) in enumerate(ERROR_CASES)],
)
def test_one_mistake_gives_one_error_naming_its_field(
    doc: dict[str, Any], path: str, message: str
) -> None:
    assert only_error(doc) == (path, message)


def test_error_text_is_path_colon_message() -> None:
    with pytest.raises(SpecError) as caught:
        parse_experiment(_spec(parallelism=0))
    assert str(caught.value) == "spec.parallelism: must be >= 1, got 0"
    assert isinstance(caught.value, ValueError)


# --- grid ----------------------------------------------------------------------------------


def test_grid_needs_a_step_for_every_float() -> None:
    doc = manifest(STEPS, RATE, algorithm={"name": "grid"})
    assert only_error(doc) == (
        "spec.parameters[1].float",
        "grid search needs a finite set of values: give float.step, or use values: [...]",
    )


def test_grid_accepts_a_float_with_step() -> None:
    dropout = {"name": "dropout", "float": {"min": 0, "max": 0.5, "step": 0.25}}
    assert parse_experiment(manifest(STEPS, dropout, algorithm={"name": "grid"})).max_trials == 15


def test_a_float_without_step_is_fine_for_other_algorithms() -> None:
    assert parse_experiment(manifest(RATE, algorithm={"name": "random"})).max_trials == 20


def test_grid_size_is_bounded() -> None:
    big = [{"name": f"p{i}", "int": {"min": 0, "max": 99}} for i in range(4)]  # 100**4 points
    assert only_error(manifest(*big, algorithm={"name": "grid"})) == (
        "spec.parameters",
        f"the grid has {100**4} points; at most {MAX_GRID_SIZE}",
    )
    assert parse_experiment(manifest(*big)).max_trials == DEFAULT_MAX_TRIALS


# --- every error at once -------------------------------------------------------------------


def test_independent_mistakes_are_all_reported() -> None:
    doc = manifest(
        {"name": "n", "int": {"min": 5, "max": 3}},
        objective={"metric": "accuracy", "direction": "upward"},
        parallelism=0,
    )
    assert errors_of(doc) == [
        ("spec.objective.direction", "must be one of maximize, minimize; got 'upward'"),
        ("spec.parameters[0].int", "min (5) must be less than max (3)"),
        ("spec.parallelism", "must be >= 1, got 0"),
    ]


def test_mistakes_in_many_places_are_all_reported() -> None:
    doc = manifest(
        {"name": "n", "int": {"min": 1, "max": 2, "step": 0}},
        {"name": "o", "categorical": [1]},
        {"name": "n", "values": [1]},
        name="Bad_Name",
        algorithm={"name": "grid", "seed": -3},
        maxTrials="x",
        trialResources={"gpus": -1},
        extra=True,
    )
    doc["kind"] = "Experiment"
    paths = [path for path, _ in errors_of(doc)]
    assert sorted(paths) == sorted(
        [
            "kind",
            "metadata.name",
            "spec.extra",
            "spec.algorithm.seed",
            "spec.parameters[0].int.step",
            "spec.parameters[1].categorical[0]",
            "spec.parameters[2].name",
            "spec.maxTrials",
            "spec.trialResources.gpus",
        ]
    )


def test_missing_required_sections_each_get_one_error() -> None:
    doc = manifest()
    doc["spec"] = {}
    assert errors_of(doc) == [
        ("spec.objective", "is required: {metric: NAME, direction: maximize|minimize}"),
        ("spec.parameters", "must be a non-empty list of parameters, got null"),
        ("spec.trialTemplate", "is required: a pod template with spec.containers"),
    ]


# --- empty objects are errors, not silently dropped (regressions) --------------------------


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        (
            manifest(STEPS, {}),
            [
                ("spec.parameters[1].name", "is required (a string)"),
                (
                    "spec.parameters[1]",
                    "needs exactly one of int, float, values, categorical; found none",
                ),
            ],
        ),
        (
            _spec(objective={}),
            [
                ("spec.objective.metric", "is required (a string)"),
                ("spec.objective.direction", "is required (a string)"),
            ],
        ),
        (
            _spec(trialTemplate={}),
            [("spec.trialTemplate.spec", "is required: a pod spec with containers")],
        ),
        (
            _spec(trialTemplate={"spec": {"containers": [{}]}}),
            [
                ("spec.trialTemplate.spec.containers[0].name", "is required (a string)"),
                ("spec.trialTemplate.spec.containers[0].image", "is required (a string)"),
                (
                    "spec.trialTemplate.spec.containers[0].command",
                    "is required: the trainer's command runs through the HPO launcher, "
                    "which cannot read an image's entrypoint",
                ),
            ],
        ),
    ],
    ids=["parameter", "objective", "template", "container"],
)
def test_empty_objects_are_reported(doc: dict[str, Any], expected: list[tuple[str, str]]) -> None:
    assert errors_of(doc) == expected


# --- the manifest around the spec ----------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["a", "flowers-steps", "x1", "0-start-digit", "a" * MAX_NAME_LENGTH],
)
def test_valid_names(name: str) -> None:
    assert parse_experiment(manifest(name=name)).name == name


@pytest.mark.parametrize(
    "name",
    [
        "Flowers",
        "flowers_steps",
        "-flowers",
        "flowers-",
        "flowers.steps",
        "a" * (MAX_NAME_LENGTH + 1),
    ],
)
def test_invalid_names(name: str) -> None:
    assert only_error(manifest(name=name)) == (
        "metadata.name",
        f"{name!r} must be lower-case letters, digits and '-', start and end with a letter or "
        f"digit, at most {MAX_NAME_LENGTH} characters",
    )


def test_missing_name() -> None:
    doc = manifest()
    del doc["metadata"]["name"]
    assert only_error(doc) == ("metadata.name", "is required (a string)")


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("apiVersion", "hpo.dev/v1", "must be hpo.dev/v1alpha1, got 'hpo.dev/v1'"),
        ("kind", "Experiment", "must be HPOExperiment, got 'Experiment'"),
    ],
)
def test_api_version_and_kind(key: str, value: str, message: str) -> None:
    doc = manifest()
    doc[key] = value
    assert only_error(doc) == (key, message)


def test_missing_spec() -> None:
    doc = manifest()
    del doc["spec"]
    assert only_error(doc) == ("spec", "is required")


@pytest.mark.parametrize("doc", [None, [], "HPOExperiment", 3])
def test_a_manifest_must_be_an_object(doc: object) -> None:
    (path, message), *_ = errors_of(doc)
    assert path == "(manifest)"
    assert message.startswith("must be an object, got ")


def test_parsing_does_not_change_the_manifest() -> None:
    doc = manifest(STEPS, RATE, algorithm={"name": "random"})
    before = copy.deepcopy(doc)
    parse_experiment(doc)
    assert doc == before


def test_spec_is_frozen() -> None:
    spec = parse_experiment(manifest())
    with pytest.raises(AttributeError):
        spec.parallelism = 2  # type: ignore[misc]
