"""Retrain an image classifier's last layer on top of a frozen TF-Hub feature-vector module.

    python -m hpo_trainer.retrain --image_dir DIR --tfhub_module URL_OR_DIR [flags]

TensorFlow 2 rewrite of "TensorFlow for Poets" (retrain.py). Every flag can be set in
config.json, which is how an HPO trial's hyperparameters arrive. After every evaluation it
rewrites $RESULT_DIR/val_dict_list.json (atomically) with one record per evaluation:
{"steps": N, "accuracy": ..., "cross_entropy": ...}. At the end it writes the test-set result
to $RESULT_DIR/final.json, the class names to $RESULT_DIR/output_labels.txt and the whole
model (module + new layer) to --saved_model_dir.

With a fixed --seed a run of N steps gives exactly the first records of a run of M > N steps
(when N is a multiple of --eval_step_interval): batches are drawn from one seeded stream and
TensorFlow runs deterministically, so the longest run contains every shorter run's curve.

Exit status: 0 done; 2 bad flags, config.json, image folder or module (the message names it).
"""

from __future__ import annotations

import json
import os
import sys
import time
from argparse import Namespace
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import bottlenecks as bn
from .config import ConfigError, load_settings
from .data import TESTING, TRAINING, VALIDATION, DataError, Dataset, Image, load_dataset

RESULTS_FILE = "val_dict_list.json"
EXIT_BAD_INPUT = 2


class ModuleError(RuntimeError):
    """The TF-Hub module cannot be loaded or used."""


def write_json_atomically(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def _load_module(settings: Namespace) -> Any:
    from ._tf import hub

    try:
        return hub.KerasLayer(settings.tfhub_module, trainable=False)
    except Exception as exc:  # hub raises many kinds; all mean "this module is unusable"
        raise ModuleError(
            f"--tfhub_module {settings.tfhub_module}: cannot load it as a TF2 SavedModel "
            f"feature-vector module: {type(exc).__name__}: {exc}"
        ) from None


def _compute_with(layer: Any, size: int) -> Any:
    from ._tf import tf

    def compute(images: Sequence[Image]) -> np.ndarray:
        batch = []
        for image in images:
            try:
                decoded = tf.io.decode_image(
                    image.path.read_bytes(), channels=3, expand_animations=False
                )
            except (tf.errors.InvalidArgumentError, OSError) as exc:
                raise DataError(f"{image.path}: not a readable JPEG/PNG image: {exc}") from None
            pixels = tf.image.convert_image_dtype(decoded, tf.float32)
            batch.append(tf.image.resize(pixels, (size, size)))
        try:
            features = layer(tf.stack(batch))
        except Exception as exc:
            raise ModuleError(
                f"the module failed on {size}x{size} images (is --image_size right?): {exc}"
            ) from None
        return np.asarray(features, dtype=np.float32)

    return compute


def features(settings: Namespace, dataset: Dataset, layer: Any) -> dict[str, np.ndarray]:
    folder = bn.cache_dir(settings.bottleneck_dir, settings.tfhub_module, settings.image_size)
    started = time.monotonic()
    vectors, computed = bn.bottlenecks(
        dataset.images, folder, _compute_with(layer, settings.image_size)
    )
    print(
        f"bottlenecks: {len(dataset.images)} images, {computed} computed, "
        f"{len(dataset.images) - computed} from {folder} ({time.monotonic() - started:.1f} s)",
        flush=True,
    )
    index = {image.sha256: n for n, image in enumerate(dataset.images)}
    return {
        split: vectors[[index[i.sha256] for i in dataset.of(split)]]
        for split in (TRAINING, VALIDATION, TESTING)
    }


def _optimizer(name: str, learning_rate: float) -> Any:
    from ._tf import tf_keras

    kinds = {
        "sgd": tf_keras.optimizers.SGD,
        "adam": tf_keras.optimizers.Adam,
        "rmsprop": tf_keras.optimizers.RMSprop,
    }
    return kinds[name](learning_rate=learning_rate)


def train(
    settings: Namespace, dataset: Dataset, vectors: dict[str, np.ndarray], result_dir: Path
) -> tuple[Any, list[dict[str, Any]]]:
    """Train the new last layer; rewrite val_dict_list.json after each evaluation."""
    from ._tf import tf, tf_keras

    tf_keras.utils.set_random_seed(settings.seed)
    tf.config.experimental.enable_op_determinism()
    labels = {s: np.array([i.label for i in dataset.of(s)], dtype=np.int64) for s in vectors}
    init = tf_keras.initializers.TruncatedNormal(stddev=0.001, seed=settings.seed)
    head = tf_keras.layers.Dense(len(dataset.labels), kernel_initializer=init)
    head.build((None, vectors[TRAINING].shape[1]))
    optimizer = _optimizer(settings.optimizer, settings.learning_rate)
    loss_fn = tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function
    def step(x: Any, y: Any) -> None:
        with tf.GradientTape() as tape:
            loss = loss_fn(y, head(x))
        grads = tape.gradient(loss, head.trainable_variables)
        optimizer.apply_gradients(zip(grads, head.trainable_variables, strict=True))

    def evaluate(split: str) -> tuple[float, float]:
        logits = head(vectors[split])
        predicted = np.argmax(np.asarray(logits), axis=1)
        accuracy = float(np.mean(predicted == labels[split]))
        return accuracy, float(loss_fn(labels[split], logits))

    rng = np.random.default_rng(settings.seed)
    records: list[dict[str, Any]] = []
    total = settings.how_many_training_steps
    for n in range(1, total + 1):
        batch = rng.integers(0, len(labels[TRAINING]), size=settings.train_batch_size)
        step(vectors[TRAINING][batch], labels[TRAINING][batch])
        if n % settings.eval_step_interval == 0 or n == total:
            accuracy, cross_entropy = evaluate(VALIDATION)
            records.append({"steps": n, "accuracy": accuracy, "cross_entropy": cross_entropy})
            write_json_atomically(result_dir / RESULTS_FILE, records)
            print(
                f"step {n}: validation accuracy {accuracy:.4f} "
                f"(N={len(labels[VALIDATION])}), cross entropy {cross_entropy:.4f}",
                flush=True,
            )
    final: dict[str, Any] = {"steps": total, "images": {s: len(v) for s, v in labels.items()}}
    if len(labels[TESTING]):
        final["test_accuracy"], final["test_cross_entropy"] = evaluate(TESTING)
        print(f"final test accuracy {final['test_accuracy']:.4f} (N={len(labels[TESTING])})")
    write_json_atomically(result_dir / "final.json", final)
    return head, records


def export(settings: Namespace, dataset: Dataset, layer: Any, head: Any, result_dir: Path) -> Path:
    """Save module + new layer as one SavedModel, and the class names beside the results."""
    from ._tf import tf_keras

    size = settings.image_size
    model = tf_keras.Sequential(
        [tf_keras.layers.InputLayer(input_shape=(size, size, 3)), layer, head]
    )
    target = Path(settings.saved_model_dir or result_dir / "model")
    model.save(str(target))
    (result_dir / "output_labels.txt").write_text("\n".join(dataset.labels) + "\n")
    return target


def run(settings: Namespace) -> None:
    dataset = load_dataset(
        settings.image_dir, settings.validation_percentage, settings.testing_percentage
    )
    print(
        f"{len(dataset.images)} images in {len(dataset.labels)} classes from {settings.image_dir}"
        + (f"; settings from {settings.config_file}" if settings.config_file else ""),
        flush=True,
    )
    result_dir = Path(os.environ.get("RESULT_DIR") or "results")
    result_dir.mkdir(parents=True, exist_ok=True)
    layer = _load_module(settings)
    vectors = features(settings, dataset, layer)
    started = time.monotonic()
    head, _ = train(settings, dataset, vectors, result_dir)
    trained = time.monotonic()
    target = export(settings, dataset, layer, head, result_dir)
    print(
        f"trained in {trained - started:.1f} s; model saved to {target} "
        f"in {time.monotonic() - trained:.1f} s",
        flush=True,
    )


def main(argv: Sequence[str] | None = None) -> int:
    try:
        settings = load_settings(sys.argv[1:] if argv is None else argv)
        run(settings)
    except (ConfigError, DataError, ModuleError) as exc:
        print(f"retrain: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return 0


if __name__ == "__main__":
    sys.exit(main())
