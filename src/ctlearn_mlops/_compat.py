"""The one place that relies on upstream internals (pinned: keras 2.14 / tensorflow 2.14)."""

import os

import tensorflow as tf

__all__ = ["backup_epoch"]


def backup_epoch(backup_dir):
    """Last finished epoch (0-based) in a ``keras.callbacks.BackupAndRestore`` directory, or None.

    Keras 2.14 stores it as the checkpointed variable ``ckpt_saved_epoch``
    (keras/src/distribute/worker_training_state.py); it is read here from the
    checkpoint file without building a model.
    """
    checkpoint = tf.train.latest_checkpoint(os.path.join(backup_dir, "chief"))
    if checkpoint is None:
        return None
    reader = tf.train.load_checkpoint(checkpoint)
    for name in reader.get_variable_to_shape_map():
        if "ckpt_saved_epoch" in name:
            epoch = int(reader.get_tensor(name))
            return epoch if epoch >= 0 else None
    return None
