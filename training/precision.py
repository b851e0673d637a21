"""Training in bfloat16 where the CPU computes it natively (AVX512_BF16 or AMX).

Keras' ``mixed_bfloat16`` policy computes in bfloat16 and keeps the weights in float32,
so the saved weights load into the ordinary float32 model the plugin runs. StarDist's
losses and its ``kld`` metric need float32 predictions (they fail on bfloat16 against
float32 targets), so the output layers, ``prob`` and ``dist``, compute in float32.
On a CPU without bfloat16 instructions TensorFlow emulates it, slower than float32:
``train`` says so and the user may still ask for it (the result is the same kind of
model). Nothing here imports TensorFlow at module level.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

PRECISIONS = ("fp32", "bf16")
_POLICY = {"fp32": "float32", "bf16": "mixed_bfloat16"}


@contextmanager
def building_in(precision: str) -> Iterator[None]:
    """Layers created inside compute in ``precision``; the global policy is restored after."""
    import keras

    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(_POLICY[precision])
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def float32_outputs(keras_model) -> list[str]:
    """Make the layers that produce the model's outputs compute in float32; returns their names."""
    names = []
    for tensor in keras_model.outputs:
        layer = tensor._keras_history[0]
        layer.dtype_policy = "float32"
        names.append(layer.name)
    return names


def native_bf16() -> bool:
    """Whether this CPU computes bfloat16 in hardware (the prediction engine's test)."""
    from ..pipeline.backends.engine import cpu_has_bf16

    return cpu_has_bf16()
