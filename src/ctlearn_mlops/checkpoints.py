"""The best model of a run: its weights while training, the whole model once at the end, never half-written.

ctlearn 0.10.4 saves the whole model (``ctlearn_model.keras``) with Keras'
``ModelCheckpoint`` at every epoch that improves the validation loss, in
place: a failure in the middle (a kill, a full disk) leaves a half-written
model behind.  Here the weights of the best epoch go to
``best.weights.h5`` (a few MB, written to a temporary name and renamed), and
the model file is written once, when training has finished, to a temporary
name that then takes the place of the old one.
"""

import os
import shutil
import tempfile
from pathlib import Path

import keras
import numpy as np

__all__ = ["BEST_WEIGHTS_FILE", "BestWeights", "checkpoint_mode", "partial_name", "save_model_atomically", "save_weights_atomically"]

BEST_WEIGHTS_FILE = "best.weights.h5"


def partial_name(path):
    """The hidden temporary name a file is written to before it is renamed to ``path``.

    Keras 3 picks the format by the suffix (``.weights.h5``, ``.keras``): the
    temporary name keeps it.
    """
    path = Path(path)
    for suffix in (".weights.h5", ".keras", ".h5", ".json"):
        if path.name.endswith(suffix):
            return path.with_name(f".{path.name.removesuffix(suffix)}.partial{suffix}")
    return path.with_name(f".{path.name}.partial")


def _saved_atomically(save, path):
    """``save(name)`` to a local temporary file, then copied next to ``path`` under a hidden name and renamed.

    Keras writes through h5py and zipfile: on a full disk the failure comes
    out of their destructors (stray tracebacks, a crash at exit).  Written
    first where there is room, the copy to the run directory fails as a plain
    ``OSError`` and leaves nothing behind.
    """
    path = Path(path)
    partial = partial_name(path)
    with tempfile.TemporaryDirectory(prefix="ctlearn-mlops-save-") as local:
        written = Path(local) / path.name
        save(str(written))
        try:
            try:
                shutil.copyfile(written, partial)
            except OSError as err:
                # shutil names the source in a failed copy: the place without room is the destination
                raise OSError(err.errno, err.strerror, str(partial)) from None
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)


def save_weights_atomically(model, path):
    """``model.save_weights(path)`` (weights and optimizer state), never half-written."""
    _saved_atomically(model.save_weights, path)


def save_model_atomically(model, path):
    """``model.save(path)`` (Keras 3 ``.keras`` file), replacing what is there only once complete."""
    _saved_atomically(model.save, path)


def checkpoint_mode(checkpoint):
    """"min" or "max": whether a lower or a higher value of a ``ModelCheckpoint``'s monitor is better.

    Keras 3 sets ``monitor_op`` only at the first epoch (None before), so the
    mode is read from ``mode`` (ctlearn 0.10.4 passes "min" for val_loss);
    "auto" is read by the monitor's name (accuracies and AUCs maximised).
    """
    if checkpoint.mode in ("min", "max"):
        return checkpoint.mode
    return "max" if any(word in checkpoint.monitor for word in ("acc", "auc", "precision", "recall")) else "min"


class BestWeights(keras.callbacks.Callback):
    """Keep the weights of the epoch with the best ``monitor`` value in ``<run>/best.weights.h5``.

    Replaces ctlearn 0.10.4's ``ModelCheckpoint`` (same monitor, mode and
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
