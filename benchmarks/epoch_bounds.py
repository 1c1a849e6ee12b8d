"""What an epoch costs above the in-memory compute limit, one ingredient at a time.

Three things a bare ``model.fit`` on arrays does not have: deterministic
kernels (``tf.config.experimental.enable_op_determinism``, which the train
tool sets so that resumes end with the uninterrupted run's weights),
ctlearn's ``MirroredStrategy`` (upstream builds the model in its scope) and
batches from a Python loader (a Keras ``Sequence``, as ctlearn's
``model.fit`` takes them).  Each variant runs in a new process on the default
data (``configs/energy.yaml``, the training images in memory), 5 epochs, and
reports the median wall time between epoch ends after the first.  The train
tool itself (its own train step, ``distributed.fit_on_shares``) is measured
against the same limit by ``fast_loading.py``.

Writes the table, with machine and date, to docs/benchmarks.md.

    python benchmarks/epoch_bounds.py
"""

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from ctlearn_mlops.benchmarking import write_section

REPO = Path(__file__).resolve().parents[1]
VARIANTS = {
    "plain": "arrays, no strategy, non-deterministic kernels (the compute limit)",
    "det": "+ deterministic kernels",
    "mirrored": "+ MirroredStrategy scope",
    "sequence": "+ batches from a Keras Sequence",
    "det+mirrored+sequence": "all three (Keras' fit as ctlearn calls it, with deterministic kernels)",
}
BATCH = 64


def one_variant(variant):
    """Median seconds per epoch of the energy config's network with ``variant`` (runs in its own process)."""
    import keras
    import tensorflow as tf
    import yaml
    from ctlearn.core.model import CTLearnModel
    from dl1_data_handler.reader import DLImageReader
    from traitlets.config import Config

    from ctlearn_mlops.loading.sources import DL1ImageSource

    if "det" in variant:
        keras.utils.set_random_seed(0)
        tf.config.experimental.enable_op_determinism()
    config = yaml.safe_load((REPO / "configs" / "energy.yaml").read_text())
    files = sorted(str(p) for p in (REPO / "data" / "default" / "train").glob("gamma_*.dl1.h5"))
    reader = DLImageReader(input_url_signal=files, config=Config({
        "DLImageReader": config["DLImageReader"], "TableQualityQuery": config["TableQualityQuery"]}))
    ids = reader.example_identifiers
    images = DL1ImageSource.of_reader(reader).read(
        *(np.asarray(ids[c]) for c in ("file_index", "table_index", "tel_id", "tel_type_id")))
    labels = np.asarray(ids["log_true_energy"], dtype=np.float32)
    n_train = int(len(images) * 0.9) // BATCH * BATCH

    def build():
        model = CTLearnModel.from_name("SingleCNN", input_shape=images.shape[1:], tasks=["energy"],
                                       config=Config({"SingleCNN": config["SingleCNN"]})).model
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss={"energy": keras.losses.MeanAbsoluteError()},
                      metrics={"energy": keras.metrics.MeanAbsoluteError(name="mae_energy")})
        return model

    if "mirrored" in variant:
        with tf.distribute.MirroredStrategy().scope():
            model = build()
    else:
        model = build()
    ends = []
    timer = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: ends.append(time.perf_counter()))
    train = (images[:n_train], labels[:n_train])
    validation = (images[n_train:], labels[n_train:])
    if "sequence" in variant:
        class Batches(keras.utils.Sequence):
            def __init__(self, x, y):
                self.x, self.y = x, y

            def __len__(self):
                return len(self.x) // BATCH

            def __getitem__(self, i):
                return self.x[i * BATCH:(i + 1) * BATCH], {"energy": self.y[i * BATCH:(i + 1) * BATCH]}

        model.fit(Batches(*train), validation_data=Batches(*validation), epochs=5, verbose=0, callbacks=[timer])
    else:
        model.fit(train[0], {"energy": train[1]}, batch_size=BATCH, epochs=5, verbose=0,
                  validation_data=(validation[0], {"energy": validation[1]}), callbacks=[timer])
    return float(np.median(np.diff(ends)))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", choices=list(VARIANTS), help=argparse.SUPPRESS)  # one variant, in this process
    args = parser.parse_args()
    if args.variant:
        print(one_variant(args.variant))
        return
    seconds = {}
    for variant in VARIANTS:
        result = subprocess.run([sys.executable, __file__, "--variant", variant], capture_output=True, text=True,
                                env={"TF_CPP_MIN_LOG_LEVEL": "3", **__import__("os").environ})
        if result.returncode != 0:
            sys.exit(f"{variant} failed:\n{result.stderr[-3000:]}")
        seconds[variant] = float(result.stdout.split()[-1])
        print(f"{variant}: {seconds[variant]:.2f} s per epoch", flush=True)
    limit = seconds["plain"]
    rows = "\n".join(f"| {VARIANTS[v]} | {s:.2f} | {s / limit:.2f} |" for v, s in seconds.items())
    body = f"""
## What bounds the epoch time (`benchmarks/epoch_bounds.py`)

The energy config's network on the default data, training images in memory,
batch {BATCH}, 5 epochs, median wall time between epoch ends after the first;
each variant in a new process:

| variant | s per epoch | vs compute limit |
|---|---|---|
{rows}
"""
    write_section(REPO / "docs" / "benchmarks.md", "epoch-bounds", body)
    print(body)


if __name__ == "__main__":
    main()
