"""Training that survives being stopped: state saved every epoch, restored exactly.

``EpochBackup`` keeps the weights and the optimizer (with its learning rate)
of every finished epoch in one file whose name carries the epoch
(``backup/epoch_NNNNN.weights.h5``, written to a temporary name and renamed:
a kill leaves the previous epoch's backup whole).  Keras 3's
``BackupAndRestore`` writes its weights and its epoch counter as two files,
in place, one after the other; a kill between them resumes with weights one
epoch ahead of the counter.  What the weights do not hold is saved next to
them, per epoch: the data order of the loaders, the Python random state
(Keras shuffles the batch order with ``random``; the loaders re-seed NumPy)
and the internal state of the learning-rate, early-stopping and checkpoint
callbacks.  With both, a resumed run continues as if it had never stopped.
"""

import json
import random
import time
from pathlib import Path

import keras

from .checkpoints import save_weights_atomically
from .exceptions import TrainingInterrupted
from .rundir import atomic_write_json
from .stop import catch_stop_signals, stop_deadline, stop_requested

__all__ = [
    "BACKUP_DIR", "STATE_DIR", "EpochBackup", "GracefulStop", "StateRestorer", "StateSaver", "backup_epoch", "backup_file",
    "load_state",
]

BACKUP_DIR = "backup"
STATE_DIR = "state"
_CALLBACK_ATTRIBUTES = ("wait", "best", "cooldown_counter", "stopped_epoch")


def _callback_state(callback):
    # Keras 3 starts some of them as None (EarlyStopping.best before a first value)
    return {a: float(getattr(callback, a)) for a in _CALLBACK_ATTRIBUTES if getattr(callback, a, None) is not None}


def _state_file(run_dir, epoch):
    return Path(run_dir) / STATE_DIR / f"epoch_{epoch:05d}.json"


def backup_file(backup_dir, epoch):
    return Path(backup_dir) / f"epoch_{epoch:05d}.weights.h5"


def backup_epoch(backup_dir):
    """Last finished epoch (0-based) backed up in ``backup_dir``, or None; ValueError naming a file that is not whole."""
    import h5py

    backups = sorted(Path(backup_dir).glob("epoch_*.weights.h5"))
    if not backups:
        return None
    last = backups[-1]
    try:
        with h5py.File(last, "r") as backup:
            if not len(backup.keys()):
                raise OSError("no weights in it")
        return int(last.name.split(".")[0].removeprefix("epoch_"))
    except (OSError, ValueError) as err:
        raise ValueError(f"{last} cannot be read ({type(err).__name__}: {str(err).splitlines()[0]})") from None


class EpochBackup(keras.callbacks.Callback):
    """Weights and optimizer of each finished epoch (the last ``keep``), and their restore when a run resumes.

    ``restore``: the backup file to load at the start of training (a resumed
    run; in a multi-worker run every task loads the chief's), or None.  The
    epoch to go on from is given to ``fit`` (``initial_epoch``) by the
    training tool.
    """

    def __init__(self, backup_dir, restore=None, keep=2):
        super().__init__()
        self.backup_dir = Path(backup_dir)
        self.restore = restore
        self.keep = keep

    def on_train_begin(self, logs=None):
        if self.restore is None:
            return
        if not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        self.model.load_weights(str(self.restore))

    def on_epoch_end(self, epoch, logs=None):
        self.backup_dir.mkdir(parents=True, exist_ok=True)
        save_weights_atomically(self.model, backup_file(self.backup_dir, epoch))
        for old in sorted(self.backup_dir.glob("epoch_*.weights.h5"))[:-self.keep]:
            old.unlink(missing_ok=True)


class StateSaver(keras.callbacks.Callback):
    """Save the extra state at each epoch end; must come before ``EpochBackup`` in the callback list."""

    def __init__(self, run_dir, loaders, stateful_callbacks, keep=3):
        super().__init__()
        self.run_dir = Path(run_dir)
        self.loaders = loaders
        self.stateful = stateful_callbacks
        self.keep = keep

    def on_epoch_end(self, epoch, logs=None):
        state = {
            "epoch": epoch,
            "indices": {name: [int(i) for i in loader.indices] for name, loader in self.loaders.items()},
            "python_random": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
            "callbacks": {type(cb).__name__: _callback_state(cb) for cb in self.stateful},
        }
        atomic_write_json(_state_file(self.run_dir, epoch), state)
        for old in sorted((self.run_dir / STATE_DIR).glob("epoch_*.json"))[:-self.keep]:
            old.unlink(missing_ok=True)


def load_state(run_dir, epoch):
    """The saved state of ``epoch``, None if there is none; ValueError naming the file if it cannot be read."""
    path = _state_file(run_dir, epoch)
    if not path.exists():
        return None
    try:
        state = json.loads(path.read_text())
        if not isinstance(state, dict) or state.get("epoch") != epoch:
            raise ValueError("not the state of this epoch")
    except (OSError, ValueError) as err:
        raise ValueError(f"{path} cannot be read ({err})") from None
    return state


def apply_loader_state(state, shares):
    """Put the shares (``distributed.WorkerShare``) in the order of the next epoch after the saved one.

    A share saves the order of the last finished epoch; the next epoch's
    order is one shuffle of it, for training (after the epoch) and for
    validation (before its next pass) alike.  The shuffle also re-seeds
    NumPy's global generator, as it would have.
    """
    for name, share in shares.items():
        share.indices = list(state["indices"][name])
        share.on_epoch_end()


class StateRestorer(keras.callbacks.Callback):
    """Restore random and callback states when training begins; must come last (after the resets)."""

    def __init__(self, state, stateful_callbacks):
        super().__init__()
        self.state = state
        self.stateful = stateful_callbacks

    def on_train_begin(self, logs=None):
        if self.state is None:
            return
        version, internal, gauss = self.state["python_random"]
        random.setstate((version, tuple(internal), gauss))
        for callback in self.stateful:
            for attribute, value in self.state["callbacks"].get(type(callback).__name__, {}).items():
                current = getattr(callback, attribute)
                setattr(callback, attribute, value if current is None else type(current)(value))


class GracefulStop(keras.callbacks.Callback):
    """On SIGUSR1/SIGTERM (SLURM's warning before the time limit), stop while there is time to requeue.

    Training goes on as long as the rest of the current epoch (or the next
    epoch) is expected to end ``margin`` seconds before the job's end (asked
    from SLURM when the warning comes); otherwise it stops at the end of the
    current batch.  An interrupted epoch is not saved as finished: the run
    resumes from the last finished epoch.  Outside SLURM a stop signal stops
    at once.
    """

    margin = 15.0

    def on_train_begin(self, logs=None):
        catch_stop_signals()  # idempotent; covers runs not started from the script
        self.epoch_seconds = []
        self._check("before the first batch", needed=0.0)

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_start = time.monotonic()

    def _check(self, where, needed):
        received = stop_requested()
        if not received:
            return
        if needed is not None and needed + self.margin < stop_deadline() - time.monotonic():
            return  # what comes next fits before the time limit
        raise TrainingInterrupted(f"received {received}: stopped {where}")

    def on_train_batch_end(self, batch, logs=None):
        if batch == 0:  # the first batch also traces the graph: time the others
            self.first_batch_end = time.monotonic()
            self._check("in the middle of an epoch", needed=0.0)
            return
        steps = self.params.get("steps") or batch + 1
        per_batch = (time.monotonic() - self.first_batch_end) / batch
        # the validation pass costs about a fifth of a training pass here; keep room for it
        self._check("in the middle of an epoch", needed=per_batch * ((steps - batch - 1) + steps * 0.2))

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_seconds.append(time.monotonic() - self.epoch_start)
        if epoch + 1 < self.params.get("epochs", epoch + 2):  # after the last epoch, let training finish
            self._check(f"after epoch {epoch + 1}", needed=max(self.epoch_seconds[-3:]))
