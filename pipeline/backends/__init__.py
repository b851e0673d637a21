"""The CNN call in one of two engines: ``predict(x[None, ..., None]) -> [prob, dist]``.

A backend does one job, the network's forward pass on a normalized, padded plane (or
tile), with the call shape of a Keras model's ``predict``, so StarDist's own tiling,
candidate selection, block mode and NMS run unchanged around either:

- ``tensorflow_cnn``: the Keras model through one traced ``tf.function`` (fp32; GPU if any);
- ``openvino_cnn``: an OpenVINO IR converted once from that Keras model (``ir_cache``),
  fp32 or bf16, which needs no TensorFlow at run time (``sparse_model``).

``choice`` turns PRECISION / BACKEND and the machine into the engine a run uses.
"""
