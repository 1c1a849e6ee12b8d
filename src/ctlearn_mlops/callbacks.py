"""Keras callbacks of a training run: progress, divergence, and the stop of a multi-worker run."""

import time

import keras
import numpy as np

from .exceptions import TrainingDiverged, TrainingInterrupted
from .progress import Progress
from .stop import catch_stop_signals, stop_deadline, stop_requested

__all__ = [
    "EpochProgress", "MLflowEpochLogger", "PredictionProgress", "SharesFollowEpochs", "StopOnNonFiniteLoss", "SyncStop",
]


class EpochProgress(keras.callbacks.Callback):
    """One log line per epoch with elapsed time and ETA (readable in SLURM logs)."""

    def __init__(self, log, n_epochs):
        super().__init__()
        self.log = log
        self.n_epochs = n_epochs

    def on_train_begin(self, logs=None):
        self.start = time.monotonic()
        self.first_epoch = None

    def on_epoch_begin(self, epoch, logs=None):
        if self.first_epoch is None:
            self.first_epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        done = epoch + 1 - self.first_epoch
        elapsed = time.monotonic() - self.start
        eta = elapsed / done * (self.n_epochs - epoch - 1)
        metrics = ", ".join(f"{k}={v:.4g}" for k, v in (logs or {}).items())
        self.log.info(
            "epoch %d/%d done in %.0f s total, ETA %.0f s: %s", epoch + 1, self.n_epochs, elapsed, eta, metrics,
        )


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Abort with a clear error as soon as the loss is NaN or infinite."""

    def __init__(self):
        super().__init__()
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(loss):
            raise TrainingDiverged(
                f"the training loss became {loss} in epoch {self.epoch + 1}, batch {batch + 1}: "
                "check the input channels for NaN and lower the learning rate",
                key="TrainCTLearnModel.optimizer",
            )


class PredictionProgress(keras.callbacks.Callback):
    """Batches predicted, elapsed time and ETA in a log line every 30 s (Keras' own bar needs a terminal)."""

    def __init__(self, log, description):
        super().__init__()
        self.log = log
        self.description = description

    def on_predict_begin(self, logs=None):
        self.progress = Progress(self.params.get("steps") or 0, self.description, self.log, unit="batch")

    def on_predict_batch_end(self, batch, logs=None):
        self.progress.update()

    def on_predict_end(self, logs=None):
        self.progress.close()


class SyncStop(keras.callbacks.Callback):
    """The stop of a multi-worker run: the chief decides at an epoch end, every task stops there.

    No task can leave a collective operation alone, so a run over several
    tasks stops only between epochs: after an epoch, when a stop signal came
    and the next epoch is not expected to end ``margin`` seconds before the
    job's end, the chief's decision (an all-reduce) makes every task raise
    TrainingInterrupted (raising, unlike ``stop_training``, keeps Keras'
    backup for the resume).
    """

    margin = 15.0

    def __init__(self, cluster):
        super().__init__()
        self.cluster = cluster

    def on_train_begin(self, logs=None):
        catch_stop_signals()
        self.epoch_seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_start = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_seconds.append(time.monotonic() - self.epoch_start)
        wanted = False
        if self.cluster.is_chief and stop_requested() and epoch + 1 < self.params.get("epochs", epoch + 2):
            needed = max(self.epoch_seconds[-3:])
            wanted = needed + self.margin >= stop_deadline() - time.monotonic()
        if self.cluster.all_reduce_sum(1.0 if wanted else 0.0) > 0:
            raise TrainingInterrupted(f"received {stop_requested() or 'a stop'} (on the chief): stopped after epoch "
                                      f"{epoch + 1}, on every task")


class SharesFollowEpochs(keras.callbacks.Callback):
    """Tell the per-task shares (``distributed.WorkerShare``) which epoch Keras has finished."""

    def __init__(self, shares):
        super().__init__()
        self.shares = shares

    def on_epoch_end(self, epoch, logs=None):
        for share in self.shares:
            share.epoch_finished()


class MLflowEpochLogger(keras.callbacks.Callback):
    """Log each epoch's metrics (loss, validation loss, learning rate, ...) with the epoch as step."""

    def __init__(self, tracked):
        super().__init__()
        self.tracked = tracked

    def on_epoch_end(self, epoch, logs=None):
        self.tracked.log_metrics({k: v for k, v in (logs or {}).items()}, step=epoch)
