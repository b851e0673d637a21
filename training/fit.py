"""StarDist's 2D training loop, made to fit a CPU and to survive being stopped.

``StarDist2D.train`` builds its patch generator and calls Keras ``fit`` on it; it cannot
start at a later epoch, and it makes each batch (patch sampling, augmentation, star
distances) in the training thread between two steps, where both cores sit idle for the
CNN. This module builds the same generator (``StarDistData2D`` with the model's own
settings) and the same validation patches, and differs in three ways:

- batches are made one step ahead in a background thread (numpy and StarDist's C code
  release the GIL), so a step never waits for Python;
- batch ``i`` of the run is a function of the seed and ``i`` alone (which images, which
  patches, which augmentation), so a run resumed at epoch ``e`` sees exactly the batches
  the undisturbed run would have seen from there;
- ``initial_epoch`` continues a stopped run from its checkpoint (``checkpoint.py``);
- the learning rate follows ``schedule.cosine_rate`` by epoch, and a checkpoint is
  written after every epoch.
"""
from __future__ import annotations

import functools
import queue
import threading
import time
from typing import Iterator

import numpy as np

from . import checkpoint as checkpoints
from .schedule import cosine_rate

PREFETCH_BATCHES = 3
#: Shorter trainings (tests, quick looks) skip XLA: compiling costs more than it saves.
XLA_MIN_STEPS = 200


def prefetched(batches: Iterator, depth: int = PREFETCH_BATCHES) -> Iterator:
    """Yield ``batches`` in order while a thread makes the next ``depth`` of them."""
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def produce() -> None:
        try:
            for batch in batches:
                while not stop.is_set():
                    try:
                        buffer.put(batch, timeout=0.2)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
        except BaseException as error:          # handed to the consumer, raised there
            buffer.put(error)
            return
        buffer.put(done)

    thread = threading.Thread(target=produce, name="stardist-batches", daemon=True)
    thread.start()
    try:
        while True:
            item = buffer.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()


def seeded_batches(data, augmenter, seed: int, first: int, stop: int) -> Iterator:
    """Batches ``first`` .. ``stop - 1`` of ``data`` (a ``StarDistData2D``), each decided by ``(seed, i)``.

    StarDist draws image order, patch positions and (through the augmenter) the
    augmentation from random generators that run on from batch to batch; seeding them
    per batch makes batch ``i`` the same whether the run started at 0 or resumed at ``i``.
    """
    data._index = lambda loop: np.random.default_rng([seed, 0, loop]).permutation(data.data_size)
    for i in range(first, stop):
        np.random.seed([seed, 1, i])                       # patch positions (stardist's sample_patches)
        augmenter.rng = np.random.default_rng([seed, 2, i])
        yield data[i]


def compile_with_xla(model, steps: int) -> None:
    """Make ``prepare_for_training`` compile the training step with XLA, for ``steps`` >= ``XLA_MIN_STEPS``.

    Keras leaves XLA off on machines without a GPU; on a 2-core AMD EPYC (AVX2) it made
    a step of StarDist's standard network 1.24x faster (1.70 -> 1.37 s, batch 4 of 256 x 256).
    """
    if steps < XLA_MIN_STEPS:
        return
    keras_model = model.keras_model
    keras_model.compile = functools.partial(keras_model.compile, jit_compile=True)


def data_settings(config) -> dict:
    """The ``StarDistData2D`` keywords ``StarDist2D.train`` derives from the config."""
    return dict(n_rays=config.n_rays, patch_size=config.train_patch_size, grid=config.grid,
                shape_completion=config.train_shape_completion, b=config.train_completion_crop,
                use_gpu=config.use_gpu, foreground_prob=config.train_foreground_only,
                n_classes=config.n_classes, sample_ind_cache=config.train_sample_cache)


def validation_batch(config, images: list[np.ndarray], masks: list[np.ndarray]):
    """One patch per validation image, as ``StarDist2D.train`` makes them (the numpy global RNG decides where)."""
    from stardist.models.model2d import StarDistData2D

    n_take = config.train_n_val_patches if config.train_n_val_patches is not None else len(images)
    return StarDistData2D(images, masks, batch_size=n_take, length=1, **data_settings(config))[0]


def make_callbacks(model, settings, run: dict, history: dict, best_val_loss: float | None):
    """The learning-rate schedule and the per-epoch checkpoint, as Keras callbacks."""
    import keras

    started = time.monotonic()
    best_callbacks = [cb for cb in model.callbacks if isinstance(cb, keras.callbacks.ModelCheckpoint)
                      and cb.save_best_only]
    if best_val_loss is not None:
        for callback in best_callbacks:         # weights_best.h5 = best of the whole run, not of this part
            callback.best = best_val_loss

    class _Schedule(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            rate = cosine_rate(epoch, settings.epochs, settings.learning_rate)
            self.model.optimizer.learning_rate.assign(rate)

    class _Checkpoint(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            for key in ("loss", "val_loss"):
                if key in logs:
                    history.setdefault(key, []).append(float(logs[key]))
            history.setdefault("learning_rate", []).append(float(np.asarray(self.model.optimizer.learning_rate)))
            best = [cb.best for cb in best_callbacks if np.isfinite(cb.best)]
            # training time over every part of a resumed run, for training.json
            run["seconds_so_far"] = round(float(run.get("seconds_before", 0.0)) + time.monotonic() - started, 1)
            checkpoints.save(model.logdir, self.model, epoch + 1, history, float(best[0]) if best else None, run)

    # the checkpoint runs after StarDist's ModelCheckpoint (so its 'best' is this epoch's)
    return [_Schedule()], [_Checkpoint()]


def fit(model, images, masks, validation, augmenter, settings, run: dict, *,
        initial_epoch: int = 0, history: dict | None = None, best_val_loss: float | None = None,
        extra_callbacks: list | None = None, verbose: int = 0) -> dict:
    """Train ``model`` (a prepared ``StarDist2D``) from ``initial_epoch`` up to ``settings.epochs``.

    Returns the loss history (``history``, extended in place after every epoch)."""
    from stardist.models.model2d import StarDistData2D

    config = model.config
    history = {} if history is None else history        # the caller's dict grows epoch by epoch (kept on Ctrl-C)
    data_val = validation_batch(config, *validation)
    total = settings.epochs * settings.steps_per_epoch
    data_train = StarDistData2D(images, masks, batch_size=config.train_batch_size, augmenter=augmenter,
                                length=total, **data_settings(config))

    first, last = make_callbacks(model, settings, run, history, best_val_loss)
    callbacks = first + list(model.callbacks) + list(extra_callbacks or []) + last
    batches = prefetched(seeded_batches(data_train, augmenter, settings.seed,
                                        initial_epoch * settings.steps_per_epoch, total))
    try:
        model.keras_model.fit(batches, validation_data=data_val, epochs=settings.epochs,
                              initial_epoch=initial_epoch, steps_per_epoch=settings.steps_per_epoch,
                              callbacks=callbacks, verbose=verbose, validation_batch_size=config.train_batch_size)
    finally:
        batches.close()
    model._training_finished()
    return history
