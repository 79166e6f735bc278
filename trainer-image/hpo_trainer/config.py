"""The retrainer's settings: command-line flags, each of which config.json can override.

config.json is how a trial's hyperparameters arrive (the trial contract): its keys are flag
names, its values keep their JSON types and override the command line. Unknown keys, wrong
types and out-of-range values are errors that name the key.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_MODULE = "https://tfhub.dev/google/imagenet/mobilenet_v2_100_224/feature_vector/5"
OPTIMIZERS = ("sgd", "adam", "rmsprop")


class ConfigError(ValueError):
    """A bad flag or config.json entry; the message names it."""


@dataclass(frozen=True)
class Flag:
    name: str
    type: type
    default: Any
    help: str
    minimum: float | None = None
    choices: tuple[str, ...] | None = None


FLAGS = (
    Flag("image_dir", str, "", "folder with one sub-folder of JPEG/PNG images per class"),
    Flag("tfhub_module", str, DEFAULT_MODULE, "image feature-vector module: URL or local dir"),
    Flag("image_size", int, 224, "height and width the module expects, in pixels", 1),
    Flag("how_many_training_steps", int, 4000, "training steps of the new last layer", 1),
    Flag("learning_rate", float, 0.01, "learning rate of the optimizer", 0.0),
    Flag("optimizer", str, "sgd", "optimizer of the last layer", choices=OPTIMIZERS),
    Flag("train_batch_size", int, 100, "images per training step", 1),
    Flag("eval_step_interval", int, 10, "evaluate on the validation set every N steps", 1),
    Flag("validation_percentage", int, 10, "percent of images used for validation", 1),
    Flag("testing_percentage", int, 10, "percent of images used for the final test", 0),
    Flag("bottleneck_dir", str, "/tmp/hpo_bottlenecks", "feature cache, shared by trials"),
    Flag("saved_model_dir", str, "", "where to export the model (default: $RESULT_DIR/model)"),
    Flag("seed", int, 0, "seed of the weights and of the training batches", 0),
)
FLAG_NAMES = tuple(f.name for f in FLAGS)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m hpo_trainer.retrain",
        description="Retrain the last layer of an image classifier on top of a TF-Hub module. "
        "Every flag can also be set in config.json (same name), which wins.",
    )
    for f in FLAGS:
        parser.add_argument(
            f"--{f.name}",
            type=f.type,
            default=f.default,
            choices=f.choices,
            help=f"{f.help} (default: {f.default!r})",
        )
    return parser


def _checked(flag: Flag, value: Any, where: str) -> Any:
    expected = {int: "an integer", float: "a number", str: "a string"}[flag.type]
    ok = isinstance(value, flag.type) and not isinstance(value, bool)
    if flag.type is float and isinstance(value, int) and not isinstance(value, bool):
        value, ok = float(value), True
    if not ok:
        raise ConfigError(f"{where}: {flag.name} must be {expected}, got {value!r}")
    if flag.choices and value not in flag.choices:
        raise ConfigError(f"{where}: {flag.name} must be one of {', '.join(flag.choices)}")
    if flag.minimum is not None and not (
        value > flag.minimum if flag.type is float else value >= flag.minimum
    ):
        bound = f"> {flag.minimum}" if flag.type is float else f">= {flag.minimum:g}"
        raise ConfigError(f"{where}: {flag.name} must be {bound}, got {value!r}")
    return value


def find_config_file(cwd: Path, environ: Mapping[str, str]) -> Path | None:
    """config.json in the working directory, else the file named by $HPO_CONFIG, else none."""
    local = cwd / "config.json"
    if local.exists():
        return local
    named = environ.get("HPO_CONFIG")
    return Path(named) if named else None


def read_config_file(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON: {exc.msg} (line {exc.lineno})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: must be a JSON object of flag names to values")
    unknown = sorted(set(data) - set(FLAG_NAMES))
    if unknown:
        raise ConfigError(
            f"{path}: unknown keys {', '.join(unknown)}; known: {', '.join(FLAG_NAMES)}"
        )
    return data


def load_settings(
    argv: Sequence[str], cwd: Path | None = None, environ: Mapping[str, str] | None = None
) -> argparse.Namespace:
    """Flags from argv, overridden by config.json; every value checked."""
    settings = build_parser().parse_args(list(argv))
    path = find_config_file(cwd or Path.cwd(), os.environ if environ is None else environ)
    overrides = read_config_file(path) if path is not None else {}
    for flag in FLAGS:
        where = str(path) if flag.name in overrides else f"--{flag.name}"
        value = overrides.get(flag.name, getattr(settings, flag.name))
        setattr(settings, flag.name, _checked(flag, value, where))
    if not settings.image_dir:
        raise ConfigError("--image_dir: required (a folder with one sub-folder per class)")
    if settings.validation_percentage + settings.testing_percentage >= 100:
        split_keys = {"validation_percentage", "testing_percentage"} & set(overrides)
        raise ConfigError(
            f"{path if split_keys else 'flags'}: "
            "validation_percentage + testing_percentage must be < 100, got "
            f"{settings.validation_percentage} + {settings.testing_percentage}"
        )
    settings.config_file = str(path) if path is not None else None
    return settings
