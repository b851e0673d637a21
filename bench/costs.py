"""What one plane costs, stage by stage, and what this machine can do at best.

Used by ``throughput.py``: the single-thread core-seconds per stage (measured in a
subprocess started with one thread for TensorFlow and OpenMP) give the ceiling;
the CNN's FLOP count and numpy's sgemm rate put the CNN's speed in context.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def sgemm_gflops(n: int = 2048, repeats: int = 5) -> float:
    """numpy float32 matrix product rate (all of numpy's BLAS threads)."""
    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    b = a.copy()
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n ** 3 / best / 1e9


def _timed(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def cnn_gflop(keras_model, shape: tuple[int, int]) -> float:
    """2 x multiply-adds of every convolution for one ``shape`` plane (shapes from Keras)."""
    import keras

    convs = [layer for layer in keras_model.layers if isinstance(layer, keras.layers.Conv2D)]
    probe = keras.Model(keras_model.inputs, [layer.output for layer in convs])
    outputs = probe.compute_output_spec(keras.Input(shape=(*shape, keras_model.input_shape[-1])))
    flops = 0.0
    for layer, out in zip(convs, outputs):
        kh, kw = layer.kernel_size
        flops += 2 * kh * kw * layer.kernel.shape[2] * layer.filters * out.shape[1] * out.shape[2]
    return flops / 1e9


SINGLE_THREAD_SCRIPT = """
import json, os, sys, time
import numpy as np
import tensorflow as tf
tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(1)
from stardist.models import StarDist2D
from stardist_v4d.pipeline.normalization import plane_normalizer
from stardist_v4d.pipeline.predict import instances, predict_sparse
from stardist_v4d.pipeline.backends.tensorflow_cnn import use_compiled_cnn
import tifffile
models, name, stack_path = sys.argv[1:4]
model = StarDist2D(None, name=name, basedir=models)
use_compiled_cnn(model)
stack = tifffile.memmap(stack_path)
normalizer = plane_normalizer(1, 99.8)
cost = dict(read=0.0, normalize=0.0, cnn=0.0, post=0.0)
predict_sparse(model, normalizer(np.array(stack[0])))      # trace once
for plane in stack:
    t0 = time.process_time(); raw = np.array(plane); t1 = time.process_time()
    x = normalizer(raw); t2 = time.process_time()
    sparse = predict_sparse(model, x); t3 = time.process_time()
    instances(sparse); t4 = time.process_time()
    for key, dt in zip(cost, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
        cost[key] += dt / len(stack)
print(json.dumps(cost))
"""


def single_thread_costs(models_dir: Path, name: str, stack_path: Path) -> dict[str, float]:
    """CPU seconds per plane of each stage, every library held to one thread."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "-c", SINGLE_THREAD_SCRIPT, str(models_dir), name,
                           str(stack_path)], capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])
