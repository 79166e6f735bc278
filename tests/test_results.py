"""val_dict_list.json parsing and the compact trial summary (core/results.py)."""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

import pytest

from hpo_operator.core import results
from hpo_operator.core.results import (
    MAX_SUMMARY_BYTES,
    ResultsError,
    parse_records,
    parse_summary,
    read_progress,
    summarize,
    summarize_file,
    summary_json,
)

RESULTS_PY = Path(results.__file__)


def _size(summary: dict[str, object]) -> int:
    return len(summary_json(summary).encode("utf-8"))


# --- parse_records ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "metric", "step_key", "expected"),
    [
        ('[{"steps": 100, "accuracy": 0.81}]', "accuracy", "steps", [(100.0, 0.81)]),
        (
            '[{"steps": 100, "accuracy": 0.5}, {"steps": 200, "accuracy": 1}]',
            "accuracy",
            "steps",
            [(100.0, 0.5), (200.0, 1.0)],
        ),
        (
            '[{"loss": 2.5}, {"loss": 1.5}, {"loss": 0.5}]',
            "loss",
            "steps",
            [(1, 2.5), (2, 1.5), (3, 0.5)],
        ),
        ('[{"epoch": 3, "acc": 0.9}]', "acc", "epoch", [(3.0, 0.9)]),
        ('[{"steps": 1.5, "acc": -2e-3}]', "acc", "steps", [(1.5, -0.002)]),
        ('\ufeff[{"acc": 0.1}]', "acc", "steps", [(1.0, 0.1)]),
        ('[{"acc": 0.1, "extra": {"nested": [1, 2]}}]', "acc", "steps", [(1.0, 0.1)]),
    ],
    ids=["one", "int-value", "no-steps-positions", "custom-step-key", "float-step", "bom", "extra"],
)
def test_parse_records_good(
    text: str, metric: str, step_key: str, expected: list[tuple[float, float]]
) -> None:
    assert parse_records(text, metric, step_key) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "val_dict_list.json is empty"),
        ("  \n", "val_dict_list.json is empty"),
        (
            '[{"steps": 100, "accuracy": 0.8},\n {"steps": 2',
            "val_dict_list.json is not valid JSON: Expecting ',' delimiter at line 2 column 13",
        ),
        ("[" * 100_000, "val_dict_list.json is not valid JSON"),
        (
            '{"accuracy": 0.9}',
            "must be a JSON list of records, one per evaluation, but it is an object",
        ),
        ('"done"', "but it is a string"),
        ("null", "but it is null"),
        ("[]", "val_dict_list.json has no records (an empty list)"),
        ('[{"accuracy": 0.1}, 0.5]', "val_dict_list.json record 1 is a number, not an object"),
        ('[{"accuracy": 0.1}, [0.5]]', "val_dict_list.json record 1 is a list, not an object"),
        (
            '[{"accuracy": 1}, {"accuracy": 1}, {"accuracy": 1}, {"steps": 4, "loss": 0.2}]',
            'val_dict_list.json record 3 has no "accuracy" (keys: loss, steps)',
        ),
        (
            '[{"steps": 1, "val_accuracy": 0.5}]',
            'record 0 has no "accuracy" (keys: steps, val_accuracy; did you mean "val_accuracy"?)',
        ),
        ("[{}]", 'record 0 has no "accuracy" (the record is empty)'),
        (
            json.dumps([{f"k{i:02}": 1 for i in range(15)}]),
            "(keys: k00, k01, k02, k03, k04, k05, k06, k07, k08, k09, ... 5 more)",
        ),
        (
            '[{"accuracy": NaN}]',
            'val_dict_list.json record 0 "accuracy" is NaN; expected a finite number',
        ),
        ('[{"accuracy": Infinity}]', '"accuracy" is Infinity; expected a finite number'),
        ('[{"accuracy": -Infinity}]', '"accuracy" is -Infinity; expected a finite number'),
        ('[{"accuracy": 1' + "0" * 400 + "}]", "expected a finite number"),
        (
            '[{"accuracy": true}]',
            'val_dict_list.json record 0 "accuracy" is a boolean (true), not a number',
        ),
        ('[{"accuracy": "0.9"}]', '"accuracy" is a string ("0.9"), not a number'),
        ('[{"accuracy": null}]', '"accuracy" is null (null), not a number'),
        (
            '[{"accuracy": 0.1}, {"steps": "200", "accuracy": 0.2}]',
            'val_dict_list.json record 1 "steps" is a string ("200"), not a number',
        ),
        ('[{"steps": NaN, "accuracy": 0.2}]', 'record 0 "steps" is NaN; expected a finite number'),
    ],
)
def test_parse_records_bad_says_what_is_wrong(text: str, reason: str) -> None:
    with pytest.raises(ResultsError) as caught:
        parse_records(text, "accuracy")
    assert reason in caught.value.reason
    assert caught.value.reason == str(caught.value)


def test_long_values_are_shortened_in_reasons() -> None:
    with pytest.raises(ResultsError) as caught:
        parse_records(json.dumps([{"accuracy": "x" * 10_000}]), "accuracy")
    assert len(caught.value.reason) < 200


def test_read_progress_tolerates_half_written_files() -> None:
    full = json.dumps([{"steps": 100, "accuracy": 0.5}, {"steps": 200, "accuracy": 0.6}])
    assert read_progress(full, "accuracy", "steps") == [(100.0, 0.5), (200.0, 0.6)]
    for cut in range(len(full) - 1):
        assert read_progress(full[:cut], "accuracy", "steps") in (None, [(100.0, 0.5)])
    assert read_progress(None, "accuracy", "steps") is None
    assert read_progress("[]", "accuracy", "steps") is None


# --- summarize -------------------------------------------------------------------------------

POINTS = [(100.0, 0.5), (200.0, 0.9), (300.0, 0.7), (400.0, 0.8)]


@pytest.mark.parametrize(
    ("direction", "aggregate", "objective", "step"),
    [
        ("maximize", "best", 0.9, 200),
        ("minimize", "best", 0.5, 100),
        ("maximize", "last", 0.8, 400),
        ("minimize", "last", 0.8, 400),
    ],
)
def test_objective_follows_direction_and_aggregate(
    direction: str, aggregate: str, objective: float, step: int
) -> None:
    summary = summarize(POINTS, metric="acc", direction=direction, aggregate=aggregate)
    assert (summary["objective"], summary["step"]) == (objective, step)
    assert type(summary["step"]) is int
    best = {"maximize": {"step": 200, "value": 0.9}, "minimize": {"step": 100, "value": 0.5}}
    assert summary["best"] == best[direction]
    assert summary["last"] == {"step": 400, "value": 0.8}


def test_summary_shape() -> None:
    summary = summarize(POINTS, metric="acc", direction="maximize")
    assert summary == {
        "hpo": 1,
        "ok": True,
        "exitCode": 0,
        "reason": None,
        "metric": "acc",
        "records": 4,
        "objective": 0.9,
        "step": 200,
        "best": {"step": 200, "value": 0.9},
        "last": {"step": 400, "value": 0.8},
        "curve": [[100, 0.5], [200, 0.9], [300, 0.7], [400, 0.8]],
    }
    assert summary_json(summary) == json.dumps(summary, separators=(",", ":"))


def test_ties_pick_the_earliest_best_point() -> None:
    summary = summarize([(1.0, 0.5), (2.0, 0.9), (3.0, 0.9)], metric="a", direction="maximize")
    assert summary["step"] == 2


def test_fractional_and_huge_steps_stay_floats() -> None:
    summary = summarize([(0.5, 1.0), (1e300, 2.0)], metric="a", direction="maximize")
    assert summary["curve"] == [[0.5, 1.0], [1e300, 2.0]]


@pytest.mark.parametrize(
    ("exit_code", "reason", "points", "ok", "expected_reason"),
    [
        (0, None, POINTS, True, None),
        (3, None, POINTS, False, "trainer exited with code 3"),
        (-15, None, POINTS, False, "trainer was killed by signal SIGTERM (exit code 143)"),
        (0, "boom", POINTS, False, "boom"),
        (0, None, [], False, "val_dict_list.json has no records"),
    ],
)
def test_ok_needs_exit_zero_no_reason_and_points(
    exit_code: int,
    reason: str | None,
    points: list[tuple[float, float]],
    ok: bool,
    expected_reason: str | None,
) -> None:
    summary = summarize(
        points, metric="acc", direction="maximize", exit_code=exit_code, reason=reason
    )
    assert summary["ok"] is ok
    assert summary["reason"] == expected_reason


def test_empty_summary_has_no_objective() -> None:
    summary = summarize([], metric="acc", direction="maximize", exit_code=2, reason="bad config")
    assert summary["objective"] is None and summary["step"] is None
    assert summary["best"] is None and summary["last"] is None
    assert summary["curve"] == [] and summary["records"] == 0
    assert summary["exitCode"] == 2


@pytest.mark.parametrize("bad", [{"direction": "up"}, {"aggregate": "mean"}])
def test_bad_direction_or_aggregate(bad: dict[str, str]) -> None:
    kwargs = {"metric": "acc", "direction": "maximize", **bad}
    with pytest.raises(ResultsError, match="must be one of"):
        summarize(POINTS, **kwargs)


@pytest.mark.parametrize("best_at", [0, 1, 499, 500, 998, 999])
@pytest.mark.parametrize("max_points", [3, 10, 50])
def test_downsampling_keeps_first_last_and_best(best_at: int, max_points: int) -> None:
    points = [(float(i * 10), 0.1) for i in range(1000)]
    points[best_at] = (points[best_at][0], 0.9)
    summary = summarize(points, metric="acc", direction="maximize", max_points=max_points)
    curve = summary["curve"]
    assert len(curve) <= max_points
    assert curve[0] == [0, 0.1 if best_at else 0.9]
    assert curve[-1][0] == 9990
    assert [best_at * 10, 0.9] in curve
    assert [step for step, _ in curve] == sorted({step for step, _ in curve})
    assert summary["records"] == 1000


def test_downsampling_is_evenly_spaced() -> None:
    points = [(float(i), float(i)) for i in range(101)]
    summary = summarize(points, metric="x", direction="minimize", max_points=6)
    assert [step for step, _ in summary["curve"]] == [0, 20, 40, 60, 80, 100]
    summary = summarize(points, metric="x", direction="maximize", max_points=11)
    assert [step for step, _ in summary["curve"]] == list(range(0, 101, 10))


def test_short_curves_are_kept_whole() -> None:
    summary = summarize(POINTS, metric="acc", direction="maximize", max_points=4)
    assert len(summary["curve"]) == 4


# --- the 4 KiB bound -------------------------------------------------------------------------


def _ugly_points(count: int) -> list[tuple[float, float]]:
    """Steps and values whose JSON is as long as a float's can be."""
    return [(1.2345678901234567e-300 * (i + 1), -1.2345678901234567e-300 * i) for i in range(count)]


@pytest.mark.parametrize("count", [1, 50, 51, 1000, 100_000])
@pytest.mark.parametrize("reason", [None, "x" * 10_000, "é\u2028\x00" * 5000])
@pytest.mark.parametrize("metric", ["accuracy", "m" * 500, "\U0001f600" * 500])
def test_summary_never_exceeds_4_kib(count: int, reason: str | None, metric: str) -> None:
    points = _ugly_points(count)
    summary = summarize(
        points, metric=metric, direction="minimize", exit_code=-9, reason=reason, max_points=1000
    )
    assert _size(summary) <= MAX_SUMMARY_BYTES
    assert summary["records"] == count
    assert len(summary["curve"]) >= min(count, 3)
    best = summary["best"]
    assert [best["step"], best["value"]] in summary["curve"]
    assert summary["curve"][0] == list(points[0]) and summary["curve"][-1] == list(points[-1])
    assert summary["reason"], "a failed trial always says why"
    parsed = parse_summary(summary_json(summary))
    assert parsed.records == count


def test_truncation_only_when_needed() -> None:
    reason = "r" * 2000
    summary = summarize(POINTS, metric="m" * 500, direction="maximize", reason=reason)
    assert summary["reason"] == reason and summary["metric"] == "m" * 500
    summary = summarize(POINTS, metric="m" * 500, direction="maximize", reason=reason * 5)
    assert summary["reason"].endswith("...") and len(summary["reason"]) < 2000
    assert summary["reason"].startswith("rrrr")
    assert summary["metric"].endswith("...")
    assert len(summary["curve"]) == 4, "the curve is kept; the texts give way"


def test_curve_shrinks_before_exceeding_the_bound() -> None:
    summary = summarize(_ugly_points(10_000), metric="acc", direction="maximize", max_points=500)
    assert _size(summary) <= MAX_SUMMARY_BYTES
    assert 30 <= len(summary["curve"]) < 500
    assert summary["metric"] == "acc"


# --- summarize_file --------------------------------------------------------------------------

GOOD = json.dumps([{"steps": 100, "accuracy": 0.5}, {"steps": 200, "accuracy": 0.7}])
KW = {"metric": "accuracy", "direction": "maximize", "aggregate": "best", "step_key": "steps"}


def test_summarize_file_success() -> None:
    summary = summarize_file(GOOD, exit_code=0, **KW)
    assert summary["ok"] is True and summary["objective"] == 0.7 and summary["step"] == 200


def test_summarize_file_missing() -> None:
    summary = summarize_file(None, exit_code=0, **KW)
    assert summary["ok"] is False
    assert summary["reason"] == (
        "no results file: the trainer did not write $RESULT_DIR/val_dict_list.json"
    )
    assert summary["curve"] == []


def test_summarize_file_invalid_keeps_last_good() -> None:
    last_good = [(100.0, 0.5)]
    summary = summarize_file(GOOD[:20], exit_code=0, last_good=last_good, **KW)
    assert summary["ok"] is False
    assert summary["reason"].startswith("val_dict_list.json is not valid JSON")
    assert summary["curve"] == [[100, 0.5]] and summary["objective"] == 0.5


def test_summarize_file_missing_keeps_last_good() -> None:
    summary = summarize_file(None, exit_code=0, last_good=[(100.0, 0.5)], **KW)
    assert summary["reason"].startswith("no results file") and summary["records"] == 1


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (3, "trainer exited with code 3"),
        (-15, "trainer was killed by signal SIGTERM (exit code 143)"),
        (137, "trainer was killed by signal SIGKILL (exit code 137)"),
        (255, "trainer exited with code 255"),
    ],
)
def test_summarize_file_failed_exit_keeps_valid_points(code: int, reason: str) -> None:
    summary = summarize_file(GOOD, exit_code=code, **KW)
    assert summary["ok"] is False and summary["reason"] == reason
    assert summary["curve"] == [[100, 0.5], [200, 0.7]]
    assert summary["exitCode"] == (143 if code == -15 else code)


def test_summarize_file_failed_exit_and_bad_file_gives_both_reasons() -> None:
    summary = summarize_file("[]", exit_code=1, last_good=[(1.0, 0.2)], **KW)
    assert summary["reason"] == (
        "trainer exited with code 1; val_dict_list.json has no records (an empty list)"
    )
    assert summary["curve"] == [[1, 0.2]]


# --- parse_summary ---------------------------------------------------------------------------


def test_parse_summary_round_trip() -> None:
    summary = summarize(POINTS, metric="acc", direction="maximize", exit_code=0)
    parsed = parse_summary(summary_json(summary))
    assert parsed.ok is True and parsed.exit_code == 0 and parsed.reason is None
    assert parsed.objective == 0.9 and parsed.step == 200.0 and parsed.records == 4
    assert parsed.curve == tuple(POINTS)
    failed = parse_summary(
        summary_json(summarize([], metric="a", direction="maximize", exit_code=9))
    )
    assert failed.ok is False and failed.exit_code == 9 and failed.objective is None
    assert failed.reason == "trainer exited with code 9"


def _mutated(**changes: object) -> str:
    summary = summarize(POINTS, metric="acc", direction="maximize")
    summary.update(changes)
    return json.dumps(summary)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "trial summary is not valid JSON: Expecting value at line 1 column 1"),
        (
            "Traceback (most recent call last):",
            "not valid JSON: Expecting value at line 1 column 1",
        ),
        ('{"hpo": 1, "ok": tr', "trial summary is not valid JSON"),
        ("[1, 2]", 'trial summary must be a JSON object with "hpo": 1, got [1, 2]'),
        ('{"ok": true}', 'trial summary must be a JSON object with "hpo": 1'),
        ('{"hpo": 2}', 'with "hpo": 1, got {"hpo": 2}'),
        (_mutated(ok="yes"), 'trial summary "ok" must be bool, got "yes"'),
        (_mutated(exitCode=True), 'trial summary "exitCode" must be int, got true'),
        (_mutated(exitCode=1.5), '"exitCode" must be int, got 1.5'),
        (_mutated(reason=3), '"reason" must be str or null, got 3'),
        (_mutated(records=-1), '"records" must be >= 0, got -1'),
        (_mutated(objective="0.9"), '"objective" is a string ("0.9"), not a number'),
        (_mutated(objective=None), 'trial summary says "ok" but has no "objective"'),
        (_mutated(curve={}), 'trial summary "curve" must be a list, got {}'),
        (_mutated(curve=[[1, 2, 3]]), '"curve"[0] must be a [step, value] pair, got [1, 2, 3]'),
        (_mutated(curve=[[1, 2], [2, "x"]]), '"curve"[1] value is a string ("x"), not a number'),
        (_mutated(curve=[[None, 2]]), '"curve"[0] step is null (null), not a number'),
        ("[" * 100_000, "trial summary is not valid JSON"),
    ],
)
def test_parse_summary_rejects_garbage(text: str, reason: str) -> None:
    with pytest.raises(ResultsError) as caught:
        parse_summary(text)
    assert reason in caught.value.reason


def test_parse_summary_missing_key() -> None:
    data = summarize(POINTS, metric="acc", direction="maximize")
    del data["exitCode"]
    with pytest.raises(ResultsError, match='"exitCode" must be int, got null'):
        parse_summary(json.dumps(data))


# --- bundling constraints --------------------------------------------------------------------


def test_results_is_stdlib_only_and_python38_syntax() -> None:
    source = RESULTS_PY.read_text()
    tree = ast.parse(source, feature_version=(3, 8))
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "no relative imports: the module is bundled"
            imported.add((node.module or "").split(".")[0])
    assert imported <= set(sys.stdlib_module_names), imported - set(sys.stdlib_module_names)
    assert source.splitlines().count("from __future__ import annotations") == 1


def test_summarize_takes_integer_points() -> None:
    """Points built by hand (not parsed) may hold ints; Python < 3.12 ints lack is_integer."""
    summary = results.summarize([(100, 1), (200, 2)], metric="m", direction="maximize")
    assert (summary["step"], summary["objective"], summary["curve"]) == (
        200,
        2,
        [[100, 1], [200, 2]],
    )
