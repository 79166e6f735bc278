"""The stop rules and the status document, from trial rows alone."""

from __future__ import annotations

import json

import pytest

from conftest import manifest
from hpo_operator.core.plan import (
    INTERRUPTED,
    MAX_FAILED_REACHED,
    MAX_TRIALS_REACHED,
    NO_TRIAL_SUCCEEDED,
    SPACE_EXHAUSTED,
    TARGET_REACHED,
    decide,
)
from hpo_operator.core.spec import parse_experiment
from hpo_operator.core.status import MAX_RESULT_ROWS, build_status
from hpo_operator.core.trial import FAILED, PENDING, RUNNING, STOPPED, SUCCEEDED, Trial

NOW = "2026-12-04T20:00:00Z"
LATER = "2026-12-04T21:00:00Z"


def spec(**fields: object):  # type: ignore[no-untyped-def]
    base = {"maxTrials": 6, "parallelism": 2, "maxFailedTrials": 2}
    return parse_experiment(manifest(**{**base, **fields}))


def row(index: int, phase: str, objective: float | None = None) -> Trial:
    return Trial(index, f"exp-t{index}", {"steps": 100 * (index + 1)}, phase, objective)


@pytest.mark.parametrize(
    ("trials", "exhausted", "phase", "reason", "create", "stop"),
    [
        ([], False, RUNNING, "TrialsRunning", 2, ()),
        ([row(0, RUNNING)], False, RUNNING, "TrialsRunning", 1, ()),
        ([row(0, SUCCEEDED, 0.5), row(1, RUNNING)], False, RUNNING, "TrialsRunning", 1, ()),
        ([row(i, SUCCEEDED, 0.1 * i) for i in range(6)], False, SUCCEEDED,
         MAX_TRIALS_REACHED, 0, ()),
        ([row(0, SUCCEEDED, 0.5)], True, SUCCEEDED, SPACE_EXHAUSTED, 0, ()),
        ([row(0, SUCCEEDED, 0.5), row(1, PENDING)], True, RUNNING, "TrialsRunning", 0, ()),
        ([row(0, FAILED), row(1, FAILED), row(2, RUNNING)], False, FAILED,
         MAX_FAILED_REACHED, 0, ("exp-t2",)),
        ([row(0, FAILED)], True, FAILED, NO_TRIAL_SUCCEEDED, 0, ()),
    ],
)  # fmt: skip
def test_decide(
    trials: list[Trial],
    exhausted: bool,
    phase: str,
    reason: str,
    create: int,
    stop: tuple[str, ...],
) -> None:
    d = decide(spec(), trials, exhausted)
    assert (d.phase, d.reason, d.create, d.stop) == (phase, reason, create, stop)


def test_target_reached_stops_running_trials() -> None:
    s = spec(objective={"metric": "accuracy", "direction": "maximize", "target": 0.9})
    d = decide(s, [row(0, SUCCEEDED, 0.95), row(1, RUNNING)], False)
    assert (d.phase, d.reason, d.stop) == (SUCCEEDED, TARGET_REACHED, ("exp-t1",))
    assert "0.95" in d.message and "0.9" in d.message


def test_minimize_target_and_best() -> None:
    s = spec(objective={"metric": "loss", "direction": "minimize", "target": 0.2})
    trials = [row(0, SUCCEEDED, 0.5), row(1, SUCCEEDED, 0.3), row(2, RUNNING)]
    assert decide(s, trials, False).phase == RUNNING
    status = build_status(s, trials, decide(s, trials, False), now=NOW)
    assert status["bestTrial"]["name"] == "exp-t1"
    trials.append(row(3, SUCCEEDED, 0.1))
    assert decide(s, trials, False).reason == TARGET_REACHED


def test_interrupted_stops_everything() -> None:
    d = decide(spec(), [row(0, RUNNING), row(1, PENDING)], False, interrupted=True)
    assert (d.phase, d.reason, d.stop) == (STOPPED, INTERRUPTED, ("exp-t0", "exp-t1"))


def test_lowered_parallelism_creates_nothing_until_trials_finish() -> None:
    running = [row(i, RUNNING) for i in range(3)]
    assert decide(spec(parallelism=1), running, False).create == 0


def test_status_document_fields() -> None:
    s = spec()
    trials = [
        Trial(0, "exp-t0", {"steps": 100}, SUCCEEDED, 0.7, 100, ((50, 0.6), (100, 0.7))),
        Trial(1, "exp-t1", {"steps": 200}, SUCCEEDED, 0.8, 150, ((100, 0.75), (150, 0.8))),
        Trial(2, "exp-t2", {"steps": 300}, FAILED, reason="trainer exited with code 1"),
        Trial(3, "exp-t3", {"steps": 400}, RUNNING),
    ]
    d = decide(s, trials, False)
    status = build_status(s, trials, d, now=NOW, observed_generation=3)
    assert status["phase"] == RUNNING
    assert status["observedGeneration"] == 3
    assert status["progress"] == "3/6"
    assert status["trials"] == {
        "total": 4, "pending": 0, "running": 1, "succeeded": 2, "failed": 1, "stopped": 0,
    }  # fmt: skip
    assert status["bestTrial"] == {
        "name": "exp-t1", "parameters": {"steps": 200}, "objective": 0.8, "step": 150,
    }  # fmt: skip
    assert [r["name"] for r in status["results"]] == ["exp-t0", "exp-t1", "exp-t2", "exp-t3"]
    assert status["results"][0]["curve"] == [[50, 0.6], [100, 0.7]]
    assert status["results"][2]["reason"] == "trainer exited with code 1"
    assert status["resultsOmitted"] == 0
    types = {c["type"]: c["status"] for c in status["conditions"]}
    assert types == {"Running": "True", "Succeeded": "False", "Failed": "False"}
    json.dumps(status)  # the document is plain JSON


def test_conditions_keep_their_transition_time_until_they_change() -> None:
    s = spec()
    running = [row(0, RUNNING)]
    first = build_status(s, running, decide(s, running, False), now=NOW)
    again = build_status(s, running, decide(s, running, False), now=LATER, previous=first)
    assert {c["lastTransitionTime"] for c in again["conditions"]} == {NOW}
    done = [row(0, SUCCEEDED, 0.9)]
    final = build_status(s, done, decide(s, done, True), now=LATER, previous=again)
    times = {c["type"]: c["lastTransitionTime"] for c in final["conditions"]}
    assert times == {"Running": LATER, "Succeeded": LATER, "Failed": NOW}


def test_status_stays_bounded_at_ten_thousand_trials() -> None:
    s = spec(maxTrials=10_000, parallelism=40)
    curve = tuple((float(step), 0.5 + step / 1e5) for step in range(0, 5000, 100))
    trials = [
        Trial(
            i,
            f"exp-t{i}",
            {"learning_rate": 0.000123456789 * (i + 1), "steps": i, "optimizer": "x" * 40},
            FAILED if i % 7 == 0 else RUNNING if i >= 9_960 else SUCCEEDED,
            None if i % 7 == 0 or i >= 9_960 else (i * 7919 % 10_000) / 10_000,
            4900.0,
            curve,
            "trainer exited with code 1: " + "x" * 2000 if i % 7 == 0 else None,
        )
        for i in range(10_000)
    ]
    status = build_status(s, trials, decide(s, trials, False), now=NOW)
    size = len(json.dumps(status))
    assert size < 256 * 1024, size
    assert status["trials"]["total"] == 10_000
    assert len(status["results"]) <= MAX_RESULT_ROWS
    assert status["resultsOmitted"] == 10_000 - len(status["results"])
    kept = {r["name"] for r in status["results"]}
    assert status["bestTrial"]["name"] in kept
    assert {f"exp-t{i}" for i in range(9_960, 10_000)} <= kept  # every running trial
    assert "exp-t9959" in kept  # and the most recent finished ones
    assert all(len(r.get("curve", [])) <= 20 for r in status["results"])


def test_a_changed_space_is_refused_but_running_trials_go_on() -> None:
    from hpo_operator.core.plan import SPACE_CHANGE_REFUSED, refuse_space_change
    from hpo_operator.core.space import fits

    s = spec()
    assert fits(s.parameters, {"learning_rate": 0.01, "steps": 300, "optimizer": "adam"})
    assert not fits(s.parameters, {"learning_rate": 5.0, "steps": 300, "optimizer": "adam"})
    assert not fits(s.parameters, {"learning_rate": 0.01, "steps": 300})
    running = refuse_space_change([row(0, RUNNING)], ["exp-t0"])
    assert (running.phase, running.reason, running.create) == (RUNNING, SPACE_CHANGE_REFUSED, 0)
    assert refuse_space_change([row(0, SUCCEEDED, 0.5)], ["exp-t0"]).phase == FAILED


def test_a_refused_creation_waits_visibly_and_names_the_refusal() -> None:
    from hpo_operator.core.plan import CREATE_REFUSED, MAX_REFUSAL_CHARS, refuse_create

    refusal = 'creating Job exp-t1 was refused (403): exceeded quota: "no-jobs"'
    waiting = refuse_create([row(0, SUCCEEDED, 0.5)], refusal)
    assert (waiting.phase, waiting.reason, waiting.create) == (PENDING, CREATE_REFUSED, 0)
    assert waiting.message.startswith(refusal)
    assert refuse_create([row(0, RUNNING)], refusal).phase == RUNNING
    long = refuse_create([], "x" * 10_000).message
    assert long.startswith("x" * MAX_REFUSAL_CHARS) and len(long) < MAX_REFUSAL_CHARS + 40
    status = build_status(spec(), [row(0, SUCCEEDED, 0.5)], waiting, now=NOW)
    assert (status["phase"], status["reason"]) == (PENDING, CREATE_REFUSED)
    assert all(c["reason"] == CREATE_REFUSED for c in status["conditions"])
    assert not any(c["status"] == "True" for c in status["conditions"])


def test_the_first_refusal_is_told_once_as_a_warning_event() -> None:
    from hpo_operator.reconcile import transitions

    refused = {"phase": "Pending", "reason": "TrialCreateRefused", "message": "quota"}
    assert transitions({"phase": "Running", "reason": "TrialsRunning"}, refused) == [
        ("Warning", "TrialCreateRefused", "quota")
    ]
    assert transitions(refused, refused) == []


@pytest.mark.parametrize(
    ("algorithm", "max_trials", "planned"),
    [("grid", 20, 4), ("grid", 3, 3), ("grid", None, 4), ("random", 20, 20), ("tpe", 5, 5)],
)
def test_progress_counts_out_of_the_trials_that_will_run(
    algorithm: str, max_trials: int | None, planned: int
) -> None:
    from hpo_operator.core.plan import planned_trials

    finite = [{"name": "x", "values": [0.1, 0.5, 0.9, 0.2]}]
    s = spec(algorithm={"name": algorithm}, parameters=finite, maxTrials=max_trials)
    assert planned_trials(s) == planned
    done = [row(i, SUCCEEDED, 0.1) for i in range(min(planned, 4))]
    status = build_status(s, done, decide(s, done, len(done) == 4), now=NOW)
    assert status["progress"] == f"{len(done)}/{planned}"
