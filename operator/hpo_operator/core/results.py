"""A trial's results: `val_dict_list.json` in, the compact trial summary (<= 4 KiB) out.

Pure and standard-library only: this module is bundled into the single-file launcher, which runs
inside the trainer's image on whatever Python 3.8+ is there. Annotations only use new syntax
(they are strings under `from __future__ import annotations`); nothing else may.
"""

from __future__ import annotations

import difflib
import json
import math
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

RESULTS_FILE = "val_dict_list.json"
MAX_SUMMARY_BYTES = 4096  # Kubernetes' limit for one container's termination message
SUMMARY_VERSION = 1
DIRECTIONS = ("maximize", "minimize")
AGGREGATES = ("best", "last")
MISSING_FILE_REASON = f"no results file: the trainer did not write $RESULT_DIR/{RESULTS_FILE}"
_METRIC_BYTES = 128  # the metric name's share of the summary when it must shrink
_REASON_BYTES = 1024  # the reason's share of the summary when it must shrink
_MAX_EXACT_INT = 2**53  # whole-number steps up to here are emitted as JSON integers
_MAX_KEYS_SHOWN = 10


class ResultsError(ValueError):
    """Results or a summary that cannot be used; `reason` says what is wrong, for the user."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class TrialSummary:
    """A trial summary as read back from a file or a Kubernetes termination message."""

    ok: bool
    exit_code: int
    reason: str | None
    objective: float | None
    step: float | None
    records: int
    curve: tuple[tuple[float, float], ...]


# --- val_dict_list.json ----------------------------------------------------------------------


def parse_records(text: str, metric: str, step_key: str = "steps") -> list[tuple[float, float]]:
    """(step, value) for each record of `val_dict_list.json`; ResultsError says what is wrong.

    The step is the record's `step_key` if present, else its 1-based position in the list.
    Records are named by their 0-based index in the list, as `jq '.[3]'` would.
    """
    records = _load_list(text)
    return [_record_point(i, rec, metric, step_key) for i, rec in enumerate(records)]


def read_progress(
    text: str | None, metric: str, step_key: str = "steps"
) -> list[tuple[float, float]] | None:
    """The points so far while the trainer runs, or None when the file is missing, half-written
    or not (yet) usable."""
    if text is None:
        return None
    try:
        return parse_records(text, metric, step_key)
    except ResultsError:
        return None


def _load_list(text: str) -> list[Any]:
    if text.startswith("\ufeff"):  # a byte-order mark, as some Windows tools write
        text = text[1:]
    if not text.strip():
        raise ResultsError(f"{RESULTS_FILE} is empty")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        raise ResultsError(f"{RESULTS_FILE} is not valid JSON: {exc.msg} at {where}") from None
    except RecursionError:
        raise ResultsError(f"{RESULTS_FILE} is not valid JSON: nested too deeply") from None
    if not isinstance(data, list):
        raise ResultsError(
            f"{RESULTS_FILE} must be a JSON list of records, one per evaluation, "
            f"but it is {json_kind(data)}"
        )
    if not data:
        raise ResultsError(f"{RESULTS_FILE} has no records (an empty list)")
    return data


def _record_point(index: int, record: Any, metric: str, step_key: str) -> tuple[float, float]:
    where = f"{RESULTS_FILE} record {index}"
    if not isinstance(record, dict):
        raise ResultsError(f"{where} is {json_kind(record)}, not an object")
    if metric not in record:
        raise ResultsError(f'{where} has no "{metric}" ({_keys_hint(record, metric)})')
    value = _number(record[metric], f'{where} "{metric}"')
    step = _number(record[step_key], f'{where} "{step_key}"') if step_key in record else index + 1
    return float(step), value


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ResultsError(f"{where} is {json_kind(value)} ({_short_json(value)}), not a number")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise ResultsError(f"{where} is {_short_json(value)}; expected a finite number")
    return number


def json_kind(value: Any) -> str:
    """What a parsed JSON value is, for messages: "an object", "a list", "a string", ..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "a list" if isinstance(value, list) else "an object"


def _short_json(value: Any, limit: int = 40) -> str:
    text = json.dumps(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _keys_hint(record: dict[str, Any], metric: str) -> str:
    keys = sorted(str(key) for key in record)
    if not keys:
        return "the record is empty"
    shown = ", ".join(keys[:_MAX_KEYS_SHOWN])
    if len(keys) > _MAX_KEYS_SHOWN:
        shown += f", ... {len(keys) - _MAX_KEYS_SHOWN} more"
    close = difflib.get_close_matches(metric, keys, n=1)
    return f'keys: {shown}; did you mean "{close[0]}"?' if close else f"keys: {shown}"


# --- the summary -----------------------------------------------------------------------------


def summarize(
    points: Sequence[tuple[float, float]],
    *,
    metric: str,
    direction: str,
    aggregate: str = "best",
    exit_code: int = 0,
    reason: str | None = None,
    max_points: int = 50,
) -> dict[str, Any]:
    """The compact trial summary; its compact JSON is always <= MAX_SUMMARY_BYTES.

    `objective`/`step` are the best point (per `direction`) for aggregate "best", the last point
    for "last". The curve keeps at most `max_points` points (never fewer than first, last and
    best), evenly spaced; it shrinks further, and `reason`/`metric` are truncated, only when the
    summary would not fit otherwise.
    """
    _check_choice("direction", direction, DIRECTIONS)
    _check_choice("aggregate", aggregate, AGGREGATES)
    exit_code = normalize_exit_code(exit_code)
    ok = exit_code == 0 and reason is None and bool(points)
    if not ok and reason is None:
        reason = _default_reason(exit_code)
    best = _best_index(points, direction) if points else None
    chosen = best if aggregate == "best" else len(points) - 1 if points else None
    summary = _summary(points, metric, ok, exit_code, reason, best, chosen, max_points)
    return _fit(summary, points, best, max_points)


def summary_json(summary: dict[str, Any]) -> str:
    """The summary as compact JSON: what goes to the termination message."""
    return json.dumps(summary, separators=(",", ":"), allow_nan=False)


def normalize_exit_code(code: int) -> int:
    """A child's return code as a shell reports it: killed by signal N -> 128 + N."""
    return 128 - code if code < 0 else code


def exit_reason(code: int) -> str:
    """What a non-zero exit code means, for the user."""
    code = normalize_exit_code(code)
    if 128 < code < 128 + 65:
        try:
            name = signal.Signals(code - 128).name
        except ValueError:
            name = f"signal {code - 128}"
        return f"trainer was killed by signal {name} (exit code {code})"
    return f"trainer exited with code {code}"


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ResultsError(f"{name} must be one of {', '.join(choices)}, not {value!r}")


def _default_reason(exit_code: int) -> str:
    return exit_reason(exit_code) if exit_code != 0 else f"{RESULTS_FILE} has no records"


def _best_index(points: Sequence[tuple[float, float]], direction: str) -> int:
    values = [value for _, value in points]
    best = max(values) if direction == "maximize" else min(values)
    return values.index(best)  # the earliest point that reached it


def _summary(
    points: Sequence[tuple[float, float]],
    metric: str,
    ok: bool,
    exit_code: int,
    reason: str | None,
    best: int | None,
    chosen: int | None,
    max_points: int,
) -> dict[str, Any]:
    objective = points[chosen] if chosen is not None else None
    return {
        "hpo": SUMMARY_VERSION,
        "ok": ok,
        "exitCode": exit_code,
        "reason": reason,
        "metric": metric,
        "records": len(points),
        "objective": objective[1] if objective else None,
        "step": step_out(objective[0]) if objective else None,
        "best": _point_obj(points[best]) if best is not None else None,
        "last": _point_obj(points[-1]) if points else None,
        "curve": _curve(points, best, max_points),
    }


def step_out(step: float) -> float | int:
    """A step as JSON writes it: a whole number below 2**53 as an int, else the float."""
    step = float(step)  # points may hold ints; int.is_integer exists only from 3.12
    return int(step) if step.is_integer() and abs(step) < _MAX_EXACT_INT else step


def _point_obj(point: tuple[float, float]) -> dict[str, float | int]:
    return {"step": step_out(point[0]), "value": point[1]}


def _curve(
    points: Sequence[tuple[float, float]], best: int | None, max_points: int
) -> list[list[float | int]]:
    keep = {0, len(points) - 1} if points else set()
    if best is not None:
        keep.add(best)
    indices = downsample_indices(len(points), keep, max_points)
    return [[step_out(points[i][0]), points[i][1]] for i in indices]


def downsample_indices(count: int, keep: set[int], limit: int) -> list[int]:
    """Sorted indices of at most max(limit, len(keep)) of `count` items: all of `keep`, the
    others evenly spaced between them."""
    if count <= limit:
        return list(range(count))
    slots = max(0, limit - len(keep))
    chosen = set(keep)
    chosen.update(round(i * (count - 1) / (slots + 1)) for i in range(1, slots + 1))
    return sorted(chosen)


def _fit(
    summary: dict[str, Any], points: Sequence[tuple[float, float]], best: int | None, limit: int
) -> dict[str, Any]:
    """Shrink the summary until its JSON fits MAX_SUMMARY_BYTES: texts first, then the curve."""
    if len(summary_json(summary)) <= MAX_SUMMARY_BYTES:
        return summary
    summary["metric"] = _truncate(summary["metric"], _METRIC_BYTES)
    if summary["reason"] is not None:
        summary["reason"] = _truncate(summary["reason"], _REASON_BYTES)
    while len(summary_json(summary)) > MAX_SUMMARY_BYTES and limit > 3:
        limit = max(3, limit * 3 // 4)
        summary["curve"] = _curve(points, best, limit)
    if len(summary_json(summary)) > MAX_SUMMARY_BYTES:  # cannot happen with finite floats
        summary["curve"] = []
    return summary


def _truncate(text: str, max_bytes: int) -> str:
    """`text`, cut with a "..." so that its JSON string encoding takes at most max_bytes."""
    if len(json.dumps(text)) <= max_bytes:
        return text
    low, high = 0, len(text)  # the longest prefix that fits, by bisection
    while low < high:
        mid = (low + high + 1) // 2
        if len(json.dumps(text[:mid] + "...")) <= max_bytes:
            low = mid
        else:
            high = mid - 1
    return text[:low] + "..."


def summarize_file(
    text: str | None,
    *,
    metric: str,
    direction: str,
    aggregate: str = "best",
    step_key: str = "steps",
    exit_code: int,
    last_good: Sequence[tuple[float, float]] | None = None,
) -> dict[str, Any]:
    """The summary once the trainer has exited, from the final `val_dict_list.json` (None when
    the file is missing) and `last_good`, the last points read while it ran.

    A missing or unusable file keeps `last_good` as the curve, so nothing seen is lost; a
    non-zero exit code fails the trial but keeps whatever valid points exist.
    """
    points, file_reason = _final_points(text, metric, step_key, last_good)
    reasons = [exit_reason(exit_code)] if exit_code != 0 else []
    if file_reason is not None:
        reasons.append(file_reason)
    return summarize(
        points,
        metric=metric,
        direction=direction,
        aggregate=aggregate,
        exit_code=exit_code,
        reason="; ".join(reasons) or None,
    )


def _final_points(
    text: str | None, metric: str, step_key: str, last_good: Sequence[tuple[float, float]] | None
) -> tuple[list[tuple[float, float]], str | None]:
    if text is None:
        return list(last_good or []), MISSING_FILE_REASON
    try:
        return parse_records(text, metric, step_key), None
    except ResultsError as exc:
        return list(last_good or []), exc.reason


# --- reading a summary back ------------------------------------------------------------------


def parse_summary(text: str) -> TrialSummary:
    """Validate a summary read back from a file or a termination message (untrusted input)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ResultsError(
            f"trial summary is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
            f" (starts with {_short_json(text[:40])})"
        ) from None
    except RecursionError:
        raise ResultsError("trial summary is not valid JSON: nested too deeply") from None
    if not isinstance(data, dict) or data.get("hpo") != SUMMARY_VERSION:
        raise ResultsError(
            f'trial summary must be a JSON object with "hpo": {SUMMARY_VERSION}, '
            f"got {_short_json(data)}"
        )
    return _summary_from_dict(data)


def _summary_from_dict(data: dict[str, Any]) -> TrialSummary:
    ok = _field(data, "ok", (bool,))
    summary = TrialSummary(
        ok=ok,
        exit_code=_field(data, "exitCode", (int,)),
        reason=_field(data, "reason", (str, type(None))),
        objective=_optional_number(data, "objective"),
        step=_optional_number(data, "step"),
        records=_field(data, "records", (int,)),
        curve=_curve_in(data.get("curve")),
    )
    if summary.records < 0:
        raise ResultsError(f'trial summary "records" must be >= 0, got {summary.records}')
    if ok and summary.objective is None:
        raise ResultsError('trial summary says "ok" but has no "objective"')
    return summary


def _field(data: dict[str, Any], key: str, types: tuple[type, ...]) -> Any:
    value = data.get(key)
    wrong_bool = isinstance(value, bool) and bool not in types
    if key not in data or wrong_bool or not isinstance(value, types):
        names = " or ".join("null" if t is type(None) else t.__name__ for t in types)
        raise ResultsError(f'trial summary "{key}" must be {names}, got {_short_json(value)}')
    return value


def _optional_number(data: dict[str, Any], key: str) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    return _number(value, f'trial summary "{key}"')


def _curve_in(value: Any) -> tuple[tuple[float, float], ...]:
    if not isinstance(value, list):
        raise ResultsError(f'trial summary "curve" must be a list, got {_short_json(value)}')
    return tuple(_curve_point(i, point) for i, point in enumerate(value))


def _curve_point(index: int, point: Any) -> tuple[float, float]:
    where = f'trial summary "curve"[{index}]'
    if not isinstance(point, list) or len(point) != 2:
        raise ResultsError(f"{where} must be a [step, value] pair, got {_short_json(point)}")
    return _number(point[0], where + " step"), _number(point[1], where + " value")
