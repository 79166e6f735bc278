"""The example trainer with real TensorFlow, offline: scikit-learn's digits and a feature-vector
module built locally, loaded through hub.KerasLayer like a module URL.

TensorFlow runs in subprocesses, as the trainer does in a trial; the settings and the split are
tested in-process (they import no TensorFlow)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from hpo_trainer.config import FLAG_NAMES, ConfigError, load_settings
from hpo_trainer.data import DataError, load_dataset, split_of

from conftest import short_digits_manifest

RETRAIN = [sys.executable, "-m", "hpo_trainer.retrain"]
IMAGES = 1797


@pytest.fixture(scope="session")
def warm_cache(fixtures: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A feature cache filled once by a short run, for tests about training."""
    work = tmp_path_factory.mktemp("warm")
    run = retrain(work, fixtures, work / "cache", {"how_many_training_steps": 1})
    assert run.returncode == 0, run.stderr
    return work / "cache"


def retrain(
    work: Path, fixtures: Path, cache: Path, config: dict[str, Any] | None, *extra: str
) -> subprocess.CompletedProcess[str]:
    work.mkdir(parents=True, exist_ok=True)
    if config is not None:
        (work / "config.json").write_text(json.dumps(config))
    args = [
        f"--image_dir={fixtures / 'digits'}",
        f"--tfhub_module={fixtures / 'module'}",
        "--image_size=32",
        f"--bottleneck_dir={cache}",
        *extra,
    ]
    env = {**os.environ, "RESULT_DIR": str(work / "results")}
    env.pop("HPO_CONFIG", None)
    return subprocess.run(
        [*RETRAIN, *args], cwd=work, env=env, capture_output=True, text=True, timeout=300
    )


def records(work: Path) -> list[dict[str, Any]]:
    return json.loads((work / "results" / "val_dict_list.json").read_text())


# --- settings and data: no TensorFlow --------------------------------------------------------


def test_config_json_overrides_flags_and_keeps_types(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(
        json.dumps({"how_many_training_steps": 700, "learning_rate": 1, "optimizer": "adam"})
    )
    settings = load_settings(
        ["--image_dir=x", "--how_many_training_steps=50", "--seed=4"], tmp_path, {}
    )
    assert settings.how_many_training_steps == 700
    assert settings.learning_rate == 1.0 and isinstance(settings.learning_rate, float)
    assert settings.optimizer == "adam"
    assert settings.seed == 4  # not in config.json: the flag stands
    assert settings.config_file == str(tmp_path / "config.json")


def test_hpo_config_is_read_when_there_is_no_local_config_json(tmp_path: Path) -> None:
    named = tmp_path / "elsewhere.json"
    named.write_text(json.dumps({"train_batch_size": 7}))
    settings = load_settings(["--image_dir=x"], tmp_path, {"HPO_CONFIG": str(named)})
    assert settings.train_batch_size == 7


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"how_many_steps": 5, "lr": 1}, "unknown keys how_many_steps, lr; known: image_dir"),
        ({"how_many_training_steps": "700"}, "how_many_training_steps must be an integer"),
        ({"how_many_training_steps": True}, "how_many_training_steps must be an integer"),
        ({"how_many_training_steps": 0}, "how_many_training_steps must be >= 1, got 0"),
        ({"learning_rate": 0}, "learning_rate must be > 0.0"),
        ({"optimizer": "lbfgs"}, "optimizer must be one of sgd, adam, rmsprop"),
        (
            {"validation_percentage": 60, "testing_percentage": 40},
            "testing_percentage must be < 100",
        ),
        ([1, 2], "must be a JSON object"),
    ],
)
def test_bad_config_json_names_the_key(tmp_path: Path, config: object, message: str) -> None:
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")) as err:
        load_settings(["--image_dir=x"], tmp_path, {})
    assert str(err.value).startswith(str(tmp_path / "config.json"))


def test_every_flag_is_settable_by_config_json(tmp_path: Path) -> None:
    defaults = load_settings(["--image_dir=x"], tmp_path, {})
    changed = {
        name: (getattr(defaults, name) + 1 if isinstance(getattr(defaults, name), int) else None)
        for name in FLAG_NAMES
    }
    config = {k: v for k, v in changed.items() if v is not None and k != "validation_percentage"}
    config.update(image_dir="/d", tfhub_module="/m", bottleneck_dir="/b", saved_model_dir="/s")
    config.update(learning_rate=0.5, optimizer="rmsprop")
    (tmp_path / "config.json").write_text(json.dumps(config))
    settings = load_settings(["--image_dir=x"], tmp_path, {})
    assert {k: getattr(settings, k) for k in config} == config
    assert set(config) | {"validation_percentage"} == set(FLAG_NAMES)


def test_split_is_by_content_and_stable(tmp_path: Path) -> None:
    assert split_of("00000000" + "f" * 56, 10, 10) == "validation"
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        for i in range(40):
            (tmp_path / cls / f"{i}.png").write_bytes(f"{cls}{i}".encode())
    first = load_dataset(str(tmp_path), 20, 20)
    (tmp_path / "a" / "0.png").rename(tmp_path / "a" / "renamed.png")
    second = load_dataset(str(tmp_path), 20, 20)
    assert sorted((i.sha256, i.split) for i in first.images) == sorted(
        (i.sha256, i.split) for i in second.images
    )
    shares = {s: len(first.of(s)) / len(first.images) for s in ("training", "validation")}
    assert 0.4 < shares["training"] < 0.8 and 0.05 < shares["validation"] < 0.4


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ({}, "needs at least 2 sub-folders"),
        ({"a": 3, "empty": 0}, "found classes: a"),
        (None, "no such folder"),
    ],
)
def test_unusable_image_folders(
    tmp_path: Path, layout: dict[str, int] | None, message: str
) -> None:
    root = tmp_path / "images"
    if layout is not None:
        root.mkdir()
        for cls, count in layout.items():
            (root / cls).mkdir()
            for i in range(count):
                (root / cls / f"{i}.jpg").write_bytes(bytes([i]))
    with pytest.raises(DataError, match=message):
        load_dataset(str(root), 10, 10)


# --- the retrainer, with TensorFlow ----------------------------------------------------------


def test_retrain_writes_the_contract_outputs(
    tmp_path: Path, fixtures: Path, warm_cache: Path
) -> None:
    run = retrain(
        tmp_path,
        fixtures,
        warm_cache,
        {"how_many_training_steps": 60, "eval_step_interval": 20, "optimizer": "adam"},
    )
    assert run.returncode == 0, run.stderr
    got = records(tmp_path)
    assert [r["steps"] for r in got] == [20, 40, 60]
    assert all(set(r) == {"steps", "accuracy", "cross_entropy"} for r in got)
    assert got[-1]["accuracy"] > 0.5  # ten classes: chance is 0.1
    assert got[-1]["cross_entropy"] < got[0]["cross_entropy"]
    final = json.loads((tmp_path / "results" / "final.json").read_text())
    assert final["steps"] == 60 and 0.0 <= final["test_accuracy"] <= 1.0
    assert sum(final["images"].values()) == IMAGES
    labels = (tmp_path / "results" / "output_labels.txt").read_text().split()
    assert labels == [f"digit_{d}" for d in range(10)]
    assert (tmp_path / "results" / "model" / "saved_model.pb").exists()
    assert f"0 computed, {IMAGES} from" in run.stdout


def test_a_short_run_is_a_prefix_of_a_long_run(
    tmp_path: Path, fixtures: Path, warm_cache: Path
) -> None:
    common = {"eval_step_interval": 20, "seed": 3, "learning_rate": 0.05}
    short = retrain(
        tmp_path / "short", fixtures, warm_cache, {**common, "how_many_training_steps": 60}
    )
    long = retrain(
        tmp_path / "long", fixtures, warm_cache, {**common, "how_many_training_steps": 140}
    )
    assert short.returncode == 0 and long.returncode == 0, short.stderr + long.stderr
    assert records(tmp_path / "long")[:3] == records(tmp_path / "short")
    assert len(records(tmp_path / "long")) == 7
    other = retrain(
        tmp_path / "other",
        fixtures,
        warm_cache,
        {**common, "how_many_training_steps": 60, "seed": 4},
    )
    assert other.returncode == 0
    assert records(tmp_path / "other") != records(tmp_path / "short")


def test_two_trainers_fill_one_cache_at_once(tmp_path: Path, fixtures: Path) -> None:
    cache = tmp_path / "cache"
    procs = []
    for name in ("a", "b"):
        work = tmp_path / name
        work.mkdir()
        (work / "config.json").write_text(
            json.dumps({"how_many_training_steps": 20, "eval_step_interval": 10})
        )
        env = {**os.environ, "RESULT_DIR": str(work / "results")}
        args = [
            f"--image_dir={fixtures / 'digits'}",
            f"--tfhub_module={fixtures / 'module'}",
            "--image_size=32",
            f"--bottleneck_dir={cache}",
        ]
        procs.append(
            subprocess.Popen(
                [*RETRAIN, *args],
                cwd=work,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert records(tmp_path / "a") == records(tmp_path / "b")
    entries = list(cache.rglob("*.npy"))
    assert len(entries) == IMAGES
    assert not [p for p in cache.rglob(".tmp-*")]
    vectors = np.stack([np.load(p) for p in entries])
    assert vectors.shape == (IMAGES, 64) and np.isfinite(vectors).all()
    computed = sum(
        int(out.split("bottlenecks: 1797 images, ")[1].split(" computed")[0]) for out, _ in outs
    )
    assert computed >= IMAGES  # every entry was computed by one of them, none read half-written


def test_a_damaged_cache_entry_is_recomputed(
    tmp_path: Path, fixtures: Path, warm_cache: Path
) -> None:
    import shutil

    cache = tmp_path / "cache"
    shutil.copytree(warm_cache, cache)
    victim = sorted(cache.rglob("*.npy"))[0]
    victim.write_bytes(b"\x93NUMPY garbage")
    run = retrain(tmp_path / "w", fixtures, cache, {"how_many_training_steps": 10})
    assert run.returncode == 0, run.stderr
    assert f"1 computed, {IMAGES - 1} from" in run.stdout
    assert np.load(victim).shape == (64,)


@pytest.mark.parametrize("problem", ["bad-json", "unknown-key", "empty-images", "bad-module"])
def test_bad_input_exits_2_and_keeps_earlier_records(
    tmp_path: Path, fixtures: Path, warm_cache: Path, problem: str
) -> None:
    earlier = [{"steps": 10, "accuracy": 0.5, "cross_entropy": 1.0}]
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "val_dict_list.json").write_text(json.dumps(earlier))
    config: dict[str, Any] = {"how_many_training_steps": 10}
    extra: list[str] = []
    if problem == "bad-json":
        (tmp_path / "config.json").write_text('{"how_many_training_steps": 10,')
        config = None  # type: ignore[assignment]
        expected = "config.json: not valid JSON"
    elif problem == "unknown-key":
        config["learning_rat"] = 0.1
        expected = "unknown keys learning_rat"
    elif problem == "empty-images":
        (tmp_path / "empty").mkdir()
        config["image_dir"] = str(tmp_path / "empty")
        expected = "needs at least 2 sub-folders"
    else:
        (tmp_path / "not-a-module").mkdir()
        (tmp_path / "not-a-module" / "saved_model.pb").write_bytes(b"not a protobuf")
        config["tfhub_module"] = str(tmp_path / "not-a-module")
        expected = "cannot load it as a TF2 SavedModel"
    run = retrain(tmp_path, fixtures, warm_cache, config, *extra)
    assert run.returncode == 2, run.stdout + run.stderr
    assert expected in run.stderr
    assert records(tmp_path) == earlier


def test_the_digits_example_runs_with_hpo_run(tmp_path: Path, fixtures: Path) -> None:
    """examples/digits-steps.yaml as written, with a shorter grid, through `hpo run`."""
    manifest = short_digits_manifest(fixtures, tmp_path)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    command = [sys.executable, "-m", "hpo_operator.cli", "run", str(manifest)]
    run = subprocess.run(
        [*command, "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    status = yaml.safe_load((tmp_path / "out" / "status.yaml").read_text())
    assert status["phase"] == "Succeeded" and status["trials"]["succeeded"] == 3
    by_steps = {r["parameters"]["how_many_training_steps"]: r for r in status["results"]}
    assert [r["step"] for r in by_steps.values()] == [20, 40, 60]
    # The prefix property, seen through HPO: each trial's curve starts the next one's.
    assert by_steps[40]["curve"][:1] == by_steps[20]["curve"]
    assert by_steps[60]["curve"][:2] == by_steps[40]["curve"]
