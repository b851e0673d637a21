"""Say whether TensorFlow sees a GPU, and cap what it may take, before the model loads.

TensorFlow by default grabs nearly all GPU memory at start-up, which starves the host
application's own rendering; memory growth (or a fixed cap) leaves room for it.
"""
from __future__ import annotations

from typing import Callable


def configure_gpu(memory_mb: int | None, log: Callable[[str], None]) -> list[str]:
    """Names of visible GPUs; each set to grow as needed, or capped at ``memory_mb``."""
    from .model import tensorflow_chatter_filtered
    with tensorflow_chatter_filtered():
        import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return []
    try:
        for gpu in gpus:
            if memory_mb is None:
                tf.config.experimental.set_memory_growth(gpu, True)
            else:
                tf.config.set_logical_device_configuration(
                    gpu, [tf.config.LogicalDeviceConfiguration(memory_limit=memory_mb)])
    except RuntimeError:  # already initialized by an earlier run in this process: keep it
        pass
    names = [gpu.name for gpu in gpus]
    cap = "growing as needed" if memory_mb is None else f"capped at {memory_mb} MB"
    log(f"TensorFlow uses GPU {', '.join(names)} (memory {cap}).")
    return names
