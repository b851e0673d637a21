"""Convert a StarDist model folder to OpenVINO once, and find the conversion again.

The cache entry is a folder ``openvino-<OpenVINO version>-<weights sha256[:16]>`` holding
``model.xml`` / ``model.bin`` and ``stardist.json``: what StarDist's prediction needs
besides the network (its tile overlap, which TensorFlow measures on the network, and the
output order), plus the ``.bin``'s hash. It lives in the model folder's ``.openvino/``
when that is writable, else in the user's cache folder (``STARDIST_V4D_CACHE`` overrides
it). New weights or another OpenVINO version give a new key, so a stale entry is never
used; a damaged one (unreadable, wrong hash, wrong shapes) is converted again, said in one
line. Converting needs TensorFlow (the Keras model's SavedModel export); loading a cached
entry does not.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..model import sha256_of

#: Bump when the entry's layout or the conversion changes: old entries are then ignored.
LAYOUT = 1
META = "stardist.json"


class IRCacheError(RuntimeError):
    """A cache entry cannot be used; the message says why (one line)."""


@dataclass(frozen=True)
class CachedIR:
    """A usable cache entry: the network and what StarDist's prediction needs around it."""

    folder: Path
    xml: Path
    tile_overlap: tuple[int, int]        # (Y, X) pixels, StarDist's ``_axes_tile_overlap("YX")``
    div_by: tuple[int, int]              # (Y, X): planes are padded to multiples of these
    outputs: tuple[int, int]             # indices of (prob, dist) among the network's outputs


def user_cache_dir() -> Path:
    """Where per-user caches go on this system (``STARDIST_V4D_CACHE`` first)."""
    if os.environ.get("STARDIST_V4D_CACHE"):
        return Path(os.environ["STARDIST_V4D_CACHE"])
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "stardist-v4d"


def network_key(model_folder: Path, weights_sha256: str) -> str:
    """The digest an entry is keyed by: the weights *and* ``config.json``, which the network is built
    from (a config edited after a conversion must not run the stale network)."""
    config = Path(model_folder) / "config.json"
    data = config.read_bytes() if config.is_file() else b""
    return hashlib.sha256(weights_sha256.encode() + b"\0" + data).hexdigest()


def entry_name(weights_sha256: str, openvino_version: str) -> str:
    return f"openvino-{openvino_version.split('-')[0]}-{weights_sha256[:16]}"


def cache_roots(model_folder: Path) -> list[Path]:
    """Where entries of ``model_folder`` may be: beside the model, then the user's cache."""
    digest = hashlib.sha256(str(Path(model_folder).resolve()).encode()).hexdigest()[:8]
    return [Path(model_folder) / ".openvino", user_cache_dir() / "openvino" / f"{Path(model_folder).name}-{digest}"]


def _writable(folder: Path) -> bool:
    """``folder`` can be made (its first existing ancestor is a writable folder) or written."""
    probe = Path(folder)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return probe.is_dir() and os.access(probe, os.W_OK | os.X_OK)


def find(model_folder: Path, weights_sha256: str, openvino_version: str,
         log: Callable[[str], None]) -> CachedIR | None:
    """The usable cached entry, or None (a damaged one is removed, said in one line)."""
    name = entry_name(weights_sha256, openvino_version)
    for root in cache_roots(model_folder):
        folder = root / name
        if not folder.exists():
            continue
        try:
            return read_entry(folder, weights_sha256)
        except IRCacheError as error:
            log(f"The cached OpenVINO model {folder} is damaged ({error}): converting it again.")
            shutil.rmtree(folder, ignore_errors=True)
    return None


def read_entry(folder: Path, weights_sha256: str) -> CachedIR:
    """Check an entry (metadata, key, ``.bin`` hash, network readable) without TensorFlow."""
    try:
        meta = json.loads((folder / META).read_text())
    except (OSError, ValueError) as error:
        raise IRCacheError(f"{META} unreadable: {type(error).__name__}") from None
    if not isinstance(meta, dict) or meta.get("layout") != LAYOUT or meta.get("weights_sha256") != weights_sha256:
        raise IRCacheError(f"{META} belongs to other weights or an older layout")
    xml, binary = folder / "model.xml", folder / "model.bin"
    if not xml.is_file() or not binary.is_file():
        raise IRCacheError("model.xml or model.bin missing")
    if sha256_of(binary) != meta.get("bin_sha256"):
        raise IRCacheError("model.bin does not match its recorded hash")
    try:
        import openvino as ov
        network = ov.Core().read_model(str(xml))
        channels = [output.get_partial_shape()[-1].get_length() for output in network.outputs]
    except Exception as error:
        raise IRCacheError(f"model.xml unreadable: {type(error).__name__}") from None
    outputs = tuple(meta["outputs"])
    if channels[outputs[0]] != 1 or channels[outputs[1]] != meta["n_rays"]:
        raise IRCacheError(f"network outputs have {channels} channels, not 1 and {meta['n_rays']}")
    return CachedIR(folder, xml, tuple(meta["tile_overlap"]), tuple(meta["div_by"]), outputs)


def convert(model, model_folder: Path, weights_sha256: str, openvino_version: str,
            log: Callable[[str], None]) -> CachedIR:
    """Convert a loaded ``StarDist2D`` (TensorFlow) into a new cache entry and return it.

    Built in a temporary folder beside its place and renamed into it, so a killed
    conversion leaves no half entry and two runs converting at once keep one.
    The conversion is checked: OpenVINO fp32 must reproduce TensorFlow's outputs on a
    test patch (within 1e-3), or no entry is made.
    """
    import openvino as ov

    roots = [root for root in cache_roots(model_folder) if _writable(root)]
    if not roots:
        raise IRCacheError(f"neither {cache_roots(model_folder)[0]} nor {cache_roots(model_folder)[1]} is writable")
    root = roots[0]
    root.mkdir(parents=True, exist_ok=True)
    final = root / entry_name(weights_sha256, openvino_version)
    log(f"Converting the model to OpenVINO once (cached in {final}) ...")
    building = Path(tempfile.mkdtemp(prefix=".building-", dir=root))
    try:
        keras_model = getattr(model.keras_model, "_model", model.keras_model)   # unwrap CompiledCNN
        keras_model.export(str(building / "saved_model"), verbose=False)
        network = ov.convert_model(str(building / "saved_model"))
        shutil.rmtree(building / "saved_model")
        ov.save_model(network, str(building / "model.xml"), compress_to_fp16=False)
        outputs = _check_against_tensorflow(model, building / "model.xml")
        meta = dict(layout=LAYOUT, weights_sha256=weights_sha256, openvino=openvino_version,
                    n_rays=int(model.config.n_rays), outputs=outputs,
                    tile_overlap=[int(v) for v in model._axes_tile_overlap("YX")],
                    div_by=[int(v) for v in model._axes_div_by("YX")],
                    bin_sha256=sha256_of(building / "model.bin"))
        (building / META).write_text(json.dumps(meta, indent=1))
        try:
            building.rename(final)
        except OSError:                      # another run finished first: keep its entry
            if not final.exists():
                raise
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return read_entry(final, weights_sha256)


def _check_against_tensorflow(model, xml: Path) -> list[int]:
    """Indices of (prob, dist) among the IR's outputs, after comparing them with TensorFlow's."""
    from .openvino_cnn import OpenVINOCNN

    div_y, div_x = model._axes_div_by("YX")
    patch = np.random.default_rng(0).random((1, 2 * div_y, 2 * div_x, 1), dtype=np.float32)
    expected = [np.asarray(y) for y in model.keras_model.predict(patch, verbose=0)][:2]
    network = OpenVINOCNN(xml, "fp32")
    got = network.predict_all(patch)
    order = []
    for want in expected:
        match = [i for i, y in enumerate(got) if y.shape == want.shape and np.abs(y - want).max() < 1e-3]
        if not match:
            raise IRCacheError("the converted network does not reproduce TensorFlow's outputs")
        order.append(match[0])
    return order
