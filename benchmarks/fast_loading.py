"""The fast path against the stock CTLearn / dl1-data-handler path, on the same data in one run.

Measures, on the training files of a task config (default: configs/energy.yaml
on the embedded default data, `make data`):

1. loader images/s: stock DLImageReader + DLDataLoader; ours from DL1 files
   in this process and with 1 and 2 worker processes; ours from the image
   cache (each over twelve passes; the median of passes 2-12 is the one
   compared, as in training every epoch after the first); a numpy gather of
   the same batch size from the images held in memory into one reused array
   (the machine's memory limit) and into as many arrays in turn as a worker
   has slots in flight (what a worker's batches are written into);
2. the training epochs after the first (which traces the graphs; median of
   epochs 2-4) of the config's model and batch size: stock `ctlearn-train-model`, our train tool on the fast
   path, and the same model fitted by Keras on in-memory NumPy arrays (what
   the tables call the compute limit);
3. prediction events/s on the same files: the stock `ctlearn-predict-mono-model`
   tool vs our predict tool on the fast path, both run in this (warm)
   interpreter.

Writes the tables, with machine and date, to docs/benchmarks.md.

    python benchmarks/fast_loading.py [--config configs/energy.yaml] [--workers 2]
"""

import argparse
import math
import re
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from ctlearn_mlops.benchmarking import write_section
from ctlearn_mlops.rundir import MODEL_DIR

REPO = Path(__file__).resolve().parents[1]
READER_SECTIONS = ("DLImageReader", "TableQualityQuery", "BilinearMapper", "SquareMapper")


def reader_config(config):
    from traitlets.config import Config

    return Config({k: v for k, v in config.items() if k in READER_SECTIONS})


#: passes over the data per loader; the first pays for opening and chunk caches, the median of the rest is compared
PASSES = 12
#: batches the loaders below read ahead; with the batch being read, PREFETCH + 1 batches are in flight, each in
#: its own shared-memory slot when read by workers
PREFETCH = 4
IN_FLIGHT = PREFETCH + 1


def later_passes(rates):
    """The rate of the passes after the first (median), the one the tables compare."""
    return float(np.median(rates[1:]))


def loader_rates(config, files, workers, cache_dir, batch_size, passes=PASSES):
    """images/s per loader setting over `passes` passes (in order, as Keras asks for them)."""
    from ctlearn.core.loader import DLDataLoader
    from dl1_data_handler.reader import DLImageReader

    from ctlearn_mlops.loading.cache import cache_path
    from ctlearn_mlops.loading.loader import FastDataLoader
    from ctlearn_mlops.loading.pool import WorkerPool
    from ctlearn_mlops.loading.sources import CachedImageSource, DL1ImageSource

    task = config["Project"]["task"]

    def measure(make_loader):
        reader = DLImageReader(input_url_signal=[str(f) for f in files], config=reader_config(config))
        n = len(reader.example_identifiers)
        loader, close = make_loader(reader, list(range(n)))
        rates = []
        for _ in range(passes):
            start = time.perf_counter()
            for i in range(len(loader)):
                loader[i]
            rates.append(len(loader) * batch_size / (time.perf_counter() - start))
            loader.on_epoch_end()
        close()
        return rates

    def stock(reader, indices):
        return DLDataLoader(reader, indices, tasks=[task], batch_size=batch_size, random_seed=0), lambda: None

    def ours(source_of, n_workers):
        def make(reader, indices):
            source = source_of(reader)
            batch_bytes = batch_size * int(np.prod(reader.input_shape)) * 4
            pool = WorkerPool(source, n_workers, slot_bytes=batch_bytes, n_slots=2 * IN_FLIGHT + n_workers) if n_workers else None
            loader = FastDataLoader(reader, indices, tasks=[task], batch_size=batch_size, random_seed=0,
                                    source=source, pool=pool, prefetch=PREFETCH)
            if pool is not None:
                method, args = loader._read_call(loader._batch_indices(0))
                pool.result(pool.submit(method, *args), "warm-up")
            return loader, (pool.close if pool else lambda: None)
        return make

    results = {"stock DLImageReader + DLDataLoader": measure(stock)}
    for n_workers in (0, 1, workers):
        label = f"ours, DL1 files, {n_workers} worker{'s' if n_workers != 1 else ''}" if n_workers else "ours, DL1 files, in-process"
        results[label] = measure(ours(DL1ImageSource.of_reader, n_workers))
    cache = cache_path(cache_dir, "train")
    results["ours, image cache, in-process"] = measure(ours(lambda r: CachedImageSource(cache), 0))
    results["ours, image cache, 1 worker"] = measure(ours(lambda r: CachedImageSource(cache), 1))
    results[MEMORY_LIMIT] = memory_gather_rates(cache, batch_size, passes)
    results[ROTATING_GATHER] = memory_gather_rates(cache, batch_size, passes, buffers=IN_FLIGHT)
    return results


#: the loader row that stands for the memory limit of the machine
MEMORY_LIMIT = "numpy gather of the same batches from memory (memory limit)"
ROTATING_GATHER = f"numpy gather from memory into {IN_FLIGHT} arrays in turn (a worker's slots in flight)"


def memory_gather_rates(cache, batch_size, passes, buffers=None):
    """images/s of a numpy gather of shuffled batches of the cache's images held in memory: into a new array
    each time (which malloc gives back warm in the CPU cache), or into ``buffers`` arrays in turn."""
    import h5py

    with h5py.File(cache, "r") as f:
        images = np.asarray(f["images"][:])
    outs = [np.zeros((batch_size, *images.shape[1:]), images.dtype) for _ in range(buffers or 0)]
    rng = np.random.default_rng(0)
    rates = []
    for _ in range(passes):
        order = rng.permutation(len(images))
        start = time.perf_counter()
        for k, first in enumerate(range(0, len(order) - batch_size + 1, batch_size)):
            rows = order[first:first + batch_size]
            if outs:
                np.take(images, rows, axis=0, out=outs[k % len(outs)], mode="clip")
            else:
                images[rows].astype(np.float32, copy=False)
        rates.append((len(order) // batch_size) * batch_size / (time.perf_counter() - start))
    return rates


# Keras 3: '23/23 - 4s - 194ms/step - loss: ...' (Keras 2 put the time per step last)
_EPOCH_LINE = re.compile(r"^\s*(\d+)/(\d+) - .*?\b(\d+(?:\.\d+)?)(us|ms|s)/step\b")


#: epochs of every training path; the first traces the graphs, the median of the others is compared (one epoch
#: of these paths varies by up to 2x between runs here)
EPOCHS = 4


def later_epochs_seconds_per_step(text):
    """Keras verbose=2 lines '23/23 - 4s - 194ms/step - ...': seconds per step, median of the epochs after the
    first."""
    steps = [m for m in (_EPOCH_LINE.match(line) for line in text.splitlines()) if m]
    if len(steps) < 2:
        raise RuntimeError("no second epoch found in the training output:\n" + text[-3000:])
    return float(np.median([float(m.group(3)) / {"us": 1e6, "ms": 1e3, "s": 1.0}[m.group(4)] for m in steps[1:]]))


def later_epochs_seconds_per_step_of_run(run_dir, batch_size):
    """The train tool logs no Keras progress lines: the times between its epoch ends after the first (events.jsonl:
    each whole epoch with validation, saving and backup; median) over the run's training steps."""
    import pandas as pd

    from ctlearn_mlops.tracking import read_events

    ends = [e["ended_at"] for e in read_events(run_dir) if e["event"] == "epoch_end"]
    steps = int((pd.read_csv(run_dir / "split.csv")["split"] == "training").sum()) // batch_size
    return float(np.median(np.diff(ends))) / steps


def run_captured(tool, argv):
    import contextlib
    import io

    from ctapipe.core.tool import run_tool

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = run_tool(tool, [str(a) for a in argv], cwd=REPO, raises=True)
    if status != 0:
        raise RuntimeError(f"{tool.name} exited with {status}")
    return out.getvalue()


def train_epochs(config, config_path, files, tmp, cache_dir, workers, batch_size):
    """Seconds per training step (epochs after the first): stock tool, ours, compute limit; and our run directory."""
    from ctlearn.tools.train_model import TrainCTLearnModel

    from ctlearn_mlops.tools.train import TrainTool

    train = config["TrainCTLearnModel"]
    stock_config = {k: v for k, v in config.items() if k in READER_SECTIONS or k == config["TrainCTLearnModel"]["model_type"]}
    stock_config["TrainCTLearnModel"] = {
        **{k: v for k, v in train.items() if k not in ("n_epochs",)},
        "input_dir_signal": str(Path(files[0]).parent), "file_pattern_signal": [Path(f).name for f in files],
        "reco_tasks": [config["Project"]["task"]], "output_dir": str(tmp / "stock_run"), "n_epochs": EPOCHS,
    }
    stock_path = tmp / "stock_train.yaml"
    stock_path.write_text(yaml.safe_dump(stock_config))
    stock = later_epochs_seconds_per_step(run_captured(TrainCTLearnModel(), ["--config", stock_path]))

    run_captured(TrainTool(), [
        "--config", config_path, "--run-name", "bench", "--epochs", EPOCHS, "--overwrite",
        "--set", f"Project.output_root={tmp / 'models'}", "--set", "FastLoader.enabled=true",
        # workers let reading overlap the network even from the cache
        "--set", f"FastLoader.cache_dir={cache_dir}", "--set", f"FastLoader.workers={workers}",
    ])
    run_dir = tmp / "models" / config["Project"]["task"] / "bench"
    ours = later_epochs_seconds_per_step_of_run(run_dir, batch_size)
    limit, sequence = compute_limit(config, files, cache_dir, run_dir, batch_size)
    return stock, ours, limit, sequence, run_dir


def compute_limit(config, files, cache_dir, run_dir, batch_size):
    """The same model and batch size fed from in-memory arrays of the same training and validation examples."""
    import contextlib
    import io

    import h5py
    import keras
    import pandas as pd
    from ctlearn.core.model import CTLearnModel
    from dl1_data_handler.reader import DLImageReader
    from traitlets.config import Config

    from ctlearn_mlops.loading.cache import cache_path

    reader = DLImageReader(input_url_signal=[str(f) for f in files], config=reader_config(config))
    with h5py.File(cache_path(cache_dir, "train")) as f:
        images = f["images"][()]
    labels = np.asarray(reader.example_identifiers["log_true_energy"], dtype=np.float32)
    split = pd.read_csv(run_dir / "split.csv")["split"].to_numpy()
    train, val = split == "training", split == "validation"
    n_train = math.floor(train.sum() / batch_size) * batch_size
    x_train, y_train = images[train][:n_train], labels[train][:n_train]
    model_type = config["TrainCTLearnModel"]["model_type"]

    def seconds_per_step(*args, **kwargs):
        """Time per step (epochs after the first, median) of a fresh model of the config, fitted with these
        arguments."""
        model = CTLearnModel.from_name(
            model_type, input_shape=images.shape[1:], tasks=["energy"],
            config=Config({model_type: config.get(model_type, {})}),
        ).model
        model.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-3), loss={"energy": keras.losses.MeanAbsoluteError()})
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            model.fit(*args, epochs=EPOCHS, verbose=2, **kwargs)
        return later_epochs_seconds_per_step(out.getvalue())

    # (the network's one input by position: Keras 3 names it after the layer, e.g. input_layer_3)
    limit = seconds_per_step(x_train, {"energy": y_train}, batch_size=batch_size, shuffle=True,
                             validation_data=(images[val], {"energy": labels[val]}))

    # the same fit through a keras.utils.Sequence (our loader on the cache, in this process), without the
    # train tool's callbacks: separates what Keras' Sequence path costs from what the run's checkpoints cost
    from ctlearn_mlops.loading.loader import FastDataLoader
    from ctlearn_mlops.loading.sources import CachedImageSource

    source = CachedImageSource(cache_path(cache_dir, "train"))
    sequences = [
        FastDataLoader(reader, [int(i) for i in np.flatnonzero(part)], tasks=["energy"], batch_size=batch_size,
                       random_seed=0, source=source)
        for part in (train, val)
    ]
    return limit, seconds_per_step(sequences[0], validation_data=sequences[1], shuffle=False)


def predict_rates(config, config_path, files, tmp, run_dir, cache_dir, workers, batch_size):
    """Events/s of the stock mono predict tool and of ours, on the same files, in this interpreter."""
    from ctlearn.tools.predict_model import MonoPredictCTLearnModel

    from ctlearn_mlops.io.dl2 import read_telescope_events
    from ctlearn_mlops.tools.predict import PredictTool

    task = config["Project"]["task"]
    stock_config = {k: v for k, v in config.items() if k in READER_SECTIONS}
    stock_config["PredictCTLearnModel"] = {"batch_size": batch_size}
    stock_path = tmp / "stock_predict.yaml"
    stock_path.write_text(yaml.safe_dump(stock_config))
    start = time.perf_counter()
    for i, f in enumerate(files):
        run_captured(MonoPredictCTLearnModel(), [
            "--config", stock_path, "--input_url", f, f"--{task}_model", run_dir / MODEL_DIR,
            "--output", tmp / f"stock_{i}.dl2.h5", "--overwrite",
        ])
    stock_seconds = time.perf_counter() - start

    ours_seconds = []
    # the first call also predicts the run's validation images for its energy error model and keeps them in the
    # run; the second, as every later one with the same model, reads them back
    for _ in range(2):
        start = time.perf_counter()
        run_captured(PredictTool(), [
            "--config", config_path, "--run", run_dir, "--name", "bench", "--overwrite",
            "--set", f"Project.output_root={tmp / 'models'}", "--set", f"Project.test_signal_dir={Path(files[0]).parent}",
            "--set", f"Project.test_signal_patterns={[Path(f).name for f in files]}", "--set", "FastLoader.enabled=true",
            "--set", f"FastLoader.cache_dir={cache_dir}", "--set", f"FastLoader.workers={workers}",
            "--batch-size", batch_size,
        ])
        ours_seconds.append(time.perf_counter() - start)
    n_events = len(read_telescope_events(run_dir / "dl2" / "bench.dl2.h5"))
    return n_events, stock_seconds, ours_seconds


def cached_image_bytes(cache_dir):
    import h5py

    from ctlearn_mlops.loading.cache import cache_path

    with h5py.File(cache_path(cache_dir, "train"), "r") as f:
        return int(np.prod(f["images"].shape[1:])) * f["images"].dtype.itemsize


def build_cache(config_path, files, cache_dir):
    from ctlearn_mlops.tools.image_cache import ImageCacheTool

    start = time.perf_counter()
    patterns = [Path(f).name for f in files]
    run_captured(ImageCacheTool(), [
        "--config", config_path, "--output-dir", cache_dir, "--overwrite",
        "--set", f"Project.signal_patterns={patterns}", "--set", f"Project.test_signal_dir={Path(files[0]).parent}",
        "--set", f"Project.test_signal_patterns={patterns}",
    ])
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "energy.yaml")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "benchmarks.md")
    args = parser.parse_args()

    config = yaml.safe_load(args.config.read_text())
    project = config["Project"]
    files = sorted(p for pattern in project.get("signal_patterns", ["*.h5"]) for p in Path(project["signal_dir"]).glob(pattern))
    if not files:
        raise SystemExit(f"no training files for {args.config}: run `make data` first")
    batch_size = config["TrainCTLearnModel"]["batch_size"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cache_dir = tmp / "cache"
        cache_seconds = build_cache(args.config, files, cache_dir)
        loaders = loader_rates(config, files, args.workers, cache_dir, batch_size)
        image_bytes = cached_image_bytes(cache_dir)
        stock_step, ours_step, limit_step, sequence_step, run_dir = train_epochs(
            config, args.config, files, tmp, cache_dir, args.workers, batch_size)
        n_events, stock_predict, ours_predict = predict_rates(
            config, args.config, files, tmp, run_dir, cache_dir, args.workers, batch_size)

    stock_rate = later_passes(loaders["stock DLImageReader + DLDataLoader"])
    cache_rate = later_passes(loaders["ours, image cache, in-process"])
    worker_rate = later_passes(loaders["ours, image cache, 1 worker"])
    memory_rate = later_passes(loaders[MEMORY_LIMIT])
    rotating_rate = later_passes(loaders[ROTATING_GATHER])
    consumption = batch_size / limit_step  # images per second the network takes at the compute limit
    loader_rows = "\n".join(
        f"| {name} | {rates[0]:,.0f} | {later_passes(rates):,.0f} | {later_passes(rates) / stock_rate:.2f} |"
        for name, rates in loaders.items()
    )
    per_image = {name: step / batch_size * 1000 for name, step in
                 (("stock `ctlearn-train-model`", stock_step), (f"our train tool (image cache, {args.workers} workers)", ours_step),
                  ("same fit through our loader as a Keras Sequence, no run callbacks", sequence_step),
                  ("in-memory arrays (compute limit)", limit_step))}
    train_rows = "\n".join(
        f"| {name} | {ms:.2f} | {ms / per_image['in-memory arrays (compute limit)']:.2f} |" for name, ms in per_image.items()
    )
    body = f"""
## Fast loading vs the stock path (`benchmarks/fast_loading.py`)

Data: the training files of `{args.config.relative_to(REPO) if args.config.is_relative_to(REPO) else args.config}`
({len(files)} files, {', '.join(Path(f).name for f in files)}), batch size {batch_size}.
Image cache built in {cache_seconds:.1f} s.

**Loader** (images/s through `loader[i]` for every batch; the median of passes 2-{PASSES} is compared):

| loader | pass 1 | passes 2-{PASSES} (median) | vs stock |
|---|---|---|---|
{loader_rows}

**Training** (time per step incl. validation, median of epochs 2-{EPOCHS}, per 1000 training images):

| path | s per 1000 images | vs compute limit |
|---|---|---|
{train_rows}

Against the memory limit (a numpy gather of the same batch size from the
images held in memory into a new array, the last row but one): the image
cache in-process {cache_rate / memory_rate:.2f}x, through a worker {worker_rate / memory_rate:.2f}x.
A worker writes each batch into one of the shared-memory slots of the
{IN_FLIGHT} batches in flight ({IN_FLIGHT * batch_size * image_bytes / 2**20:.0f} MiB): the same gather into {IN_FLIGHT} arrays in turn
(last row) runs at {rotating_rate / memory_rate:.2f}x the memory limit, whose destination, an array
malloc hands back, stays warm in the CPU's cache;
through a worker the cache runs at {worker_rate / rotating_rate:.2f}x that gather.

Stock / ours: {stock_step / ours_step:.2f}x.

**Prediction** ({n_events} events, tools run in a warm interpreter, model loading included):

| tool | seconds | events/s | vs stock |
|---|---|---|---|
| stock `ctlearn-predict-mono-model` (one call per file) | {stock_predict:.1f} | {n_events / stock_predict:,.0f} | 1.00 |
| ours (`test_model.py`, image cache, {args.workers} workers), first call | {ours_predict[0]:.1f} | {n_events / ours_predict[0]:,.0f} | {stock_predict / ours_predict[0]:.2f} |
| ours, again with the same model | {ours_predict[1]:.1f} | {n_events / ours_predict[1]:,.0f} | {stock_predict / ours_predict[1]:.2f} |

The stock tool writes the network's values per file; ours writes one event
DL2 file with the classical reconstruction (Hillas BDTs fitted on the run's
training images), the array-level combination and the energy network's
calibrated uncertainty, whose error model its first call measures on the
run's validation images (predicted, then kept in the run directory). The
second call reads them back, and also finds the files in the page cache.

Reading the figures: pass 1 of every DL1 loader pays for decompressing each
HDF5 chunk once (worker processes each keep their own chunk cache, so their
first pass is slower); later epochs run at the rates of the later passes. On a CPU node the
network, not the loader, sets the epoch time: the image cache serves a batch
in {batch_size / cache_rate * 1000:.1f} ms in-process and {batch_size / worker_rate * 1000:.1f} ms through a worker, against
{ours_step * 1000:.0f} ms per training step of our train tool. Through a worker the batch is
gathered straight into a shared-memory slot and handed to the trainer in
that slot (no copy; the slot is reused once the last array of the batch is
gone), after a queue message each way: the slots' memory, no longer in the
CPU's cache, and those messages keep it below the in-process rate, at {worker_rate / consumption:.0f}x the
images per second the network consumes here.
The train tool's time per step is each of its whole epochs (its own train
step, `distributed.fit_on_shares`, with saving and validation) over its
training steps; the others' are Keras' progress lines, which also include
validation. The "compute limit" row is Keras 3's `fit` on NumPy arrays
(shuffled every epoch, as the loaders shuffle), through its array adapter.
One epoch of these paths varies between runs of this script here (the
compute limit 1.45-1.55 s per 1000 images in two runs of 2026-12-08; up
to 2x for the train tool on 2026-12-07, when about half its epochs waited
~2 s in the input pipeline of ctlearn's one-device MirroredStrategy, now
replaced by TensorFlow's default strategy), hence the median of epochs
2-{EPOCHS}; ratios within ~1.2 of each other are not told apart by one run. What each ingredient of a Keras `fit` costs is in
`benchmarks/epoch_bounds.py` below.
"""
    write_section(args.output, "fast-loading", body)
    print(body)


if __name__ == "__main__":
    main()
