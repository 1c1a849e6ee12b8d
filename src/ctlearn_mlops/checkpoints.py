"""The best model of a run: its weights while training, the whole model once at the end, never half-written.

ctlearn 0.10.2 saves the whole model (a SavedModel: graph tracing and
several files) with Keras' ``ModelCheckpoint`` at every epoch that improves
the validation loss, straight into ``ctlearn_model.cpk/``: slow, and a
failure in the middle (a kill, a full disk) leaves a half-written model
behind.  Here the weights of the best epoch go to ``best_weights.h5``
(a few MB, written to a temporary name and renamed), and the model directory
is written once, when training has finished, to a temporary directory that
then takes the place of the old one.
"""

import os
import shutil
from pathlib import Path

import keras
import numpy as np

__all__ = ["BEST_WEIGHTS_FILE", "BestWeights", "save_model_atomically", "save_weights_atomically"]

BEST_WEIGHTS_FILE = "best_weights.h5"  # Keras 2 h5 format: loads into a model built under a strategy


def save_weights_atomically(model, path):
    """``model.save_weights(path)`` through a temporary file in the same directory."""
    path = Path(path)
    # Keras 2.14 picks the format by the name: "*.weights.h5" is its newer weights format, other "*.h5" the old one
    partial = path.with_name(f".{path.name.removesuffix('.weights.h5')}.partial.weights.h5"
                             if path.name.endswith(".weights.h5") else f".{path.name}.partial.h5")
    try:
        model.save_weights(str(partial))
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def save_model_atomically(model, directory):
    """Save ``model`` (Keras 2 SavedModel) into ``directory``, replacing what is there only once complete."""
    directory = Path(directory)
    partial = directory.with_name(f".{directory.name}.partial")
    old = directory.with_name(f".{directory.name}.old")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        model.save(str(partial))
        if directory.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(directory, old)
        os.replace(partial, directory)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


class BestWeights(keras.callbacks.Callback):
    """Keep the weights of the epoch with the best ``monitor`` value in ``<run>/best_weights.h5``.

    Replaces ctlearn 0.10.2's ``ModelCheckpoint`` (same monitor, mode and
    ``save_best_only``); ``best`` is part of the resume state.
    """

    def __init__(self, run_dir, monitor="val_loss", mode="min", save_best_only=True):
        super().__init__()
        self.path = Path(run_dir) / BEST_WEIGHTS_FILE
        self.monitor = monitor
        self.better = np.less if mode == "min" else np.greater
        self.best = np.inf if mode == "min" else -np.inf
        self.save_best_only = save_best_only

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None:
            return
        if not self.save_best_only or self.better(value, self.best):
            self.best = float(value)
            save_weights_atomically(self.model, self.path)

    def restore_best(self, model):
        """Load the best weights into ``model``; False if there are none (no epoch improved)."""
        if not self.path.exists():
            return False
        model.load_weights(str(self.path))
        return True
