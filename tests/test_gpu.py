"""With a GPU, the run says so and caps TensorFlow's memory before the model loads."""
from __future__ import annotations

import pytest

from stardist_v4d.pipeline.gpu import configure_gpu


class FakeGpu:
    name = "/physical_device:GPU:0"


@pytest.fixture
def tf_calls(monkeypatch):
    import tensorflow as tf
    calls = []
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind: [FakeGpu()] if kind == "GPU" else [])
    monkeypatch.setattr(tf.config.experimental, "set_memory_growth", lambda gpu, on: calls.append(("growth", on)))
    monkeypatch.setattr(tf.config, "set_logical_device_configuration",
                        lambda gpu, configs: calls.append(("limit", configs[0].memory_limit)))
    return calls


def test_gpu_memory_grows_as_needed_by_default(tf_calls):
    lines = []
    assert configure_gpu(None, lines.append) == [FakeGpu.name]
    assert tf_calls == [("growth", True)]
    assert lines == [f"TensorFlow uses GPU {FakeGpu.name} (memory growing as needed)."]


def test_gpu_memory_cap_is_applied(tf_calls):
    lines = []
    configure_gpu(2048, lines.append)
    assert tf_calls == [("limit", 2048)] and "capped at 2048 MB" in lines[0]


def test_no_gpu_says_nothing():
    lines = []
    assert configure_gpu(None, lines.append) == [] and lines == []
