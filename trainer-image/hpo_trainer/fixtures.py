"""Offline fixtures: a real image data set and a real feature-vector module, made locally.

    python -m hpo_trainer.fixtures --out DIR

writes
    DIR/digits/<class>/<n>.png   scikit-learn's bundled digits (1,797 8x8 images, 10 classes),
                                 one folder per class: the layout the retrainer reads
    DIR/module/                  a small convolutional feature-vector module saved as a TF2
                                 SavedModel, loaded with hub.KerasLayer(path) exactly like a
                                 module URL

Nothing is downloaded. Existing outputs are kept (delete DIR to rebuild).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

MODULE_SEED = 1234
FEATURES = 64
IMAGE_SIZE = 32  # the input size the examples and tests use with this module


def write_digits(out: Path) -> int:
    """Write the digits as 8-bit greyscale PNGs, one folder per class; returns the count."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    tmp = out.with_name(out.name + ".partial")
    for i, (image, label) in enumerate(zip(digits.images, digits.target, strict=True)):
        folder = tmp / f"digit_{label}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = np.clip(image * (255.0 / 16.0), 0, 255).astype("uint8")
        Image.fromarray(pixels, mode="L").save(folder / f"{i:04d}.png")
    os.replace(tmp, out)
    return len(digits.images)


def build_module(out: Path, digits: Path) -> None:
    """Save a small CNN that maps [batch, h, w, 3] images in [0, 1] to [batch, FEATURES]
    feature vectors, as TF-Hub image feature-vector modules do. Its convolutions keep their
    seeded random weights; a last layer standardises each feature over the digits, so that a
    linear classifier on top learns at a pace like on a real pretrained module's features."""
    import numpy as np
    from PIL import Image

    from ._tf import tf, tf_keras

    tf_keras.utils.set_random_seed(MODULE_SEED)
    inputs = tf_keras.Input(shape=(None, None, 3))
    x = tf_keras.layers.Conv2D(32, 3, padding="same", activation="relu")(inputs)
    x = tf_keras.layers.MaxPooling2D()(x)
    x = tf_keras.layers.Conv2D(FEATURES, 3, padding="same", activation="relu")(x)
    raw = tf_keras.Model(inputs, tf_keras.layers.GlobalAveragePooling2D()(x))
    files = sorted(digits.rglob("*.png"))
    pixels = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files]) / 255.0
    sample = raw(tf.image.resize(pixels.astype("float32"), (IMAGE_SIZE, IMAGE_SIZE)))
    scale = tf_keras.layers.Normalization(
        mean=np.mean(sample, axis=0), variance=np.var(sample, axis=0) + 1e-6
    )
    model = tf_keras.Model(inputs, scale(raw.output))

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
    def serve(images: tf.Tensor) -> tf.Tensor:
        return model(images, training=False)

    tmp = out.with_name(out.name + ".partial")
    tf.saved_model.save(model, str(tmp), signatures={"serving_default": serve})
    os.replace(tmp, out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hpo_trainer.fixtures", description=__doc__)
    parser.add_argument("--out", required=True, help="folder for digits/ and module/")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "digits").exists():
        print(f"wrote {write_digits(out / 'digits')} images to {out / 'digits'}")
    if not (out / "module").exists():
        build_module(out / "module", out / "digits")
        print(f"wrote a {FEATURES}-feature module to {out / 'module'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
