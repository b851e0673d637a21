"""Load a StarDist 2D model once per run: a model folder, or a registered name.

A model folder is read as configuration (``config.json``) and weights (``.h5``,
``weights_best.h5`` preferred, else the newest), plus optional ``thresholds.json``:
data only, nothing in it is executed. TensorFlow is imported here, late.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import re
import sys
import tempfile
from pathlib import Path


class ModelError(RuntimeError):
    """The model could not be loaded; the message says what to do."""


def read_model_folder(folder: Path) -> tuple[dict, Path]:
    """The ``config.json`` contents and the weights file of a StarDist 2D model folder.

    Checked without TensorFlow, so a wrong folder costs a second, not TensorFlow's start-up:
    ``config.json`` is a JSON object of a 2D single-channel model, ``thresholds.json`` (if
    present) holds ``prob`` and ``nms`` in (0, 1), the weights file is a readable HDF5 file
    and, where its layout is Keras' ``.h5`` one, its distance output has ``n_rays`` filters.
    Weights are chosen as StarDist loads them: ``weights_best.h5``, else the newest ``.h5``.
    Raises ``ModelError`` (one line naming the file); callers put the setting's name in front.
    """
    folder = Path(folder)
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise ModelError(f"{folder} has no config.json; is it a StarDist model folder?")
    weights = sorted(folder.glob("*.h5"), key=lambda path: (path.name == "weights_best.h5", path.stat().st_mtime))
    if not weights:
        raise ModelError(f"{folder} has no weights (.h5 file, e.g. weights_best.h5)")
    model_config = _json_object(config_file, 'a StarDist model configuration ({"n_dim": 2, "n_rays": 32, ...})')
    if model_config.get("n_dim", 2) != 2:
        raise ModelError(f"{config_file}: is a {model_config.get('n_dim')}D model; "
                         "this plugin needs a StarDist 2D model")
    n_in = model_config.get("n_channel_in", 1)
    if n_in != 1:
        raise ModelError(f"{config_file}: expects {n_in} input channels, but this plugin works on one channel; "
                         "use a single-channel model such as 2D_versatile_fluo")
    n_rays = model_config.get("n_rays")
    if n_rays is not None and not (isinstance(n_rays, int) and not isinstance(n_rays, bool) and n_rays >= 3):
        raise ModelError(f"{config_file}: n_rays = {n_rays!r}: must be a whole number of rays >= 3, e.g. 32")
    check_thresholds_file(folder / "thresholds.json")
    check_weights_file(weights[-1], n_rays, config_file)
    return model_config, weights[-1]


def _json_object(path: Path, what: str) -> dict:
    """The JSON object in ``path``; anything else is a one-line ``ModelError`` naming the file."""
    try:
        value = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as error:   # RecursionError: nested too deep
        raise ModelError(f"{path}: not readable JSON ({_one_line(error)}); it must hold {what}") from None
    if not isinstance(value, dict):
        raise ModelError(f"{path}: holds a JSON {_json_kind(value)}, not an object; it must hold {what}")
    return value


def _json_kind(value) -> str:
    kinds = ((list, "list"), (str, "string"), (bool, "true/false"), ((int, float), "number"))
    return next((name for kind, name in kinds if isinstance(value, kind)), "null")


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def check_thresholds_file(path: Path) -> None:
    """An optional ``thresholds.json`` holds ``{"prob": P, "nms": N}``, both in (0, 1).

    StarDist itself only warns about a bad value and runs with its defaults; a model
    folder that says one thing and does another is refused here instead.
    """
    if not path.exists():
        return
    fix = "fix the file, or delete it for StarDist's defaults (prob 0.5, nms 0.4)"
    thresholds = _json_object(path, '{"prob": P, "nms": N}, P and N between 0 and 1 (exclusive); ' + fix)
    for key, example in (("prob", 0.5), ("nms", 0.4)):
        if key not in thresholds:
            raise ModelError(f'{path}: has no "{key}"; it must hold {{"prob": P, "nms": N}}; {fix}')
        value = thresholds[key]
        if not (isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < 1):
            raise ModelError(f'{path}: "{key}" = {json.dumps(value)}: must be a number between 0 and 1 '
                             f"(exclusive), e.g. {example}; {fix}")


_TRUNCATED = re.compile(r"truncated file: eof = (\d+).*stored_eof = (\d+)")


def check_weights_file(path: Path, n_rays: int | None, config_file: Path) -> None:
    """The weights are an HDF5 file h5py can open and, where Keras' ``.h5`` layout shows
    the ``dist`` layer, its filters are the config's ``n_rays``.

    h5py comes with Keras (imported here alone, never TensorFlow); without it, or in an
    unknown layout, the shape check is skipped and loading the model would tell.
    """
    try:
        import h5py
    except ImportError:
        return
    again = f"copy the model's {path.name} again"
    try:
        path.open("rb").close()
    except OSError as error:
        raise ModelError(f"{path}: cannot be read ({_one_line(error)}); {again}, or make it readable") from None
    if not h5py.is_hdf5(str(path)):
        empty = "empty, " if path.stat().st_size == 0 else ""
        raise ModelError(f"{path}: not a weights file ({empty}not HDF5, which Keras .h5 weights are); {again}")
    try:
        weights = h5py.File(path, "r")
    except OSError as error:
        cut = _TRUNCATED.search(str(error))
        why = (f"cut short ({int(cut.group(1)):,} of its {int(cut.group(2)):,} bytes: an interrupted copy "
               "or download)" if cut else f"damaged ({_one_line(error)})")
        raise ModelError(f"{path}: {why}; {again}") from None
    with weights:
        try:
            filters = _dist_filters(weights)
        except Exception:         # a layout this reading does not know: TensorFlow's load will tell
            filters = None
    if n_rays is not None and filters is not None and filters != n_rays:
        raise ModelError(f"{path}: weights of a {filters}-ray model (layer 'dist' has {filters} filters), but "
                         f"{config_file} says n_rays = {n_rays}; copy config.json and the weights from the same model")


def _dist_filters(weights) -> int | None:
    """Filters of StarDist's distance output (the conv layer named ``dist``), or None where
    the layout is not Keras' ``.h5`` one (``save_weights``: layer groups at the root;
    ``save``: under ``model_weights``; Keras 3 ``.weights.h5`` names no layers)."""
    import h5py

    root = weights["model_weights"] if isinstance(weights.get("model_weights"), h5py.Group) else weights
    layer = root.get("dist")
    if not isinstance(layer, h5py.Group):
        return None
    kernels = []
    layer.visititems(lambda _, item: kernels.append(item.shape)
                     if isinstance(item, h5py.Dataset) and len(item.shape) == 4 else None)
    return int(kernels[0][-1]) if len(kernels) == 1 else None


def weights_file(folder: Path) -> Path | None:
    """The weights file StarDist will load from a model folder (None for a registered name)."""
    try:
        return read_model_folder(folder)[1] if folder.is_dir() else None
    except ModelError:
        return None


def sha256_of(path: Path) -> str:
    """The file's SHA-256: the weights' identity in run records and in the OpenVINO cache key."""
    import hashlib
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(2 ** 20), b""):
            digest.update(block)
    return digest.hexdigest()


def quiet_tensorflow() -> None:
    """Keep TensorFlow's start-up chatter out of the user's console."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


#: What TensorFlow writes to stderr while it starts, whatever TF_CPP_MIN_LOG_LEVEL says: on
#: Intel CPUs (oneDNN on) its C++ logging prints INFO lines before absl is initialized.
TF_CHATTER = ("All log messages before absl::InitializeLog()", "oneDNN custom operations are on",
              "This TensorFlow binary is optimized", "To enable the following instructions",
              "rebuild TensorFlow with the appropriate compiler flags", "Unable to register cu")


@contextlib.contextmanager
def tensorflow_chatter_filtered():
    """Catch stderr (the file descriptor: TensorFlow's C++ writes there) while TensorFlow
    starts; afterwards every line that is not ``TF_CHATTER`` is written out again.

    Where stderr has no descriptor (an embedded interpreter), nothing is caught.
    """
    quiet_tensorflow()
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            kept = [line for line in caught.read().decode(errors="replace").splitlines()
                    if line.strip() and not any(words in line for words in TF_CHATTER)]
            if kept:
                print("\n".join(kept), file=sys.stderr, flush=True)


def load_model(models_dir: Path, name: str):
    """A ready ``StarDist2D`` from ``models_dir / name``, or a registered pretrained name.

    What only TensorFlow finds (a config.json whose network does not fit the weights) is
    one ``ModelError`` line too, naming the setting and the folder.
    """
    with tensorflow_chatter_filtered():
        return _load_model(models_dir, name)


def thresholds_line(models_dir: Path, name: str, prob: float | None, nms: float | None) -> str:
    """The run's one line on its thresholds and where each came from (StarDist's own two lines,
    "Loading thresholds from ..." then "Using default values: ...", read as a contradiction)."""
    path = Path(models_dir) / name / "thresholds.json"
    try:
        stored = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, ValueError):
        stored = {}
    parts = []
    for word, setting, value, key, default in (("probability", "PROB_THRESH", prob, "prob", 0.5),
                                               ("overlap (NMS)", "NMS_THRESH", nms, "nms", 0.4)):
        if value is not None:
            parts.append(f"{word} {value:g} ({setting})")
        elif key in stored:
            parts.append(f"{word} {float(stored[key]):.3g} ({path})")
        else:
            parts.append(f"{word} {default:g} (StarDist's default: the model has no thresholds.json)")
    return "Thresholds: " + ", ".join(parts) + "."


def _load_model(models_dir: Path, name: str):
    from stardist.models import StarDist2D

    folder = Path(models_dir) / name
    setting = f"MODEL_NAME (--model) = {name!r}"
    if folder.is_dir():
        try:
            with contextlib.redirect_stdout(io.StringIO()):     # StarDist's loading lines: ours say it once
                return StarDist2D(None, name=name, basedir=str(models_dir))
        except Exception as error:  # a broken folder must not end in a TF traceback
            lines = [line.strip() for line in str(error).splitlines() if line.strip()]
            raise ModelError(f"{setting}: model folder {folder} could not be loaded ({type(error).__name__}"
                             f"{': ' + lines[0] if lines else ''}); its config.json must describe the network "
                             "its weights were saved from: copy both from the same model folder") from None
    try:
        return StarDist2D.from_pretrained(name)
    except Exception as error:
        raise ModelError(
            f"{setting}: registered model {name!r} is not cached and could not be downloaded "
            f"({type(error).__name__}). Download it on a connected machine, unzip it, and put "
            f"the folder (config.json + weights .h5) at {folder}") from None
