"""The OpenVINO backend: a converted StarDist network, fp32 or bf16, without TensorFlow.

Why one compiled network per input shape: a network compiled for the exact (static)
shape ran 1024 x 1024 planes in 0.34 s (fp32) / 0.07 s (bf16) here against 0.46 / 0.09 s
with dynamic shapes, and its first call costs 0.4 s instead of 1.3 s; compiling costs
~0.06 s. A run sees one plane shape, plus a few tile shapes when tiled.
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np

#: OpenVINO's names for our PRECISION words.
HINTS = {"fp32": "f32", "bf16": "bf16"}
#: Compiled shapes kept: the plane's and a few tile shapes.
SHAPES_KEPT = 4


def openvino_version() -> str:
    from importlib.metadata import version
    return version("openvino")


def cpu_has_bf16() -> bool:
    """Whether OpenVINO's CPU plugin runs bf16 natively here (AVX512_BF16 or AMX)."""
    import openvino as ov
    try:
        return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except RuntimeError:
        return False


class OpenVINOCNN:
    """``predict(x)`` as a Keras model's: ``x`` (1, Y, X, 1) float32 -> ``[prob, dist]`` arrays.

    ``outputs`` are the indices of prob and dist among the network's outputs (``ir_cache``).
    ``precision`` "fp32" pins OpenVINO's inference precision to f32 (its CPU plugin would
    otherwise pick bf16 on CPUs that have it); "bf16" asks for bf16.
    """

    def __init__(self, xml: Path, precision: str = "fp32", outputs: tuple[int, int] = (0, 1)) -> None:
        import openvino as ov

        self.precision = precision
        self._outputs = tuple(outputs)           # indices of (prob, dist) among the network's
        self._core = ov.Core()
        self._xml = Path(xml)
        self._network = self._core.read_model(str(self._xml))
        self._compiled: OrderedDict[tuple[int, ...], object] = OrderedDict()

    def _request(self, shape: tuple[int, ...]):
        request = self._compiled.get(shape)
        if request is None:
            network = self._network.clone()
            network.reshape(list(shape))
            compiled = self._core.compile_model(network, "CPU", {
                "INFERENCE_PRECISION_HINT": HINTS[self.precision], "PERFORMANCE_HINT": "LATENCY"})
            request = compiled.create_infer_request()
            if len(self._compiled) >= SHAPES_KEPT:
                self._compiled.popitem(last=False)
        self._compiled[shape] = request
        self._compiled.move_to_end(shape)
        return request

    def predict(self, x: np.ndarray, **_ignored) -> list[np.ndarray]:
        outputs = self.predict_all(x)
        return [outputs[i] for i in self._outputs]

    def predict_all(self, x: np.ndarray) -> list[np.ndarray]:
        """Every output of the network, in its own order."""
        # copies: the request's buffers are reused by its next call
        return [np.array(y) for y in self._infer(x)]

    def predict_borrowed(self, x: np.ndarray) -> list[np.ndarray]:
        """``predict`` without copying: the request's own output buffers, valid until this
        network's next call. For a caller that takes what it keeps at once (the candidates
        above the threshold): a crowded plane's 33 MB distance map is not copied (~7 ms)."""
        outputs = self._infer(x)
        return [outputs[i] for i in self._outputs]

    def _infer(self, x: np.ndarray) -> list[np.ndarray]:
        x = np.ascontiguousarray(x, dtype=np.float32)
        request = self._request(tuple(x.shape))
        request.infer([x])
        return [request.get_output_tensor(i).data for i in range(len(request.model_outputs))]
