"""Import TensorFlow the way this trainer needs it: Keras 2 (tf_keras) for hub.KerasLayer,
and TensorFlow's C++ start-up chatter off unless the user asked for it."""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf
import tensorflow_hub as hub
import tf_keras

__all__ = ["hub", "tf", "tf_keras"]
