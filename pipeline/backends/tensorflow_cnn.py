"""The TensorFlow backend: a StarDist model's Keras network, called as one traced graph."""
from __future__ import annotations

import numpy as np


class CompiledCNN:
    """Stand-in for a model's ``keras_model`` whose ``predict`` is one traced ``tf.function``.

    Why: Keras 3's ``predict`` builds a data pipeline on every call, ~0.1 s per
    1024 x 1024 plane here; the traced call runs the same graph with the same
    kernels (its outputs are checked bit for bit against ``predict`` in the tests).
    Everything else (``layers``, ``input_shape`` ...) is the wrapped model's.
    """

    def __init__(self, keras_model) -> None:
        import tensorflow as tf

        self._model = keras_model
        channels = keras_model.input_shape[-1]
        signature = [tf.TensorSpec((None, None, None, channels), tf.float32)]
        self._call = tf.function(lambda x: keras_model([x], training=False),
                                 input_signature=signature)

    def predict(self, x: np.ndarray, **_ignored) -> list[np.ndarray]:
        return [np.asarray(y) for y in self._call(np.asarray(x, dtype=np.float32))]

    def __getattr__(self, name: str):
        return getattr(self._model, name)


def use_compiled_cnn(model) -> None:
    """Route ``model``'s CNN calls (``predict_instances`` too) through a ``CompiledCNN``."""
    if not isinstance(model.keras_model, CompiledCNN):
        model.keras_model = CompiledCNN(model.keras_model)
