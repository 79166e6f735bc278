"""One contract for every search algorithm, plus what only grid and QMC promise."""

from __future__ import annotations

from dataclasses import replace

import pytest

from conftest import manifest
from hpo_operator.core import search
from hpo_operator.core.space import distributions, point_key
from hpo_operator.core.spec import ALGORITHMS, ExperimentSpec, parse_experiment
from hpo_operator.core.trial import FAILED, RUNNING, SUCCEEDED, Trial

CONTINUOUS = [
    {"name": "x", "float": {"min": -5.0, "max": 5.0}},
    {"name": "y", "float": {"min": 1e-4, "max": 1.0, "log": True}},
]
DISCRETE = [
    {"name": "steps", "int": {"min": 100, "max": 500, "step": 100}},
    {"name": "batch", "values": [16, 32]},
    {"name": "opt", "categorical": ["sgd", "adam"]},
]


def spec_for(
    algorithm: str, parameters: list[dict[str, object]], **extra: object
) -> ExperimentSpec:
    return parse_experiment(
        manifest(algorithm={"name": algorithm, "seed": 11}, parameters=parameters, **extra)
    )


def objective(params: dict[str, object]) -> float:
    """A smooth function with its maximum at x = 1, y = 0.01 (or at steps = 300)."""
    if "steps" in params:
        return -abs(float(params["steps"]) - 300.0)  # type: ignore[arg-type]
    x, y = float(params["x"]), float(params["y"])  # type: ignore[arg-type]
    return -((x - 1.0) ** 2) - (y - 0.01) ** 2


def run_sequence(spec: ExperimentSpec, n: int, finish: bool = True) -> list[Trial]:
    """Ask n times, one trial at a time, rebuilding the study from history each time."""
    history: list[Trial] = []
    for _ in range(n):
        (trial,) = search.suggest(spec, history, 1).trials
        if finish:
            trial = replace(trial, phase=SUCCEEDED, objective=objective(dict(trial.parameters)))
        else:
            trial = replace(trial, phase=RUNNING)
        history.append(trial)
    return history


ASKING = [a for a in ALGORITHMS if a != "grid"]


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_same_seed_and_history_give_the_same_suggestions(algorithm: str) -> None:
    params = DISCRETE if algorithm == "grid" else CONTINUOUS
    spec = spec_for(algorithm, params)
    first = [t.parameters for t in run_sequence(spec, 10)]
    second = [t.parameters for t in run_sequence(spec, 10)]
    assert first == second


@pytest.mark.parametrize("algorithm", ASKING)
def test_another_seed_gives_other_suggestions(algorithm: str) -> None:
    a = run_sequence(spec_for(algorithm, CONTINUOUS), 12)
    other = parse_experiment(
        manifest(algorithm={"name": algorithm, "seed": 12}, parameters=CONTINUOUS)
    )
    b = run_sequence(other, 12)
    assert [t.parameters for t in a] != [t.parameters for t in b]


@pytest.mark.parametrize("algorithm", ASKING)
@pytest.mark.parametrize("finish", [True, False], ids=["finished", "running"])
def test_twenty_rebuilt_asks_give_twenty_distinct_points(algorithm: str, finish: bool) -> None:
    spec = spec_for(algorithm, CONTINUOUS, maxTrials=20)
    history = run_sequence(spec, 20, finish=finish)
    assert len({point_key(spec.parameters, t.parameters) for t in history}) == 20


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_parallel_asks_never_hand_out_the_same_point(algorithm: str) -> None:
    spec = spec_for(algorithm, DISCRETE)
    asked = search.suggest(spec, [], 6).trials
    assert [t.index for t in asked] == list(range(6))
    assert len({point_key(spec.parameters, t.parameters) for t in asked}) == 6


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_suggestions_fit_the_space_and_keep_types(algorithm: str) -> None:
    spec = spec_for(algorithm, DISCRETE)
    dists = distributions(spec.parameters)
    for trial in run_sequence_discrete(spec, 8):
        assert set(trial.parameters) == {"steps", "batch", "opt"}
        assert type(trial.parameters["steps"]) is int
        assert type(trial.parameters["batch"]) is int
        assert isinstance(trial.parameters["opt"], str)
        for name, value in trial.parameters.items():
            assert dists[name]._contains(dists[name].to_internal_repr(value))
        assert trial.name == f"exp-t{trial.index}"


def run_sequence_discrete(spec: ExperimentSpec, n: int) -> list[Trial]:
    history: list[Trial] = []
    for _ in range(n):
        (trial,) = search.suggest(spec, history, 1).trials
        history.append(replace(trial, phase=FAILED))
    return history


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_finite_space_is_reported_exhausted(algorithm: str) -> None:
    spec = spec_for(algorithm, [{"name": "opt", "categorical": ["a", "b", "c"]}])
    history: list[Trial] = []
    asked = 0
    while not search.exhausted(spec, history) and asked < 60:
        result = search.suggest(spec, history, 1)
        history.extend(replace(t, phase=SUCCEEDED, objective=1.0) for t in result.trials)
        asked += 1
    assert search.exhausted(spec, history)
    assert {t.parameters["opt"] for t in history} == {"a", "b", "c"}
    assert search.suggest(spec, history, 2) == search.Suggestions((), exhausted=True)


def test_grid_walks_in_order_last_parameter_fastest() -> None:
    spec = spec_for("grid", DISCRETE[:2])
    got = search.suggest(spec, [], 4)
    assert [dict(t.parameters) for t in got.trials] == [
        {"steps": 100, "batch": 16},
        {"steps": 100, "batch": 32},
        {"steps": 200, "batch": 16},
        {"steps": 200, "batch": 32},
    ]
    assert not got.exhausted


def test_grid_fills_a_gap_left_in_history_and_then_exhausts() -> None:
    spec = spec_for("grid", [{"name": "steps", "int": {"min": 100, "max": 300, "step": 100}}])
    history = [
        Trial(0, "exp-t0", {"steps": 100}, SUCCEEDED, 0.5),
        Trial(1, "exp-t1", {"steps": 300}, FAILED),
    ]
    got = search.suggest(spec, history, 3)
    assert [dict(t.parameters) for t in got.trials] == [{"steps": 200}]
    assert got.trials[0].index == 2
    assert got.exhausted


def test_grid_over_float_steps_gives_clean_values() -> None:
    spec = spec_for("grid", [{"name": "dropout", "float": {"min": 0.0, "max": 0.5, "step": 0.1}}])
    values = [t.parameters["dropout"] for t in search.suggest(spec, [], 10).trials]
    assert values == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]


def test_qmc_continues_its_sequence_after_a_rebuild() -> None:
    spec = spec_for("qmc", CONTINUOUS)
    history = run_sequence(spec, 8)
    # Asking twice from the same history gives the same next point, and it is a new one.
    a = search.suggest(spec, history, 1).trials[0]
    b = search.suggest(spec, history, 1).trials[0]
    assert a.parameters == b.parameters
    assert point_key(spec.parameters, a.parameters) not in {
        point_key(spec.parameters, t.parameters) for t in history
    }


def test_cmaes_learns_across_rebuilds() -> None:
    """The replayed optimizer advances generations and moves toward the optimum."""
    spec = spec_for("cmaes", CONTINUOUS, maxTrials=60)
    history = run_sequence(spec, 60)
    generations = [t.sampler_attrs.get("cma:generation") for t in history]
    assert max(g for g in generations if g is not None) >= 4
    assert not any(k.startswith("cma:optimizer") for t in history for k in t.sampler_attrs)
    early = max(t.objective for t in history[:10])  # type: ignore[type-var]
    late = max(t.objective for t in history[-10:])  # type: ignore[type-var]
    assert late > early


@pytest.mark.parametrize("algorithm", ["tpe", "cmaes"])
def test_model_based_search_beats_its_own_start(algorithm: str) -> None:
    spec = spec_for(algorithm, CONTINUOUS, maxTrials=40)
    history = run_sequence(spec, 40)
    best_first = max(t.objective for t in history[:10])  # type: ignore[type-var]
    best_all = max(t.objective for t in history)  # type: ignore[type-var]
    assert best_all > best_first
    assert best_all > -0.1


def test_a_history_outside_the_space_is_a_clear_error() -> None:
    spec = spec_for("random", CONTINUOUS)
    stray = Trial(0, "exp-t0", {"x": 50.0, "y": 0.5}, SUCCEEDED, 1.0)
    with pytest.raises(ValueError, match=r"exp-t0 has parameters .* cannot change"):
        search.suggest(spec, [stray], 1)
